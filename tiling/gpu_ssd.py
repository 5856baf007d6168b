"""GPU tiling policy: ssd_scan, kernels/ssd_blocks.py's chunked scan in matrix tiles, the same for every GPU
(its products are tessera.tile.mma: MFMA on CDNA through the SIMT lowering's matrix-instruction pattern,
the Blocked FMA form on Hopper until its WGMMA pattern).

A program (one wave) owns one head and `block_p` of its P channels and walks the call's chunks of L tokens
in order, in row blocks of `block_rows` (R: the tile side, 32 on CDNA and 16 on Hopper, or 16 for L <= 16;
the chunk padded to Lp, a whole number of them) and N in blocks of `block_state` (bn: the side, or 16 where N
padded to 16 is not a multiple of it). What sits in the scratchpad: the program's f32 state [block_p, Np] and dt, hi, lo [Lp] f32 (tessera.tile.alloc), and
each product's staged operands (the SIMT lowering's, one pair per mma: [R, bn] and [block_p, bn], [R, bn]
twice, [R, R] and [R, block_p], [block_p, R] and [R, bn]). block_p is at most the side (so that its
accumulators stay a few registers a lane), evened out over the blocks a head needs (Nano-12B, P = 80:
3 blocks of 32 on CDNA, 5 of 16 on Hopper).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy, matrix_element


# The side of the scan's matrix tiles (R, block_p and bn at most): 32 x 32 tiles on a 64-lane wave (16
# elements a lane), 16 x 16 on a 32-lane one (8 a lane: Hopper's FMA scan, the stand-in of its WGMMA one, is
# sized for compile time — each element of a tile is code: its loads, staging and map regions are written
# out per element, so larger tiles cost compile time as much as registers).
def _tile_side(arch: GpuArch) -> int:
    return 32 if arch.wave_size >= 64 else 16


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _ssd_scan(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    p, n, chunk = int(dims["head_dim"]), int(dims["state_size"]), int(dims["chunk_size"])
    side = _tile_side(arch)
    rows = min(side, _ceil_to(chunk, 16))
    padded_n = _ceil_to(n, 16)
    blocks = -(-p // side)
    block_p = min(side, _ceil_to(-(-p // blocks), 16))
    tiles = {
        "chunk": chunk,
        "padded_chunk": _ceil_to(chunk, rows),
        "block_rows": rows,
        "block_p": block_p,
        "block_state": side if padded_n % side == 0 else 16,
        "padded_state": padded_n,
        "threads": arch.wave_size,
    }
    if matrix_element(precision) == "bf16":
        tiles["operand_bf16"] = 1
    return TileChoice(tiles, grid=int(dims["num_heads"]) * -(-p // block_p), parallel="head_channels")


POLICIES: dict[str, GpuPolicy] = {"ssd_scan": _ssd_scan}
