"""The NVVM target's GPU checks (issue 4) on a lent Hopper GPU: one command there, everything built here.

    python benchmarks/h100_nvvm.py prepare   # here (MLIR 22, LLVM, ptxas, transformers): out/h100_nvvm/,
                                             # out/h100_gemm/ and out/h100_attention/ (all git-ignored)
    python3 benchmarks/h100_nvvm.py check    # there, from a copy of the checkout with the three carried
                                             # (numpy, safetensors, cuda-bindings; torch for cuBLAS and SDPA)

prepare writes, in out/h100_nvvm/:
    tiny_fp32/, tiny_bf16/   a random dense Nemotron-H checkpoint (pattern M*-M: Mamba, attention, MLP; the
                             MoE experts are checked in the simulator) compiled with --target nvvm, --precision
                             fp32 (every kernel SIMT, float32 arithmetic) and bf16 (WGMMA + TMA projections,
                             attention on WGMMA)
    hf.npz                   its prompt, Hugging Face's float32 prompt logits and 16 greedy tokens
and runs benchmarks/h100_gemm.py build and benchmarks/h100_attention.py build (out/h100_gemm/,
out/h100_attention/).
check runs both artifacts through GpuSession on CUDA (runtime/cuda.py: weights uploaded once, state on the
device, tensor maps encoded at each launch that needs them) — prefill of the prompt, then greedy decode —
and fails (exit 1) unless fp32's prompt logits are within 1e-4 relative of HF's and its 16 tokens are
identical, and bf16's are within 2e-2; then runs benchmarks/h100_gemm.py check (each GEMM against float64,
then timed against cuBLAS) and benchmarks/h100_attention.py check (the 12B's attention at 8K and 32K tokens
against float64 on sampled rows, then timed against torch SDPA). One JSON line last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from checkout import make_tessera_importable, prepare_or_check

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "h100_nvvm"
PATTERN = "M*-M"
BOUNDS = {"fp32": 1e-4, "bf16": 2e-2}
SEED = 0  # the random checkpoint's weights (test/test_hf_contract.make_checkpoint)

make_tessera_importable()


def prepare(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "test"))
    from test_hf_contract import PROMPT, hf_reference, make_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(out / "checkpoint", SEED, hybrid_override_pattern=PATTERN)
    prompt = list(PROMPT)
    logits, tokens = hf_reference(checkpoint, prompt, uses_cache=True)
    np.savez(out / "hf.npz", prompt=np.array(prompt), logits=logits, tokens=np.array(tokens))
    for precision in BOUNDS:
        command = [sys.executable, "-m", "tessera.tools.tessera_compile", str(checkpoint), "--target", "nvvm",
                   "--precision", precision, "-o", str(out / f"tiny_{precision}"), "-q"]  # fmt: skip
        subprocess.run(command, check=True)
    for benchmark in ("h100_gemm.py", "h100_attention.py"):
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / benchmark), "build"], check=True)
    print(f"prepared {out}, out/h100_gemm and out/h100_attention")


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    if not np.isfinite(actual).all():
        return float("inf")
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def run_artifact(path: Path, prompt: list[int], new_tokens: int) -> dict[str, object]:
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_session import GpuSession

    session = GpuSession.open(read_artifact(path), "nvvm")
    started = time.perf_counter()
    logits = session.prefill(prompt)
    prefill_s = time.perf_counter() - started
    tokens, last = [], logits[-1]
    started = time.perf_counter()
    for _ in range(new_tokens):
        tokens.append(int(np.argmax(last)))
        last = session.decode(tokens[-1])
    decode_s = time.perf_counter() - started
    return {"logits": logits, "tokens": tokens, "prefill_s": prefill_s, "decode_tok_s": new_tokens / decode_s,
            "device": session.driver.device_name()}  # fmt: skip


def check(out: Path) -> int:
    hf = np.load(out / "hf.npz")
    prompt, expected, expected_tokens = [int(t) for t in hf["prompt"]], hf["logits"], [int(t) for t in hf["tokens"]]
    results: dict[str, object] = {}
    failed = False
    for precision, bound in BOUNDS.items():
        try:
            run = run_artifact(out / f"tiny_{precision}", prompt, len(expected_tokens))
        except Exception as exc:  # one line per failure; the JSON line still comes
            results[precision] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            failed = True
            continue
        error = relative_error(np.asarray(run["logits"]), expected)
        same_tokens = run["tokens"] == expected_tokens
        ok = error <= bound and (same_tokens or precision != "fp32")
        failed |= not ok
        results[precision] = {"relative_error": error, "bound": bound, "tokens_identical": same_tokens, "ok": ok,
                              "prefill_s": run["prefill_s"], "decode_tok_s": run["decode_tok_s"],
                              "device": run["device"]}  # fmt: skip
        print(f"{precision}: prompt logits {error:.2e} (bound {bound:.0e}), tokens identical: {same_tokens}")
    for kind in ("gemm", "attention"):
        exit_code = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"h100_{kind}.py"), "check"]).returncode
        results[f"{kind}_check_exit"] = exit_code
        failed |= exit_code != 0
    print(json.dumps({"h100_nvvm": results, "ok": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(prepare_or_check("h100_nvvm.py", __doc__, OUT, prepare, check))
