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
tiles are whole 16 x 16 blocks, Hopper on FMAs.

Hopper under bf16 takes the `bf16_operands` form on WGMMA instead (head dims that are whole
K steps of 16, up to 256): a program per query head and 128 query rows, a warpgroup (128 threads) per 64 of
them, key blocks of 64; the lanes stage the products' operands for WGMMA in dynamic shared memory (in
128-byte rows: the queries once, 16 KiB per 64 of D; each K block 8 KiB per 64 of D; the probabilities
16 KiB; the V block 128 bytes per row of D: 80 KiB at D = 128), the softmax's row reductions and
broadcasts in the registers of the threads holding the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import WARPGROUP, GpuArch, warpgroup_instruction
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy

STAGED_BYTES = 40 * 1024
# Query rows of a program of the WGMMA form: two consumer warpgroups share each K and V block staged
# (FlashAttention-3's 128-row tile), at 240 registers a thread (256 threads fit the 64K register file).
WARPGROUP_QUERY_ROWS = 128


def _staged_bytes(rows: int, block_k: int, head_dim: int) -> int:
    return 4 * (rows * (head_dim + 1) + block_k * (2 * head_dim + 1) + 3 * rows * block_k)


def _warpgroup_attention(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice | None:
    """The bf16-operand form on a warpgroup matrix instruction (Hopper's WGMMA), where the model runs in bf16
    (an f32 cache's K and V rounded as they are read) and the head dimension is whole K steps of one
    instruction: WARPGROUP_QUERY_ROWS query rows a program, a warpgroup per 64 of them, key blocks of 64."""
    head_dim, rows, block_k = int(dims["head_dim"]), WARPGROUP_QUERY_ROWS, 64
    instruction = arch.instruction("bf16")
    if precision != "bf16" or instruction is None:
        return None
    threads = WARPGROUP * (rows // instruction.m)
    fits = [warpgroup_instruction(arch, "bf16", shape, depth, threads)
            for shape, depth in (((rows, block_k), head_dim), ((rows, head_dim), block_k))]  # fmt: skip
    if None in fits:
        return None
    tiles = {"threads": threads, "query_rows": rows, "block_k": block_k, "bf16_operands": 1}
    return TileChoice(tiles, grid=int(dims["num_heads"]), parallel="heads", token_block=rows)


def _attention(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    warpgroups = _warpgroup_attention(dims, precision, arch)
    if warpgroups is not None:
        return warpgroups
    head_dim = int(dims["head_dim"])
    rows = 32 if arch.wave_size >= 64 else 16
    block_k = 64
    while block_k > 1 and _staged_bytes(rows, block_k, head_dim) > STAGED_BYTES:
        block_k //= 2
    tiles = {"threads": arch.wave_size, "query_rows": rows, "block_k": block_k}
    return TileChoice(tiles, grid=int(dims["num_heads"]), parallel="heads", token_block=rows)


def _attention_split(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """kernels/attention_decode.py's split: a wave per query head and split, lanes along the head dimension."""
    grid = int(dims["num_heads"]) * int(dims["splits"])
    return TileChoice({"threads": arch.wave_size}, grid=grid, parallel="heads")


def _attention_combine(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """kernels/attention_decode.py's combine: a wave per query head."""
    return TileChoice({"threads": arch.wave_size}, grid=int(dims["num_heads"]), parallel="heads")


POLICIES: dict[str, GpuPolicy] = {
    "attention": _attention,
    "attention_split": _attention_split,
    "attention_combine": _attention_combine,
}
