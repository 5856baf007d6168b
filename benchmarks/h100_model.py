"""A whole model — Nemotron Nano 12B (CONFIG), or Nemotron-3 Nano 30B-A3B under benchmarks/hopper.py's part
model_30b — on an H100 / H200, against transformers on the same GPU: what issue 15 measures — opening the
model (weights drawn on the device from the seed), decode at batch 1 with a short context and at 8K, and the
prefill of 8192 tokens from ids on the host to the last position's logits on the host.

    python benchmarks/h100_model.py prepare   # here (MLIR 22, LLVM, ptxas, pip): out/h100_model/ (git-ignored)
    python3 benchmarks/h100_model.py [check]  # there, with out/h100_model carried (numpy, cuda-bindings, torch;
                                              # transformers from the carried wheels)

prepare writes the 12B's nvvm bf16 artifact (configs/nemotron_nano_12b_v2_base.yaml, max_seq_len 8192 +
DECODE_TOKENS, no weights: 12 B parameters are drawn there by the program's draw kernels), hf_config.json and
transformers' wheels (or, under benchmarks/hopper.py, the slice's).

check runs transformers first in its own process: NemotronHForCausalLM built on the GPU in bf16 with torch's
own random initialisation (the timing needs no particular weights; the numerics are the HF contract's and the
slice's), the median of REPEATS prefills `model(ids, logits_to_keep=1)`, and decode through `generate` (greedy,
a fixed number of new tokens; per token: the difference of two lengths over the tokens between). Then
Tessera: GpuSession.open (kernels loaded, weights drawn, state allocated: its seconds), decode after a
SHORT_PROMPT and after the 8192-token prefill (per token, its logits on the host each step), the prefill
(median of REPEATS after a warm-up; every run's logits must be the same bits), one profiled decode step at
8K. The streaming limit of a decode step is
the bytes it must read — every weight but the embedding table (one row of it), the conv and SSM state read
and written, the KV cache up to the context; of a MoE's routed experts the share a token selects — over the
bandwidth of a device copy measured in the same run.
Prints lines and one JSON line last; exit 1 if Tessera does not run, its logits are not finite, or two
prefills of the same ids differ.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping
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

ROOT = Path(__file__).resolve().parent.parent

make_tessera_importable()
OUT = ROOT / "out" / "h100_model"
CONFIG = ROOT / "configs" / "nemotron_nano_12b_v2_base.yaml"
PREFILL_TOKENS = 8192
SHORT_PROMPT = 16
DECODE_TOKENS = 32
MAX_SEQ_LEN = PREFILL_TOKENS + DECODE_TOKENS + 1
SEED = 0
REPEATS = 3
COPY_BYTES = 1 << 30


def prompt(tokens: int, vocab: int) -> list[int]:
    return [int(token) for token in np.random.default_rng(SEED).integers(0, vocab, tokens)]


def build(out: Path, config: Path | None = None) -> None:
    """The artifact of `config` (default CONFIG) and its HF config in `out`; transformers' wheels in out/wheels
    unless the slice's are beside."""
    from tessera.frontend.config import load_model
    from tessera.model.config import hf_config_dict

    config = config or CONFIG
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "tessera.tools.tessera_compile", str(config), "--target", "nvvm",
                    "--precision", "bf16", "--seed", str(SEED), "--max-seq-len", str(MAX_SEQ_LEN),
                    "-o", str(out / "artifact"), "-q"], check=True)  # fmt: skip
    trim_for_carrying(out / "artifact", "nvvm")
    (out / "hf_config.json").write_text(json.dumps(hf_config_dict(load_model(str(config)).config)))
    if not _wheels(out).is_dir():
        download_transformers(out / "wheels")


def _wheels(out: Path) -> Path:
    """The carried wheels: the model's own, or the slice's beside it (benchmarks/hopper.py carries one copy)."""
    own = out / "wheels"
    return own if own.is_dir() else out.parent / "slice" / "wheels"


