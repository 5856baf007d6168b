"""GPU tiling policy: attention (kernels/attention.py's GPU form, written once: one program per query head and
block of `query_rows` tokens, walking the keys in blocks of `block_k` with the online softmax).

Through the SIMT lowering the kernel's products read their operands from shared memory / LDS (the queries
[R, D], scaled once into a scratch buffer the scores' product reads in place, and a K block [block_k, D],
rows padded; the probabilities [R, block_k] and the V block [block_k, D], staged per key block) and so do
its two row reductions ([R, block_k] each): about 4 (R (D + 1) + block_k (2 D + 1)
+ 3 R block_k) bytes, f32. R is 32 on a 64-lane wave, 16 on a 32-lane one (an accumulator [R, D] of D R / W
registers a lane); `block_k` the largest power of two up to 64 that keeps the staging within STAGED_BYTES,
below the 48 KiB of static shared memory a Hopper kernel may declare and the 64 KiB of a CDNA workgroup's
LDS. The products' operands are f32 (K and V widened exactly), so CDNA multiplies on its f32 MFMA where the
tiles are whole 16 x 16 blocks, Hopper on FMAs until its WGMMA pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy

STAGED_BYTES = 40 * 1024


def _staged_bytes(rows: int, block_k: int, head_dim: int) -> int:
    return 4 * (rows * (head_dim + 1) + block_k * (2 * head_dim + 1) + 3 * rows * block_k)


def _attention(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    head_dim = int(dims["head_dim"])
    rows = 32 if arch.wave_size >= 64 else 16
    block_k = 64
    while block_k > 1 and _staged_bytes(rows, block_k, head_dim) > STAGED_BYTES:
        block_k //= 2
    tiles = {"threads": arch.wave_size, "query_rows": rows, "block_k": block_k}
    return TileChoice(tiles, grid=int(dims["num_heads"]), parallel="heads", token_block=rows)


POLICIES: dict[str, GpuPolicy] = {"attention": _attention}
