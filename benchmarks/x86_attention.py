"""The x86 target's attention (kernels/attention.py's row-blocked form through convert-tessera-tile-to-x86)
against torch SDPA on the same 2 threads.

    python benchmarks/x86_attention.py [--heads 8,2,128] [--tokens 512] [--past 2048]

Causal GQA (--heads: query heads, KV heads, head_dim) with an f32 and a bf16 cache: a prefill of --tokens
over an empty cache, its query heads split over two threads in halves as the runtime splits them, and one
decode step after --past cached positions on one thread (the runtime's choice for one token). torch gets
the same keys and values as f32, torch.set_num_threads(2). Best of several runs, in ms.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from x86_gemm import as_a_session_runs
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, Region, StringAttr, i64
from xdsl.ir import Attribute, Block

from tessera.dialects import tile
from tessera.lowering.convert_tile_to_x86 import emit_kernel, kernels_module
from tessera.lowering.x86.pipeline import build_library
from tessera.passes.tile_choose_tiles import choose_tiles
from tessera.runtime.weights import bf16_bits

CAPACITY = 8192


def attention_kernel(name: str, heads: int, kv_heads: int, head_dim: int, cache_dtype: str) -> tile.KernelOp:
    """The attention kernel as tessera-compile builds it for x86 (the policy's tiles), as a session on this CPU
    runs it (x86_gemm.as_a_session_runs: its AVX2 variant without AVX-512)."""
    sizes = {"num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim, "max_seq_len": CAPACITY}
    attributes: dict[str, Attribute] = {key: IntegerAttr(value, i64) for key, value in sizes.items()}
    attributes["cache_dtype"] = StringAttr(cache_dtype)
    kernel = tile.KernelOp(
        properties={
            "sym_name": StringAttr(name),
            "kind": StringAttr("attention"),
            "dims": DictionaryAttr(attributes),
            "parallel": StringAttr("heads"),
            "grid": IntegerAttr(heads, i64),
        },
        regions=[Region(Block())],
    )
    choose_tiles(ModuleOp([kernel]), "x86", "fp32")
    return as_a_session_runs(kernel)


def best_ms(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def _on_threads(pool: ThreadPoolExecutor, kernel: Callable[..., None], args: tuple[object, ...],
                ranges: list[tuple[int, int]]) -> None:  # fmt: skip
    """kernel(*args, begin, end) over each range: on the pool's threads at once, or here for one range."""
    if len(ranges) == 1:
        kernel(*args, *ranges[0])
    else:
        list(pool.map(lambda r: kernel(*args, *r), ranges))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default="8,2,128", help="query heads, KV heads, head_dim")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--past", type=int, default=2048)
    options = parser.parse_args()
    heads, kv_heads, head_dim = (int(n) for n in options.heads.split(","))
    import torch

    torch.set_num_threads(2)
    kernels = {c: attention_kernel(f"attention_{c}", heads, kv_heads, head_dim, c) for c in ("f32", "bf16")}
    text = kernels_module([emit_kernel(kernel) for kernel in kernels.values()])
    library = build_library(text, Path(tempfile.mkdtemp()) / "attention.so")
    rng = np.random.default_rng(0)
    width = (heads + 2 * kv_heads) * head_dim
    cache = [rng.standard_normal((CAPACITY, kv_heads, head_dim)).astype(np.float32) for _ in "kv"]
    caches = {"f32": cache, "bf16": [bf16_bits(c) for c in cache]}
    pool = ThreadPoolExecutor(2)
    rows = []
    for label, tokens, past in (("prefill", options.tokens, 0), ("decode", 1, options.past)):
        qkv = rng.standard_normal((tokens, width)).astype(np.float32)
        out = np.empty((tokens, heads * head_dim), np.float32)
        q = torch.from_numpy(qkv[:, : heads * head_dim].reshape(tokens, heads, head_dim).transpose(1, 0, 2).copy())
        times = {}
        for cache_dtype, (keys, values) in caches.items():
            kernel, args = library.kernel(kernels[cache_dtype].sym_name.data), (qkv, keys, values, out, past)
            ranges = [(0, heads // 2), (heads // 2, heads)] if tokens > 1 else [(0, heads)]
            call = partial(_on_threads, pool, kernel, args, ranges)
            times[f"tessera, {cache_dtype} cache"] = best_ms(call, 10 if tokens > 1 else 200)
        k, v = (torch.from_numpy(c[: past + tokens].transpose(1, 0, 2).copy())[None] for c in cache)
        sdpa = partial(torch.nn.functional.scaled_dot_product_attention, q[None], k, v, is_causal=tokens > 1,
                       enable_gqa=True)  # fmt: skip
        times["torch SDPA (f32)"] = best_ms(sdpa, 10 if tokens > 1 else 200)
        rows += [f"| {label} T={tokens} past={past} | {name} | {ms:.3f} | {times['torch SDPA (f32)'] / ms:.2f}x |"
                 for name, ms in times.items()]  # fmt: skip
    print(f"{platform.processor() or platform.machine()}, {datetime.date.today()}, 2 threads, {kernels['f32'].sym_name.data} kernel, "
          f"{heads} query / {kv_heads} KV heads x {head_dim}\n")  # fmt: skip
    print("| case | kernel | ms | torch / this |\n|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
