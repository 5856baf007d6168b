"""A Nemotron Nano 12B-shaped slice, end to end on an H100 / H200 against transformers on the same GPU: the
prefill that issue 14 measures (layers `M*-` of the 12B — a Mamba-2 mixer, attention, an MLP — its hidden
size 5120, vocabulary 32768, bf16, 8000 tokens), timed from token ids on the host to the last position's
logits on the host.

    python benchmarks/h100_slice.py prepare   # here (MLIR 22, LLVM, ptxas, pip): out/h100_slice/ (git-ignored)
    python3 benchmarks/h100_slice.py [check]  # there, with out/h100_slice carried (numpy, cuda-bindings,
                                              # torch; transformers from the carried wheels)

prepare writes slice.yaml (the 12B config with its pattern, layer count and vocabulary cut), its nvvm bf16
artifact (weights drawn from the seed at load: 0.78 B parameters would not travel), hf_config.json, and
transformers' wheels (the test extra's pin; the lent host reaches no registry).

check first runs transformers in its own process (the carried wheels first on its path, ahead of the
host's older transformers): the same weights, drawn from the seed by tessera.model.weight_init.random_weights,
loaded into NemotronHForCausalLM on the GPU; in bf16 the median of 5 calls of `model(ids, logits_to_keep=1)`
after a warm-up, ids copied from the host and the logits back to it; then the reference, the last
position's logits in float32 (TF32 off) on the same bf16-rounded weights — or bf16's where float32 runs out
of memory (its Mamba path materialises [chunks, 128, 128, heads, state] products). Then Tessera: GpuSession on the artifact,
`prefill(ids, last_only=True)` after `reset()`, the median of 5 after a warm-up. Its logits must be finite and
within 5e-2 of the float32 reference, max|got - ref| / max|ref| (bf16 weights and activations through
reductions of up to 20480 terms; the HF contract's 2e-2 is the tiny model's, checked by hopper.py). Prints a
line and one JSON line last; exit 1 if the numerics fail or either side does not run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from checkout import (
    download_transformers,
    install_wheels,
    make_tessera_importable,
    prepare_or_check,
    trim_for_carrying,
)
from h100_gemm import relative_error

ROOT = Path(__file__).resolve().parent.parent

make_tessera_importable()
OUT = ROOT / "out" / "h100_slice"
BASE = ROOT / "configs" / "nemotron_nano_12b_v2_base.yaml"  # the model the slice is cut from
VOCAB = 32768
SLICE = {"hybrid_override_pattern": "M*-", "num_hidden_layers": 3, "vocab_size": VOCAB}
TOKENS = 8000
MAX_SEQ_LEN = 8192
SEED = 0
BOUND = 5e-2
REPEATS = 5


def prompt() -> list[int]:
    return [int(token) for token in np.random.default_rng(SEED).integers(0, VOCAB, TOKENS)]


def build(out: Path) -> None:
    import yaml

    from tessera.frontend.config import load_model
    from tessera.model.config import hf_config_dict

    out.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(BASE.read_text())
    config.update(SLICE, name=f"{config['name']}_slice")
    config["compile"].update(targets=["nvvm"], max_seq_len=MAX_SEQ_LEN)
    (out / "slice.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run([sys.executable, "-m", "tessera.tools.tessera_compile", str(out / "slice.yaml"), "--target",
                    "nvvm", "--precision", "bf16", "--seed", str(SEED), "-o", str(out / "artifact"), "-q"],
                   check=True)  # fmt: skip
    trim_for_carrying(out / "artifact", "nvvm")
    (out / "hf_config.json").write_text(json.dumps(hf_config_dict(load_model(str(out / "slice.yaml")).config)))
    download_transformers(out / "wheels")


def _transformers(out: Path, device: str = "cuda") -> dict[str, Any]:
    """transformers' numbers from its own process, on out/prompt.npy: its median milliseconds and which
    reference it saved (hf_logits.npy in float32, else hf_logits_bf16.npy), or an error line."""
    error = install_wheels(out / "wheels", out / "site")
    if error is not None:
        return {"error": error}
    code = _HF.format(site=str(out / "site"), root=str(ROOT / "benchmarks"), out=str(out), seed=SEED,
                      repeats=REPEATS, device=device)  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_HF = """
