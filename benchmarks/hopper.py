"""The Hopper (nvvm) target's GPU checks and benchmarks on a lent H100 / H200: one command there, everything
built here.

    python benchmarks/hopper.py prepare   # here (MLIR 22, LLVM, ptxas, transformers, pip): out/hopper/
                                          # (git-ignored)
    python3 benchmarks/hopper.py check    # there, from a copy of the checkout with out/hopper carried
                                          # (numpy, safetensors, cuda-bindings; torch for cuBLAS and SDPA,
                                          # triton and einops for mamba_ssm)

prepare writes, in out/hopper/:
    contract/tiny_fp32, contract/tiny_bf16   a random dense Nemotron-H checkpoint (pattern M*-M: Mamba,
                             attention, MLP; the MoE experts are checked in the simulator) compiled with
                             --target nvvm, --precision fp32 (every kernel SIMT, float32 arithmetic) and bf16
                             (WGMMA + TMA projections, attention and the SSD scan on WGMMA)
    contract/hf.npz          its prompt, Hugging Face's float32 prompt logits and 16 greedy tokens
    gemm/, attention/, ssd/, rows/
                             the kernel benchmarks' builds (benchmarks/h100_gemm.py, h100_attention.py,
                             h100_ssd.py, h100_rows.py: cubins, PTX and spec.json), and ssd/mamba_ssm_src:
                             mamba_ssm's Triton SSD from its PyPI sdist (the baseline; never committed)
    slice/                   the Nano 12B-shaped slice `M*-` (benchmarks/h100_slice.py): its nvvm bf16
                             artifact (weights drawn from the seed there), HF config, transformers' wheels
    math/                    the written-out exp / log / sqrt / rsqrt kernels (benchmarks/gpu_math_sweep.py)
    model/, model_30b/       the whole Nano 12B and Nemotron-3 Nano 30B-A3B (benchmarks/h100_model.py): nvvm
                             bf16 artifacts without weights (drawn on the device there), trimmed for carrying;
                             run by `check --parts model,model_30b`, not by the default check
check runs both artifacts through GpuSession on CUDA (runtime/cuda.py: weights uploaded once, state on the
device, tensor maps encoded at each launch that needs them) — prefill of the prompt, greedy decode, then the
prompt again in two pieces and whole for its last position alone — failing unless fp32's prompt logits are
within 1e-4 relative of HF's each way and its 16 tokens are identical, and bf16's within 2e-2; then each
kernel benchmark (numerics against float64, then the median of 20 launches against cuBLAS, torch SDPA and
mamba_ssm on the same GPU; the row kernels against the time torch's device copy takes to move the same
bytes, so that their ratio is the share of the copy's bandwidth); the slice's 8000-token prefill from host
ids to the last position's logits on the host, against transformers there; then the math sweep on the GPU
itself. Each part runs in a process of its own (`hopper.py part NAME`), stopped after PART_SECONDS (and the
whole check after CHECK_SECONDS), so that a kernel that faults or hangs costs only its part. It prints each part's lines, then the table — kernel,
Tessera, the strongest baseline, their ratio (> 1: Tessera faster) — and one JSON line last (each part's
summary and seconds); exit 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h100_attention
import h100_gemm
import h100_model
import h100_rows
import h100_slice
import h100_ssd
import numpy as np
from checkout import make_tessera_importable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "hopper"
PATTERN = "M*-M"
BOUNDS = {"fp32": 1e-4, "bf16": 2e-2}
SEED = 0  # the random checkpoint's weights (test/test_hf_contract.make_checkpoint)
PIECE = 5  # the prompt's first piece: the second (8 tokens) starts inside the tiny model's chunk of 8
# part: (its module, the baseline's name, the result's key for the baseline's milliseconds)
KERNELS = {
    "gemm": (h100_gemm, "cuBLAS", "torch_ms"),
    "attention": (h100_attention, "SDPA", "sdpa_ms"),
    "ssd": (h100_ssd, "mamba_ssm", "mamba_ssm_ms"),
    "rows": (h100_rows, "device copy, same bytes", "copy_ms"),
    "slice": (h100_slice, "transformers", "transformers_ms"),
    "model": (h100_model.NANO_12B, "transformers", "transformers_ms"),
    "model_30b": (h100_model.NANO_30B_A3B, "transformers", "transformers_ms"),
}

make_tessera_importable()


def prepare(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "test"))
    from test_hf_contract import PROMPT, hf_reference, make_checkpoint

    contract = out / "contract"
    contract.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(contract / "checkpoint", SEED, hybrid_override_pattern=PATTERN)
    prompt = list(PROMPT)
    logits, tokens = hf_reference(checkpoint, prompt, uses_cache=True)
    np.savez(contract / "hf.npz", prompt=np.array(prompt), logits=logits, tokens=np.array(tokens))
    for precision in BOUNDS:
        command = [sys.executable, "-m", "tessera.tools.tessera_compile", str(checkpoint), "--target", "nvvm",
                   "--precision", precision, "-o", str(contract / f"tiny_{precision}"), "-q"]  # fmt: skip
        subprocess.run(command, check=True)
    for part, (module, _, _) in KERNELS.items():
        module.build(out / part)
    h100_ssd.unpack_mamba_ssm(out / "ssd")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_math_sweep.py"), "prepare", "--out",
                    str(out / "math")], check=True)  # fmt: skip
    print(f"prepared {out}: carry out/hopper and run `python3 benchmarks/hopper.py check` on the GPU")


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
    # The same prompt again from a fresh state: in two pieces (the second starting inside a chunk), and whole
    # with only the last position's logits brought back (its row tail run on that row).
    session.reset()
    pieces = np.concatenate([session.prefill(prompt[:PIECE]), session.prefill(prompt[PIECE:])])
    session.reset()
    last = session.prefill(prompt, last_only=True)
    return {"logits": logits, "pieces": pieces, "last": last, "tokens": tokens, "prefill_s": prefill_s,
            "decode_tok_s": new_tokens / decode_s, "device": session.driver.device_name()}  # fmt: skip


def check_contract(contract: Path) -> dict[str, Any]:
    """The HF contract of both artifacts: a result per precision, "ok" whether both hold."""
    if not (contract / "hf.npz").is_file():
        print(f"{contract / 'hf.npz'} is missing: run `python benchmarks/hopper.py prepare` and carry out/hopper")
        return {"ok": False, "error": f"{contract / 'hf.npz'} is missing"}
    hf = np.load(contract / "hf.npz")
    prompt, expected, expected_tokens = [int(t) for t in hf["prompt"]], hf["logits"], [int(t) for t in hf["tokens"]]
    results: dict[str, Any] = {"ok": True}
    for precision, bound in BOUNDS.items():
        try:
            run = run_artifact(contract / f"tiny_{precision}", prompt, len(expected_tokens))
        except Exception as exc:  # one line per failure; the JSON line still comes
            results[precision] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            results["ok"] = False
            print(f"{precision}: FAILED {results[precision]['error']}")
            continue
        error = max(relative_error(np.asarray(run[key]), expected[rows]) for key, rows in
                    (("logits", slice(None)), ("pieces", slice(None)), ("last", slice(-1, None))))  # fmt: skip
        same_tokens = run["tokens"] == expected_tokens
        ok = error <= bound and (same_tokens or precision != "fp32")
        results["ok"] &= ok
        results[precision] = {"relative_error": error, "bound": bound, "tokens_identical": same_tokens, "ok": ok,
                              "prefill_s": run["prefill_s"], "decode_tok_s": run["decode_tok_s"],
                              "device": run["device"]}  # fmt: skip
        print(f"{precision}: prompt logits (whole, in pieces, last only) {error:.2e} (bound {bound:.0e}), "
              f"tokens identical: {same_tokens}")  # fmt: skip
    return results


def table(summaries: dict[str, dict[str, Any]]) -> str:
    """The kernels' table: a row per spec timed, Tessera against the strongest baseline measured beside it."""
    lines = ["| kernel | Tessera ms | baseline | baseline ms | Tessera / baseline speed |", "|---|---|---|---|---|"]
    for part, (_, baseline, key) in KERNELS.items():
        for name, result in summaries.get(part, {}).get("specs", {}).items():
            if "ms" not in result:
                lines.append(f"| {part} {name} | failed: {result.get('error', 'numerics')} | {baseline} | | |")
                continue
            theirs = result.get(key)
            ratio = f"{theirs / result['ms']:.2f}x" if theirs else "not measured"
            lines.append(f"| {part} {name} | {result['ms']:.3f} | {baseline} | "
                         f"{'' if theirs is None else f'{theirs:.3f}'} | {ratio} |")  # fmt: skip
    return "\n".join(lines)


