"""Attention on x86 two ways: the hand-written emitter the x86 target uses (lowering/x86/attention.py) and
kernels/attention.py through convert-tessera-tile-to-x86 (the GPUs' kernel, which x86 adopts once it is as
fast: tiling/x86.py keeps the emitter until then), against torch SDPA (fp32) on the same 2 threads.

    python benchmarks/x86_attention_paths.py [--block-k 4,16,64] [--tokens 512] [--past 2048]

Causal GQA with 8 query / 2 KV heads x 128 (an f32 cache): a prefill of --tokens over an empty cache, and one
decode step after --past cached positions. The emitter's programs are query heads, split over two threads in
halves; the Tile-IR kernel's are tokens, split where the causal work halves (t / T = 1 / sqrt 2), its decode
step on one thread. Best of several runs, in ms.
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
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, Region, StringAttr, i64
from xdsl.ir import Block

from tessera.dialects import tile
from tessera.lowering.convert_tile_to_x86 import emit_kernel
from tessera.lowering.x86.attention import AttentionDims, emit_attention
from tessera.lowering.x86.pipeline import build_library
from tessera.passes.tile_choose_tiles import write_body
from tessera.tiling.choice import TileChoice

HEADS, KV_HEADS, HEAD_DIM, CAPACITY = 8, 2, 128, 4096


def tile_ir_kernel(block_k: int) -> str:
    """kernels/attention.py with keys in blocks of `block_k`, lowered for x86."""
    dims = {"num_heads": HEADS, "num_kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "max_seq_len": CAPACITY}
    kernel = tile.KernelOp(
        properties={
            "sym_name": StringAttr(f"tile_ir_{block_k}"),
            "kind": StringAttr("attention"),
            "dims": DictionaryAttr({key: IntegerAttr(value, i64) for key, value in dims.items()}),
            "parallel": StringAttr("tokens"),
            "grid": IntegerAttr(0, i64),
            "target": StringAttr("x86"),
            "tiles": DictionaryAttr({"block_k": IntegerAttr(block_k, i64)}),
        },
        regions=[Region(Block())],
    )
    ModuleOp([kernel])
    write_body(kernel, TileChoice({"block_k": block_k}), [])
    kernel.detach()
    return emit_kernel(kernel)


def best_ms(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-k", default="4,16,64", help="key blocks of the Tile-IR kernel to time")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--past", type=int, default=2048)
    options = parser.parse_args()
    blocks = [int(b) for b in options.block_k.split(",")]
    import torch

    torch.set_num_threads(2)
    text = "\n".join([emit_attention("emitter", AttentionDims(HEADS, KV_HEADS, HEAD_DIM, CAPACITY)),
                      *(tile_ir_kernel(b) for b in blocks)])  # fmt: skip
    library = build_library(text, Path(tempfile.mkdtemp()) / "attention.so")
    rng = np.random.default_rng(0)
    width = (HEADS + 2 * KV_HEADS) * HEAD_DIM
    cache = [rng.standard_normal((CAPACITY, KV_HEADS, HEAD_DIM)).astype(np.float32) for _ in "kv"]
    pool = ThreadPoolExecutor(2)

    def halves(kernel: Callable[..., None], args: tuple[object, ...], extent: int, middle: int) -> None:
        list(pool.map(lambda r: kernel(*args, *r), [(0, middle), (middle, extent)]))

    rows = []
    for label, tokens, past in (("prefill", options.tokens, 0), ("decode", 1, options.past)):
        qkv = rng.standard_normal((tokens, width)).astype(np.float32)
        out = np.empty((tokens, HEADS * HEAD_DIM), np.float32)
        args = (qkv, *cache, out, past)
        emitter = library.kernel("emitter")
        times = {"emitter": best_ms(lambda: halves(emitter, args, HEADS, HEADS // 2), 10)}  # noqa: B023
        for b in blocks:
            kernel = library.kernel(f"tile_ir_{b}")
            middle = max(1, round(tokens / 2**0.5)) if tokens > 1 else 1
            times[f"kernels/ block_k {b}"] = best_ms(lambda: halves(kernel, args, tokens, middle), 10)  # noqa: B023
        q = torch.from_numpy(qkv[:, : HEADS * HEAD_DIM].reshape(tokens, HEADS, HEAD_DIM).transpose(1, 0, 2).copy())
        k, v = (torch.from_numpy(c[: past + tokens].transpose(1, 0, 2).copy())[None] for c in cache)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        times["torch SDPA"] = best_ms(lambda: sdpa(q[None], k, v, is_causal=tokens > 1, enable_gqa=True), 10)  # noqa: B023
        rows += [f"| {label} T={tokens} past={past} | {name} | {ms:.3f} | {times['torch SDPA'] / ms:.2f}x |"
                 for name, ms in times.items()]  # fmt: skip
    print(f"{platform.processor() or platform.machine()}, {datetime.date.today()}, 2 threads\n")
    print("| case | kernel | ms | vs torch SDPA |\n|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
