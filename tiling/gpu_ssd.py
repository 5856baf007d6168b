"""GPU tiling policy: ssd_scan, kernels/ssd_blocks.py's chunked scan in matrix tiles, the same for every GPU
(its products are tessera.tile.mma: MFMA on CDNA through the SIMT lowering's matrix-instruction pattern,
Hopper's WGMMA under bf16, the Blocked FMA form on Hopper in fp32).

A program owns one head and `block_p` of its P channels and walks the call's chunks of L tokens in order, in
row blocks of `block_rows` (R; the chunk padded to Lp, a whole number of them) and N in blocks of
`block_state` (bn: N padded to Np, a multiple of it). What sits in the scratchpad: the program's f32 state
Sᵀ [Np, block_p] and dt, hi, lo [Lp] f32 (tessera.tile.alloc).

- The lane form (one wave; CDNA, and Hopper in fp32): R, block_p and bn at most the tile side (32 on a
  64-lane wave, 16 on a 32-lane one; R 16 for L <= 16), each product's operands staged by the SIMT lowering
  (one pair per mma: [R, bn] and [bn, block_p], [R, bn] twice, [R, R] and [R, block_p], [bn, R] and
  [R, block_p]). block_p is evened out over the blocks a head needs (Nano-12B, P = 80: 3 blocks of 32 on
  CDNA, 5 of 16 on Hopper).
- The warpgroup form (Hopper under bf16): one warpgroup (128 threads), R = bn = 64 (WGMMA's M, and a 128-byte
  swizzle row of K), block_p the head's channels evened out over blocks of at most WARPGROUP_MAX_CHANNELS,
  rounded up to 8 (WGMMA's N): every product a WGMMA on operands the lanes stage in dynamic shared memory
  (lowering/nvvm/warpgroup_mma.py). Nano-12B: 256 programs of 40 channels, each a state of 20 KiB in static
  shared memory and 55 KiB of staged operands — two programs to an SM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import WARPGROUP, GpuArch
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy, matrix_element

# The warpgroup form's most channels a program: its outputs hold two [64, block_p] f32 accumulators and the
# scores' [64, 64] at once, within a thread's 255 registers up to 64 (Nano-12B's 80 in one block spilled 92
# registers' worth; in two of 40: 203 registers, and two programs fit an SM's registers and shared memory).
WARPGROUP_MAX_CHANNELS = 64


# The side of the lane form's matrix tiles (R, block_p and bn at most): 32 x 32 tiles on a 64-lane wave (16
# elements a lane), 16 x 16 on a 32-lane one (8 a lane: Hopper's fp32 FMA scan is sized for compile time —
# each element of a tile is code: its loads, staging and map regions are written out per element, so larger
# tiles cost compile time as much as registers).
def _tile_side(arch: GpuArch) -> int:
    return 32 if arch.wave_size >= 64 else 16


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _warpgroup_scan(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice | None:
    """The warpgroup form (the module docstring) where the arch's bf16 matrix instruction is a warpgroup's and
    the model runs in bf16; None otherwise."""
    instruction = arch.instruction("bf16")
    if precision != "bf16" or instruction is None or instruction.warpgroup is None:
        return None
    p, n, chunk = int(dims["head_dim"]), int(dims["state_size"]), int(dims["chunk_size"])
    rows = instruction.m
    padded_chunk, padded_n = _ceil_to(chunk, rows), _ceil_to(n, rows)
    # Static shared memory holds Sᵀ [Np, block_p] f32 besides dt, hi, lo [Lp] and the key block's hi, lo [R]
    # (f32): at N = 256 (Nemotron-H 47B / 56B) that caps a block at 40 channels.
    state_budget = arch.static_limit - 4 * (3 * padded_chunk + 2 * rows)
    widest = min(WARPGROUP_MAX_CHANNELS, state_budget // (4 * padded_n) // 8 * 8)
    blocks = -(-p // widest)
    block_p = _ceil_to(-(-p // blocks), 8)
    tiles = {"chunk": chunk, "padded_chunk": padded_chunk, "block_rows": rows, "block_p": block_p,
             "block_state": rows, "padded_state": padded_n, "threads": WARPGROUP, "operand_bf16": 1}  # fmt: skip
    return TileChoice(tiles, grid=int(dims["num_heads"]) * blocks, parallel="head_channels")


def _ssd_scan(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    warpgroup = _warpgroup_scan(dims, precision, arch)
    if warpgroup is not None:
        return warpgroup
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