# A part's time limit there (a kernel that hangs costs its part, not the lent machine's whole time), and the
# whole check's: the JSON line comes before the device tool's 600 s limit on one command.
PART_SECONDS = 240
CHECK_SECONDS = 540


def check_part(part: str, out: Path) -> dict[str, Any]:
    """One part of check, in this process: its summary ("ok", and per spec its numbers)."""
    if part == "contract":
        return check_contract(out / "contract")
    if part == "math":
        sweep = [sys.executable, str(ROOT / "benchmarks" / "gpu_math_sweep.py"), "check", "--out", str(out / "math")]
        return {"ok": subprocess.run(sweep).returncode == 0}
    run: Callable[[Path], dict[str, Any]] = KERNELS[part][0].run
    return run(out / part)


def run_part(part: str, out: Path, seconds: float = PART_SECONDS) -> dict[str, Any]:
    """One part in a process of its own (its lines pass through; its summary comes back through a file): a
    fault poisons only that process's CUDA context, and a part past `seconds` is stopped — the other parts
    still run and report."""
    result = out / f"{part}.result.json"
    result.unlink(missing_ok=True)
    if seconds <= 0:
        print(f"{part}: not run, the check's {CHECK_SECONDS} s are spent", flush=True)
        return {"ok": False, "error": f"not run: the check's {CHECK_SECONDS} s are spent"}
    command = [sys.executable, str(Path(__file__).resolve()), "part", part, "--out", str(out)]
    started = time.perf_counter()
    # A session of its own, so that a stop takes the part's own children too (transformers' process, the
    # math sweep's) and none is left holding the GPU.
    process = subprocess.Popen(command, start_new_session=True)
    try:
        returncode = process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"{part}: stopped after {seconds:.0f} s", flush=True)
        return {"ok": False, "error": f"stopped after {seconds:.0f} s"}
    seconds = time.perf_counter() - started
    if not result.is_file():
        return {"ok": False, "error": f"exit {returncode} before its summary", "seconds": seconds}
    return {**json.loads(result.read_text()), "seconds": seconds}


