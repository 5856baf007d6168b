"""GPU tiling policies (sm_90a, gfx942, gfx90a) for tessera-tile-choose-tiles: one policy per kernel kind,
written once for every GPU and reading only the arch table (arch.py) — so the Tile-IR of two
GPU targets differs only in what that table says (tile sizes, memory space, matrix instruction).

A policy returns the kernel's tiles (and a grid, a token block): the kernel of kernels/ is built from them.
Tiles every GPU kernel has: `threads` (the workgroup size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tessera.arch import WARPGROUP, GpuArch
from tessera.tiling.choice import TileChoice

GpuPolicy = Callable[[Mapping[str, Any], str, GpuArch], TileChoice]


def matrix_element(precision: str) -> str:
    """The element type of matrix-instruction operands: bf16 under --precision bf16, else f32."""
    return "bf16" if precision == "bf16" else "f32"


def bank_pad(element: str, arch: GpuArch) -> int:
    """Elements after each row of an LDS tile read along K by 16 lanes of different rows: 8 bytes, so that
    consecutive rows start 2 banks apart (4-byte banks) and a fragment read is conflict-free. Hopper's
    shared tiles are TMA-written with a swizzle instead of padding."""
    if arch.vendor != "amd":
        return 0
    return 4 if element == "bf16" else 1


# Hopper's pipelined GEMM: blocks of 128 x 256 of y (each consumer warpgroup's accumulator 64 x 256, 128
# registers a thread: lowering/nvvm/wgmma.py gives the consumers the producer's spare registers), which read
# a quarter fewer operand bytes per multiply-add than 128 x 128 — 128 x 128 where N is no wider.
WIDE_BLOCK_N, NARROW_BLOCK_N = 256, 128


def _matmul(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """y[M, N] (op)= x[M, K] @ W[N, K]^T: kernels/gemm.py's GEMM in GPU blocks, a workgroup per block_m x
    block_n tile of y. Where the arch's matrix instruction belongs to a warpgroup (Hopper's WGMMA) and x is
    bf16, the K loop is pipelined: a copy engine (TMA) streams x and W blocks into 4 stages of 128-byte-
    swizzled shared memory (192 KiB at 128 x 256), one warpgroup per 64 rows multiplies, one more issues the
    copies."""
    n = int(dims["n"])
    element = matrix_element(precision)
    if int(dims.get("tokens", 0)) == 1:
        return gemv_tiles(n, element, arch)
    instruction = arch.instruction(element)
    # TMA reads rows whose stride is a multiple of 16 bytes: K a multiple of 8 bf16.
    copyable = dims.get("x_dtype") == "bf16" and int(dims["k"]) % 8 == 0
    if instruction is None or instruction.warpgroup is None or not copyable:
        return _block_matmul(n, element, arch)
    block_m, block_n, block_k, stages = 128, WIDE_BLOCK_N if n > NARROW_BLOCK_N else NARROW_BLOCK_N, 64, 4
    tiles = {"block_m": block_m, "block_n": block_n, "block_k": block_k, "stages": stages, "weight_bf16": 1}
    tiles |= {"swizzle": block_k * 2, "threads": WARPGROUP * (block_m // instruction.m + 1)}
    tiles |= {"mma_m": instruction.m, "mma_n": block_n, "mma_k": instruction.k}  # one instruction spans the block
    return TileChoice(tiles, grid=-(-n // block_n), parallel="column_blocks", token_block=block_m)


# A wave's tile of y: 32 x 64, its K step 32 where a matrix instruction takes it (CDNA's MFMA: 2 x 4 blocks of
# 16 x 16, 6 fragment reads per 8 instructions per bf16 step), else 16 (the SIMT lowering's Blocked
# accumulator: each lane of a 32-lane wave 8 x 8 outputs, 8 + 8 staged reads per 64 multiply-adds).
BLOCK_M, BLOCK_N = 32, 64


def _block_matmul(n: int, element: str, arch: GpuArch) -> TileChoice:
    """kernels/gemm.py's GEMM in GPU blocks (kernels/gemm_blocks.py), one wave per tile of y, the grid its
    column blocks by the call's token blocks; the weight converted at load to the operand element."""
    block_k = 16 if arch.instruction(element) is None else 32
    tiles = {"block_m": BLOCK_M, "block_n": BLOCK_N, "block_k": block_k, "threads": arch.wave_size}
    if element == "bf16":
        tiles["weight_bf16"] = 1
    return TileChoice(tiles, grid=-(-n // BLOCK_N), parallel="column_blocks", token_block=BLOCK_M)


# A decode step's GEMV: W's columns per program (a wave's), fewer where N is small so that every SM streams W.
GEMV_COLUMNS, GEMV_NARROW_COLUMNS, GEMV_NARROW_N = 8, 4, 8192
GEMV_BYTES_PER_LANE = 32  # of W per row per step: two 16-byte loads a lane, 4 KiB in flight a wave at 4 columns


def gemv_tiles(n: int, element: str, arch: GpuArch) -> TileChoice:
    """kernels/gemm_blocks.py's gemv for a launch of one token (a decode step, dims `tokens` = 1): one wave per
    `columns` columns of W, GEMV_BYTES_PER_LANE of each row a lane per step of K — W streamed at the memory's
    bandwidth by N / columns programs instead of a GEMM's few column blocks."""
    columns = GEMV_COLUMNS if n >= GEMV_NARROW_N else GEMV_NARROW_COLUMNS
    block_k = arch.wave_size * GEMV_BYTES_PER_LANE // (2 if element == "bf16" else 4)
    tiles = {"columns": columns, "block_k": block_k, "threads": arch.wave_size}
    if element == "bf16":
        tiles["weight_bf16"] = 1
    return TileChoice(tiles, grid=-(-n // columns), parallel="column_blocks")


def policies() -> dict[str, GpuPolicy]:
    """Every kind's GPU policy (the family modules register theirs)."""
    from tessera.tiling import gpu_attention, gpu_moe, gpu_rows, gpu_ssd

    table: dict[str, GpuPolicy] = {"matmul": _matmul}
    for family in (gpu_rows, gpu_attention, gpu_ssd, gpu_moe):
        table |= family.POLICIES
    return table
