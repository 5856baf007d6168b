"""Tessera's bf16 GEMM variants against torch.matmul in bf16 (oneDNN) on this CPU (not a test).

    python benchmarks/x86_bf16_gemm.py [--threads 2] [--shapes 512x1024x4096,...] [--reps 5] [--rounds 3]

Each shape M x K x N (x [M, K] bf16, W [N, K] bf16, y f32) runs as the artifact runs it: the GEMM's matrix
variants (kernels/gemm.py) — `amx` (AMX tiles, where this CPU has them and Linux grants tile data) and
`avx512bf16` (vdpbf16ps dot products, where it lists avx512_bf16) — each call's weight panels split evenly
over --threads Python threads (ctypes releases the GIL; the native programs split the same way), against
torch.matmul of bf16 operands on as many threads in its own process, once with oneDNN's best ISA here and once
capped at AVX-512 BF16 (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16: the like-for-like baseline of the dot-product
variant on a CPU that also has AMX). Each measurement is the median of --reps calls after a warm-up; the two
sides alternate for --rounds rounds (a VM's rate drifts between runs by more than the gaps measured here), and
the table shows the median of each side over the rounds and the range of the per-round ratios, with the
machine and date.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
from checkout import make_tessera_importable

make_tessera_importable()
SHAPES = ((512, 1024, 4096), (512, 4096, 1024), (2048, 5120, 20480))  # the mid model's; amx_host's GEMM

_TORCH = """
import json, time, torch
torch.set_num_threads({threads})
a = torch.randn({m}, {k}, dtype=torch.bfloat16); b = torch.randn({k}, {n}, dtype=torch.bfloat16)
torch.matmul(a, b)
times = []
for _ in range({reps}):
    start = time.perf_counter(); torch.matmul(a, b); times.append(time.perf_counter() - start)
print(json.dumps(sorted(times)[len(times) // 2]))
"""


def torch_seconds(m: int, k: int, n: int, threads: int, reps: int, isa: str | None) -> float:
    env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": isa} if isa else {})}
    code = _TORCH.format(m=m, k=k, n=n, threads=threads, reps=reps)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(json.loads(result.stdout.strip().splitlines()[-1]))


@functools.cache
def variant_library(isa: str, m: int, k: int, n: int, scratch: Path) -> tuple[ctypes.CDLL, int]:
    """The `isa` variant of an n x k GEMM (bf16 x and weight, f32 y), built for this CPU (once per run); its
    panel count."""
    from xdsl.dialects.builtin import ModuleOp

    from tessera import toolchain
    from tessera.dialects.upstream import upstream_text
    from tessera.lowering.convert_tile_to_x86 import amx_kernel, bf16_dot_kernel, kernels_module
    from tessera.lowering.expand_math import expand_math
    from tessera.lowering.tile_to_x86 import lower_to_x86
    from tessera.lowering.x86.pipeline import VARIANT_PIPELINES
    from tessera.tiling.x86_gemm import GemmSpec, choose_tiles, panel_count

    spec = GemmSpec(n, k, "store", weight_dtype="bf16", x_dtype="bf16")
    tiles = choose_tiles(spec)
    kernel = amx_kernel("gemm", spec, tiles) if isa == "amx" else bf16_dot_kernel("gemm", spec, tiles)
    assert kernel is not None
    module = ModuleOp([kernel])
    lower_to_x86(module, amx=isa == "amx", bf16_dot=isa == "avx512bf16")
    expand_math(module, "x86")
    text = kernels_module([upstream_text(module.body.block.first_op)])  # type: ignore[arg-type]
    llvm_ir = toolchain.mlir_to_llvm_ir(text, VARIANT_PIPELINES[isa])
    path = toolchain.link_shared([toolchain.compile_object(llvm_ir, cpu=toolchain.VARIANT_CPUS[isa])],
                                 scratch / f"{isa}_{m}_{k}_{n}.so")  # fmt: skip
    return ctypes.CDLL(str(path)), panel_count(spec, tiles)


def tessera_seconds(isa: str, m: int, k: int, n: int, threads: int, reps: int, scratch: Path) -> float:
    from tessera.runtime.native import memref_args
    from tessera.runtime.weights import bf16_bits, pack_amx_vnni, pack_pair_panels

    library, panels = variant_library(isa, m, k, n, scratch)
    function = getattr(library, f"gemm__{isa}")
    rng = np.random.default_rng(0)
    x = bf16_bits(rng.standard_normal((m, k), np.float32))
    weight = rng.standard_normal((n, k), np.float32) / np.sqrt(k)
    packed = pack_amx_vnni(weight) if isa == "amx" else pack_pair_panels(weight, 64)
    y = np.empty((m, n), np.float32)
    args = [*memref_args(x), *memref_args(packed), *memref_args(y)]
    bounds = np.linspace(0, panels, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:

        def run() -> None:
            list(pool.map(lambda i: function(*args, ctypes.c_int64(int(bounds[i])), ctypes.c_int64(int(bounds[i + 1]))),
                          range(threads)))  # fmt: skip

        run()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    from tessera.runtime.cpu_features import AMX, AVX512_BF16, cpu_flags, request_amx_permission

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES), help="MxKxN,...")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in shape.split("x")) for shape in args.shapes.split(",")]
    flags = cpu_flags()
    variants = [isa for isa, ok in (("amx", AMX <= flags and request_amx_permission()),
                                    ("avx512bf16", AVX512_BF16 <= flags)) if ok]  # fmt: skip
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")  # fmt: skip
    print(f"bf16 GEMMs, {cpu}, {args.threads} threads, medians of {args.reps} calls, {args.rounds} rounds; "
          f"{date.today()}\n")  # fmt: skip
    print("| M x K x N | variant | Tessera TFLOP/s | oneDNN TFLOP/s (same ISA class) | ratio (range over rounds) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for m, k, n in shapes:
            flops = 2.0 * m * k * n
            for isa in variants:
                onednn_isa = None if isa == "amx" else "AVX512_CORE_BF16"
                rounds = [
                    (tessera_seconds(isa, m, k, n, args.threads, args.reps, Path(scratch)),
                     torch_seconds(m, k, n, args.threads, args.reps, onednn_isa))
                    for _ in range(args.rounds)
                ]  # fmt: skip
                ours, theirs = (statistics.median(side) for side in zip(*rounds, strict=True))
                ratios = sorted(t / o for o, t in rounds)
                baseline = "default (AMX)" if isa == "amx" else "AVX512_CORE_BF16"
                print(f"| {m}x{k}x{n} | {isa} | {flops / ours / 1e12:.2f} | {flops / theirs / 1e12:.2f} "
                      f"({baseline}) | {statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
