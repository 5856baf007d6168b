"""GPU tiling policy: ssd_scan, kernels/ssd_blocks.py's chunked scan in matrix tiles, the same for every GPU
(its products are tessera.tile.mma: MFMA on CDNA through the SIMT lowering's matrix-instruction pattern,
the Blocked FMA form on Hopper until its WGMMA pattern).

A program (one wave) owns one head and `block_p` of its P channels and walks the call's chunks of L tokens
in order, in row blocks of `block_rows` (R: 32 on CDNA, 16 on Hopper, or 16 for L <= 16; the chunk padded to
Lp, a whole number of them) and N in blocks of `block_state` (bn: 32 on CDNA, 16 on Hopper, or 16 where N padded to 16 is not a
multiple of 32). What sits
in the scratchpad: the program's f32 state [block_p, Np] and dt, hi, lo [Lp] f32 (tessera.tile.alloc), and
each product's staged operands (the SIMT lowering's, one pair per mma: [R, bn] and [block_p, bn], [R, bn]
twice, [R, R] and [R, block_p], [block_p, R] and [R, bn]). block_p is at most 32 (so that its accumulators
stay a few registers a lane), evened out over the blocks a head needs (Nano-12B, P = 80: 3 blocks of 32).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy, matrix_element

# A matrix tile of the scan is at most 16 elements a lane: R x R, R x bn, R x block_p and block_p x bn tiles of
# 32 x 32 on a 64-lane wave; R 16 and bn 16 on a 32-lane one (each element of a tile is code: its loads,
# staging and map regions are written out per element, so larger tiles cost compile time as much as registers).
ELEMENTS_PER_LANE = 16
MAX_CHANNELS = 32  # block_p
MAX_STATE_BLOCK = 32  # bn


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _ssd_scan(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    p, n, chunk = int(dims["head_dim"]), int(dims["state_size"]), int(dims["chunk_size"])
    rows = min(ELEMENTS_PER_LANE * arch.wave_size // 32, _ceil_to(chunk, 16))
    padded_n = _ceil_to(n, 16)
    blocks = -(-p // MAX_CHANNELS)
    block_p = min(MAX_CHANNELS, _ceil_to(-(-p // blocks), 16))
    block_n = min(MAX_STATE_BLOCK, ELEMENTS_PER_LANE * arch.wave_size // max(rows, block_p))
    tiles = {
        "chunk": chunk,
        "padded_chunk": _ceil_to(chunk, rows),
        "block_rows": rows,
        "block_p": block_p,
        "block_state": block_n if padded_n % block_n == 0 else 16,
        "padded_state": padded_n,
        "threads": arch.wave_size,
    }
    if matrix_element(precision) == "bf16":
        tiles["operand_bf16"] = 1
    return TileChoice(tiles, grid=int(dims["num_heads"]) * -(-p // block_p), parallel="head_channels")


POLICIES: dict[str, GpuPolicy] = {"ssd_scan": _ssd_scan}