import json, sys, time
sys.path[:0] = [{site!r}, {root!r}]
from pathlib import Path
import numpy as np, torch, transformers
from checkout import make_tessera_importable
make_tessera_importable()
from tessera.model.weight_init import random_weights
from tessera.model.config import config_from_dict
from tessera.model.weights_layout import hf_tensors
out = Path({out!r})
fields = json.loads((out / "hf_config.json").read_text())
config = config_from_dict(fields, str(out / "hf_config.json"), strict=False)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
hf_fields = {{k: v for k, v in fields.items() if k not in ("architectures", "model_type")}}
with torch.device({device!r}):
    model = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**hf_fields)).float().eval()
prefix = "model." if any(name.startswith("model.") for name in model.state_dict()) else "backbone."
state = {{name if name == "lm_head.weight" else prefix + name: torch.from_numpy(np.ascontiguousarray(value))
          for name, value in hf_tensors(config, random_weights(config, {seed}))}}
model.load_state_dict(state, strict=True)
del state
ids = [int(token) for token in np.load(out / "prompt.npy")]
def last_logits():
    logits = model(torch.tensor([ids], device={device!r}), logits_to_keep=1).logits
    return logits[0, -1].float().cpu().numpy()
measured = {{"transformers": transformers.__version__, "torch": torch.__version__}}
with torch.no_grad():
    model.to(torch.bfloat16)
    np.save(out / "hf_logits_bf16.npy", last_logits())
    times = []
    for _ in range({repeats}):
        start = time.perf_counter(); last_logits(); times.append(time.perf_counter() - start)
    measured["transformers_ms"] = float(np.median(times)) * 1e3
    # The reference: float32 arithmetic on the same (bf16-rounded) weights. Its Mamba path materialises
    # [chunks, 128, 128, heads, state] products: twice bf16's memory, which a smaller GPU may not have.
    try:
        model.float()
        np.save(out / "hf_logits.npy", last_logits())
        measured["reference"] = "transformers float32"
    except torch.OutOfMemoryError:
        measured["reference"] = "transformers bf16 (float32 ran out of memory)"
print(json.dumps(measured))
"""


def _tessera(out: Path) -> dict[str, Any]:
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_session import GpuSession

    started = time.perf_counter()
    session = GpuSession.open(read_artifact(out / "artifact"), "nvvm")
    opened_s = time.perf_counter() - started
    ids = prompt()

    def last_logits() -> np.ndarray:
        session.reset()
        return session.prefill(ids, last_only=True)[0]

    logits = last_logits()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        last_logits()
        times.append(time.perf_counter() - start)
    profiler = session.start_profiling()
    last_logits()
    return {"ms": float(np.median(times)) * 1e3, "logits": logits, "open_s": opened_s, "profile": profiler.report(),
            "device": session.driver.device_name()}  # fmt: skip


def run(out: Path) -> dict[str, Any]:
    """The slice's prefill on both sides: {"ok", "specs": {its name: Tessera's ms, transformers' ms, the
    error}}."""
    spec = f"{SLICE['hybrid_override_pattern']} prefill {TOKENS}"
    if not (out / "artifact" / "tessera.json").is_file():
        print(f"{out / 'artifact'} is missing: run `python benchmarks/h100_slice.py prepare` and carry {out}")
        return {"ok": False, "specs": {spec: {"error": "artifacts missing"}}}
    np.save(out / "prompt.npy", np.array(prompt(), np.int64))
    for stale in ("hf_logits.npy", "hf_logits_bf16.npy"):
        (out / stale).unlink(missing_ok=True)
    result: dict[str, Any] = dict(_transformers(out))
    try:
        tessera = _tessera(out)
    except Exception as exc:  # one line; the JSON line still comes
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"{spec}: Tessera FAILED {result['error']}")
        return {"ok": False, "specs": {spec: result}}
    print(tessera.pop("profile"))
    logits = tessera.pop("logits")
    references = [out / "hf_logits.npy", out / "hf_logits_bf16.npy"]  # float32's where it fitted
    reference = next((path for path in references if path.is_file()), None)
    error = None if reference is None else relative_error(logits, np.load(reference))
    result.update(tessera, relative_error=error, bound=BOUND)
    ok = error is not None and error <= BOUND and "transformers_ms" in result
    theirs = result.get("transformers_ms")
    print(f"{spec}: Tessera {result['ms']:.2f} ms, transformers {theirs if theirs is None else f'{theirs:.2f}'} ms"
          f" ({result.get('error', 'ok')}), logits {error} (bound {BOUND:.0e})")  # fmt: skip
    return {"ok": ok, "specs": {spec: result}}


def check(out: Path) -> int:
    summary = run(out)
    print(json.dumps({"h100_slice": summary}, default=float))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(prepare_or_check("h100_slice.py", __doc__, OUT, build, check))