def check(out: Path, parts: tuple[str, ...]) -> int:
    started = time.perf_counter()
    results = {}
    for part in parts:
        left = CHECK_SECONDS - (time.perf_counter() - started)
        results[part] = run_part(part, out, min(PART_SECONDS, left))
    print(table(results))
    ok = all(result.get("ok", False) for result in results.values())
    print(json.dumps(h100_gemm.json_safe({"hopper": results, "ok": ok})))
    return 0 if ok else 1


PARTS = ("contract", *KERNELS, "math")
# What `check` runs unless --parts says: issue 14's prefill checks. The whole models (issue 15) are
# `check --parts model,model_30b`, a command of its own (each up to PART_SECONDS there).
DEFAULT_PARTS = tuple(part for part in PARTS if not part.startswith("model"))


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/hopper.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "check", "part"], nargs="?", default="check")
    parser.add_argument("part", nargs="?", choices=PARTS, help="part: which one, in this process")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help="check: the parts to run, comma-separated")
    options = parser.parse_args()
    if options.command == "prepare":
        prepare(options.out)
        return 0
    if options.command == "part":
        if options.part is None:
            parser.error("part: name the part")
        summary = h100_gemm.json_safe(check_part(options.part, options.out))
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / f"{options.part}.result.json").write_text(json.dumps(summary))
        return 0
    parts = tuple(options.parts.split(","))
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)} (known: {', '.join(PARTS)})")
    return check(options.out, parts)


if __name__ == "__main__":
    sys.exit(main())
