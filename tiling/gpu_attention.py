"""GPU tiling policies: attention kernels (written with their ROCDL emitters).

attention (causal GQA over the KV cache, flash-style online softmax; lowering/rocdl/attention.py): a
workgroup takes one kv head and `block_q` query tokens, and its query rows are those tokens times the
group's query heads (group = num_heads / num_kv_heads), so each K/V block it stages serves the whole
group. Per key block the K and V tiles [block_k, head_dim] sit in the scratchpad; the queries stay in
registers for the whole kernel, as do the scores, probabilities and the output accumulator.

CDNA: waves of 16 query rows each (one 16-column MFMA tile); `block_q` is chosen so that the rows are
whole tokens (rows = group * block_q = 16 * waves) with about four waves. K and V rows are padded so that
the MFMA fragment reads hit distinct LDS banks (see _lds_pads).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.errors import TesseraError
from tessera.tiling.choice import TileChoice, elementwise, load, mma, reduce, store
from tessera.tiling.gpu import GpuPolicy, bank_pad, matrix_element

MFMA_ROWS = 16  # query rows of one wave: the N side of a 16x16 MFMA tile


def padded_head_dim(head_dim: int) -> int:
    """head_dim rounded up to the 16 of an MFMA tile (the extra columns of K and Q are zeros)."""
    return -(-head_dim // MFMA_ROWS) * MFMA_ROWS


def cdna_waves(group: int) -> tuple[int, int]:
    """(waves, block_q) for a kv group of `group` query heads: 16 * waves rows hold whole tokens of the
    group (token-major), about 4 waves. Groups whose odd part exceeds 8 take one token per workgroup
    (the last wave's extra columns idle)."""
    fewest = group // math.gcd(group, MFMA_ROWS)  # fewest waves whose rows are whole tokens
    if fewest <= 8:
        waves = fewest * max(1, 4 // fewest)
        return waves, MFMA_ROWS * waves // group
    return -(-group // MFMA_ROWS), 1


def _lds_pads(element: str, arch: GpuArch) -> tuple[int, int]:
    """Row pads (elements) of the K and V tiles. K is read along head_dim by 16 lanes of different rows:
    bf16 reads 8 bytes per lane (bank_pad); an f32 half-wave reads 16 rows x 2 columns, conflict-free
    when the row stride is 2 banks mod 16. V is read down its rows (4 rows apart between half-wave
    quads, 16 columns per row): an f32 stride of 4 banks mod 8 puts the two quads 16 banks apart."""
    if arch.vendor != "amd":
        return 0, 0
    if element == "bf16":
        pad = bank_pad(element, arch)
        return pad, pad
    return 2, 4


def _attention(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    heads, kv_heads, head_dim = int(dims["num_heads"]), int(dims["num_kv_heads"]), int(dims["head_dim"])
    if head_dim % 4:
        raise TesseraError(f"attention: head_dim {head_dim} must be a multiple of 4 on a GPU target")
    group = heads // kv_heads
    element = matrix_element(precision)
    out_dtype = str(dims.get("out_dtype", "f32"))
    dim = padded_head_dim(head_dim)
    instruction = arch.instruction(element)
    if arch.vendor == "amd":
        assert instruction is not None
        waves, block_q = cdna_waves(group)
        # K + V tiles ~16.5 KiB: three workgroups per CU (64 KiB LDS).
        block_k, threads, stages = (32 if element == "bf16" else 16), waves * arch.wave_size, 1
    else:
        # Hopper, for now: the SIMT kernel (lowering/gpu/simt_attention.py), a warp per (token, query head)
        # walking the keys with K and V streamed through registers, f32 arithmetic in either precision.
        # The WGMMA plan (two consumer warpgroups of m64 rows, a TMA producer, K/V double-buffered in
        # shared memory) comes with its emitter.
        element, dim, group, instruction = "f32", head_dim, 1, None
        block_q, block_k, threads, stages = 1, 1, arch.wave_size, 1
    rows = group * block_q
    k_pad, v_pad = _lds_pads(element, arch)
    space = arch.scratch_space if arch.vendor == "amd" else "registers"
    staged = [stages] if stages > 1 else []
    is_async = arch.async_copies and instruction is not None
    body = [
        load("q", [rows, dim], "registers", element),
        load("k_cache", [*staged, block_k, dim], space, element, k_pad, is_async=is_async),
        load("v_cache", [*staged, block_k, dim], space, element, v_pad, is_async=is_async),
        mma(block_k, rows, dim, element, element),  # scores^T = K · Q^T
        elementwise("causal_mask"),
        reduce("max"),
        elementwise("exp_rescale"),
        reduce("sum"),
        mma(dim, rows, block_k, element, element),  # out^T += V^T · P^T
        store("out", [rows, dim], element=out_dtype),
    ]
    tiles = {"block_q": block_q, "block_k": block_k, "threads": threads}
    if instruction is not None:
        tiles |= {"mma_m": instruction.m, "mma_n": instruction.n, "mma_k": instruction.k}
    if stages > 1:
        tiles["stages"] = stages
    if arch.vendor == "amd":
        return TileChoice(tiles, body, grid=kv_heads, parallel="kv_heads")
    return TileChoice(tiles, body, grid=heads, parallel="heads")


POLICIES: dict[str, GpuPolicy] = {"attention": _attention}