def _transformers(out: Path, device: str = "cuda") -> dict[str, Any]:
    """transformers' milliseconds (prefill, decode short and at 8K) from its own process, or an error line."""
    error = install_wheels(_wheels(out), out / "site")
    if error is not None:
        return {"error": error}
    code = _HF.format(site=str(out / "site"), out=str(out), repeats=REPEATS, prefill=PREFILL_TOKENS,
                      short=SHORT_PROMPT, decode=DECODE_TOKENS, seed=SEED, device=device)  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_HF = """
import json, sys, time
sys.path[:0] = [{site!r}]
from collections.abc import Mapping
from pathlib import Path
import numpy as np, torch, transformers
fields = json.loads((Path({out!r}) / "hf_config.json").read_text())
fields = {{k: v for k, v in fields.items() if k not in ("architectures", "model_type")}}
torch.manual_seed({seed})
torch.set_default_dtype(torch.bfloat16)
with torch.device({device!r}):
    model = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**fields)).eval()
vocab = fields["vocab_size"]
ids = torch.tensor([np.random.default_rng({seed}).integers(0, vocab, {prefill})], device={device!r})
sync = torch.cuda.synchronize if {device!r} == "cuda" else (lambda: None)
def timed(call):
    sync(); start = time.perf_counter(); call(); sync()
    return time.perf_counter() - start
def generate(prompt, new):
    return model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False)
measured = {{"transformers": transformers.__version__, "torch": torch.__version__}}
with torch.no_grad():
    prefill = lambda: model(ids, logits_to_keep=1).logits[0, -1].float().cpu()
    prefill()
    measured["prefill_ms"] = float(np.median([timed(prefill) for _ in range({repeats})])) * 1e3
    for name, prompt in (("short", ids[:, :{short}]), ("8k", ids)):
        generate(prompt, 2)
        one, many = timed(lambda: generate(prompt, 1)), timed(lambda: generate(prompt, {decode} + 1))
        measured[f"decode_{{name}}_ms"] = (many - one) / {decode} * 1e3
print(json.dumps(measured))
"""


def copy_bandwidth() -> float:
    """Bytes per second of a device-to-device copy of COPY_BYTES (torch; the median of 5 after a warm-up)."""
    import torch

    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(source)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * COPY_BYTES / float(np.median(times))  # read and written


def step_bytes(program: Mapping[str, Any], context: int, expert_share: float = 1.0) -> int:
    """The bytes a decode step at `context` positions must move: every weight once (the embedding table: one
    row; the routed experts' stacks: the `expert_share` a token selects), the conv and SSM state read and
    written, the KV cache's first `context` positions read."""
    from tessera.runtime.program_check import DTYPE_BYTES

    total = 0
    for name, entry in program["weights"].items():
        shape = entry["shape"]
        dtype = entry.get("packing", {}).get("dtype", "f32")
        count = shape[-1] if name == "embedding.weight" else math.prod(shape)
        if ".experts." in name:
            count = round(count * expert_share)
        total += count * DTYPE_BYTES[dtype]
    for entry in program["states"].values():
        size = math.prod(entry["shape"]) * DTYPE_BYTES[entry["dtype"]]
        if entry["kind"] in ("k_cache", "v_cache"):
            total += size // entry["shape"][0] * context
        else:
            total += 2 * size
    return total


def _decode_ms(session: Any, first: int, tokens: int) -> tuple[float, bool]:
    """Milliseconds per decoded token (greedy from `first`), and whether every step's logits were finite."""
    finite, token = True, first
    start = time.perf_counter()
    for _ in range(tokens):
        logits = session.decode(token)
        finite &= bool(np.isfinite(logits).all())
        token = int(np.argmax(logits))
    return (time.perf_counter() - start) / tokens * 1e3, finite


