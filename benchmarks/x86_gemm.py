"""Tessera's GEMM / GEMV kernels (kernels/gemm.py, lowered for x86) against torch.matmul fp32 on this CPU: the
vector kernel, or where a session would run it (AVX2 without AVX-512) its AVX2 variant.

    python benchmarks/x86_gemm.py [--reps N] [--shapes 6176x1024,4096x1024] [--m 512,2048] [--tiles mr,nr,kc,mc,ku]
                                  [--activations bf16]

Prints a markdown table. Both sides use 2 threads: torch its own pool (torch.set_num_threads(2)), Tessera
one kernel called from 2 Python threads on half of the weight panels each (ctypes releases the GIL), as
the runtime does. Each row is the best of 3 rounds of --reps calls, the two sides taking turns by rounds
after a short pause (torch's OpenMP threads spin for a while after each call).

Prefill rows (M = 512, 2048) report GFLOP/s, 2*M*N*K / time. Decode rows (M = 1) report the GB/s of
weights streamed; they cycle through enough weight copies to exceed the L3 cache, so that the weights
come from DRAM as in a real decode step (torch gets the same number of copies).

--activations bf16 runs the prefill rows with bf16 x and y (GemmSpec x_dtype / y_dtype; f32 weights and
accumulation) against the same torch f32 matmul.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tessera import toolchain
from tessera.dialects import tile
from tessera.lowering.convert_tile_to_x86 import avx2_kernel, emit_kernel, gemm_kernel
from tessera.lowering.x86.pipeline import build_library
from tessera.runtime.cpu_features import choose_isa
from tessera.runtime.weights import bf16_bits, pack_panels
from tessera.tiling import x86_gemm

SHAPES = ((6176, 1024), (4096, 1024), (1024, 4096), (32000, 1024))  # (N, K) of the model's projections
PREFILL_M = (512, 2048)
THREADS = 2
SETTLE_S = 0.3  # pause before each runner's round, for the other side's threads to go idle
STREAM_BYTES = 160 * 2**20  # weight bytes one decode row cycles through: well past the 32 MiB L3

Runner = Callable[[], object]


def as_a_session_runs(kernel: tile.KernelOp) -> tile.KernelOp:
    """The kernel a session runs on this CPU: the vector kernel, or its AVX2 variant where the runtime picks
    that (AVX2 without AVX-512, in either precision; or TESSERA_ISA=avx2)."""
    return avx2_kernel(kernel) if choose_isa("fp32").matrix == "avx2" else kernel


def build_kernel(spec: x86_gemm.GemmSpec, tiles: x86_gemm.GemmTiles, scratch: Path) -> Callable[..., None]:
    """The GEMM as a session runs it (--tiles' lanes and accumulators replaced by the AVX2 variant's)."""
    kernel = as_a_session_runs(gemm_kernel("gemm", spec, tiles))
    library = build_library(emit_kernel(kernel), scratch / f"gemm_{id(spec)}_{id(tiles)}.so")
    return library.kernel(kernel.sym_name.data)


def threaded(kernel: Callable[..., None], pool: ThreadPoolExecutor, panels: int) -> Callable[..., None]:
    """The kernel run by THREADS Python threads on contiguous, nearly equal panel ranges."""
    bounds = [panels * t // THREADS for t in range(THREADS + 1)]

    def run(*args: np.ndarray) -> None:
        futures = [pool.submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(THREADS)]
        for future in futures:
            future.result()

    return run


def best_times(runners: list[Runner], reps: int, rounds: int = 3) -> list[float]:
    """Best wall time of each runner over `rounds` rounds of `reps` back-to-back calls each.

    The runners take turns by rounds, not call by call, after a pause: torch's OpenMP threads keep
    spinning on both cores for a while after a matmul returns, which would slow down whatever runs
    right after it (measured: +50% on a 9 ms Tessera GEMM).
    """
    best = [float("inf")] * len(runners)
    for _ in range(rounds):
        for index, runner in enumerate(runners):
            time.sleep(SETTLE_S)
            runner()  # warm-up: page faults, caches
            for _ in range(reps):
                start = time.perf_counter()
                runner()
                best[index] = min(best[index], time.perf_counter() - start)
    return best


def prefill_row(
    n: int, k: int, m: int, run: Callable[..., None], tiles: x86_gemm.GemmTiles, reps: int, activations: str = "f32"
) -> str:
    rng = np.random.default_rng()
    weight = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    packed = pack_panels(weight, tiles.nr, "f32")
    y = np.empty((m, n), dtype=np.float32)
    x_t, w_t = torch.from_numpy(x), torch.from_numpy(weight)
    label = "f32"
    if activations == "bf16":  # bf16 x and y for Tessera only
        x, y, label = bf16_bits(x), np.empty((m, n), dtype=np.uint16), "f32, x/y bf16"
    ours, theirs = best_times([lambda: run(x, packed, y), lambda: torch.matmul(x_t, w_t.T)], reps)
    flops = 2 * m * n * k
    return _row(f"{m}x{n}x{k}", label, ours, theirs, f"{flops / ours / 1e9:.0f} / {flops / theirs / 1e9:.0f} GFLOP/s")


def decode_row(n: int, k: int, dtype: str, run: Callable[..., None], tiles: x86_gemm.GemmTiles, reps: int) -> str:
    spec = x86_gemm.GemmSpec(n, k, "store", weight_dtype=dtype)
    rng = np.random.default_rng()
    weight = rng.standard_normal((n, k), dtype=np.float32)
    packed = pack_panels(weight, tiles.nr, spec.weight_dtype)
    copies = max(1, -(-STREAM_BYTES // packed.nbytes))
    ours_weights = [packed.copy() for _ in range(copies)]
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    theirs_weights = [torch.from_numpy(weight).to(torch_dtype) for _ in range(copies)]
    x = rng.standard_normal((1, k), dtype=np.float32)
    x_t = torch.from_numpy(x).to(torch_dtype)
    y = np.empty((1, n), dtype=np.float32)
    turn = {"ours": 0, "theirs": 0}

    def ours() -> None:
        run(x, ours_weights[turn["ours"] % copies], y)
        turn["ours"] += 1

    def theirs() -> None:
        torch.matmul(x_t, theirs_weights[turn["theirs"] % copies].T)
        turn["theirs"] += 1

    ours_s, theirs_s = best_times([ours, theirs], reps)
    weight_bytes = n * k * (2 if dtype == "bf16" else 4)
    rates = f"{weight_bytes / ours_s / 1e9:.1f} / {weight_bytes / theirs_s / 1e9:.1f} GB/s"
    return _row(f"1x{n}x{k}", dtype, ours_s, theirs_s, rates)


def _row(shape: str, dtype: str, ours: float, theirs: float, rates: str) -> str:
    return f"| {shape} | {dtype} | {ours * 1e3:.3f} | {theirs * 1e3:.3f} | {theirs / ours:.2f} | {rates} |"


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    variant = "AVX2 variant" if choose_isa("fp32").matrix == "avx2" else "vector kernel"
    return (
        f"{model} ({toolchain.host_cpu().name}, {variant}), {THREADS} threads, torch {torch.__version__}, load {load}"
    )


def parse_shapes(text: str) -> list[tuple[int, int]]:
    return [(int(n), int(k)) for n, k in (item.split("x") for item in text.split(","))]


def parse_tiles(text: str | None, spec: x86_gemm.GemmSpec) -> x86_gemm.GemmTiles:
    if text is None:
        return x86_gemm.choose_tiles(spec)
    mr, nr, kc, mc, ku, *registers = map(int, text.split(","))
    lanes, accumulators = registers or (x86_gemm.VECTOR, 24)
    return x86_gemm.GemmTiles(nr=nr, mr=mr, kc=kc, mc=mc, ku=ku, lanes=lanes, accumulators=accumulators)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed calls per round (prefill; 4x for decode)")
    parser.add_argument("--shapes", default=",".join(f"{n}x{k}" for n, k in SHAPES), help="NxK,NxK,...")
    parser.add_argument("--m", default=",".join(map(str, PREFILL_M)), help="prefill token counts")
    parser.add_argument(
        "--tiles", default=None, help="mr,nr,kc,mc,ku[,lanes,accumulators] instead of choose_tiles (tuning)"
    )
    parser.add_argument("--no-decode", action="store_true", help="skip the M = 1 rows")
    parser.add_argument("--activations", choices=("f32", "bf16"), default="f32", help="x / y dtype of prefill rows")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    print(f"x86 GEMM, {datetime.datetime.now():%Y-%m-%d %H:%M}, {machine()}\n")
    print("| M x N x K | weights | Tessera ms | torch ms | torch / Tessera | Tessera / torch rate |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(THREADS) as pool:
        for n, k in parse_shapes(args.shapes):
            dtypes = ("f32",) if args.no_decode else ("f32", "bf16")
            for dtype in dtypes:
                spec = x86_gemm.GemmSpec(n, k, "store", weight_dtype=dtype)
                tiles = parse_tiles(args.tiles, spec)
                run = threaded(build_kernel(spec, tiles, Path(scratch)), pool, x86_gemm.panel_count(spec, tiles))
                if dtype == "f32":
                    prefill, prefill_tiles = run, tiles
                    if args.activations == "bf16":
                        act = x86_gemm.GemmSpec(n, k, "store", x_dtype="bf16", y_dtype="bf16")
                        prefill_tiles = parse_tiles(args.tiles, act)
                        kernel = build_kernel(act, prefill_tiles, Path(scratch))
                        prefill = threaded(kernel, pool, x86_gemm.panel_count(act, prefill_tiles))
                    for m in map(int, args.m.split(",")):
                        print(prefill_row(n, k, m, prefill, prefill_tiles, args.reps, args.activations), flush=True)
                if not args.no_decode:
                    print(decode_row(n, k, dtype, run, tiles, 4 * args.reps), flush=True)


if __name__ == "__main__":
    main()