def _tessera(out: Path) -> dict[str, Any]:
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_session import GpuSession

    started = time.perf_counter()
    session = GpuSession.open(read_artifact(out / "artifact"), "nvvm")
    measured: dict[str, Any] = {"open_s": time.perf_counter() - started, "load_s": session.load_seconds,
                                "device": session.driver.device_name()}  # fmt: skip
    ids = prompt(PREFILL_TOKENS, session.vocab_size)
    first = int(np.argmax(session.prefill(ids[:SHORT_PROMPT], last_only=True)))
    measured["decode_short_ms"], finite = _decode_ms(session, first, DECODE_TOKENS)
    times, runs = [], []
    for _ in range(REPEATS + 1):  # a warm-up, then REPEATS
        session.reset()
        start = time.perf_counter()
        last = session.prefill(ids, last_only=True)
        times.append(time.perf_counter() - start)
        finite &= bool(np.isfinite(last).all())
        runs.append(last)
    measured["prefill_ms"] = float(np.median(times[1:])) * 1e3
    # Fixed-order reductions everywhere (no atomics): every run the same bits.
    measured["deterministic"] = all(np.array_equal(run.view(np.uint32), runs[0].view(np.uint32)) for run in runs)
    measured["decode_8k_ms"], steps_finite = _decode_ms(session, int(np.argmax(last)), DECODE_TOKENS)
    profiler = session.start_profiling()
    session.decode(int(np.argmax(last)))
    measured["profile"] = profiler.report()
    measured["finite"] = finite and steps_finite
    artifact = read_artifact(out / "artifact")
    config = artifact.config
    share = int(config.get("num_experts_per_tok") or 0) / max(int(config.get("n_routed_experts") or 1), 1)
    measured["name"] = artifact.name
    measured["bytes_short"] = step_bytes(session.program, SHORT_PROMPT, share or 1.0)
    measured["bytes_8k"] = step_bytes(session.program, PREFILL_TOKENS, share or 1.0)
    return measured


def run(out: Path) -> dict[str, Any]:
    """The model on both sides: {"ok", "specs": {name: Tessera's ms, transformers' ms, the streaming limit}}."""
    if not (out / "artifact" / "tessera.json").is_file():
        print(f"{out / 'artifact'} is missing: run `python benchmarks/h100_model.py prepare` and carry {out}")
        return {"ok": False, "specs": {"model": {"error": "artifacts missing"}}}
    theirs = _transformers(out)
    try:
        ours = _tessera(out)
        bandwidth = copy_bandwidth()
    except Exception as exc:  # one line; the JSON line still comes
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"{out.name}: Tessera FAILED {error}")
        return {"ok": False, "specs": {"model": {"error": error, **theirs}}}
    print(ours.pop("profile"))
    model = ours["name"]
    specs: dict[str, dict[str, Any]] = {
        f"{model} prefill {PREFILL_TOKENS}": {"ms": ours["prefill_ms"], "transformers_ms": theirs.get("prefill_ms")},
    }
    for name, context in (("short", SHORT_PROMPT), ("8k", PREFILL_TOKENS)):
        limit_ms = ours[f"bytes_{name}"] / bandwidth * 1e3
        ms = ours[f"decode_{name}_ms"]
        specs[f"{model} decode at {context}"] = {"ms": ms, "transformers_ms": theirs.get(f"decode_{name}_ms"),
                                                "streaming_limit_ms": limit_ms, "share_of_limit": limit_ms / ms}  # fmt: skip
    for spec, result in specs.items():
        share = f", {result['share_of_limit']:.0%} of the streaming limit" if "share_of_limit" in result else ""
        print(f"{spec}: Tessera {result['ms']:.2f} ms, transformers {result['transformers_ms']} ms{share}")
    print(f"{model} open: {ours['open_s']:.2f} s (weights drawn and placed in {ours['load_s']:.2f} s) on "
          f"{ours['device']}, copy bandwidth {bandwidth / 1e12:.2f} TB/s, transformers: {theirs.get('error', 'ok')}")  # fmt: skip
    print(f"{model}: {REPEATS + 1} prefills of the same ids gave {'the same' if ours['deterministic'] else 'different'}"
          " logits bit for bit")  # fmt: skip
    extra = {"open_s": ours["open_s"], "load_s": ours["load_s"], "copy_tb_s": bandwidth / 1e12,
             "deterministic": ours["deterministic"], **theirs}  # fmt: skip
    return {"ok": bool(ours["finite"] and ours["deterministic"]), "specs": specs, **extra}


class Benchmark:
    """The benchmark of one model (benchmarks/hopper.py's parts `model` and `model_30b`): build and run on `out`."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def build(self, out: Path) -> None:
        build(out, self.config)

    def run(self, out: Path) -> dict[str, Any]:
        return run(out)


NANO_12B = Benchmark(CONFIG)
NANO_30B_A3B = Benchmark(ROOT / "configs" / "nemotron_3_nano_30b_a3b.yaml")


def check(out: Path) -> int:
    summary = run(out)
    print(json.dumps({"h100_model": summary}, default=float))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(prepare_or_check("h100_model.py", __doc__, OUT, build, check))
