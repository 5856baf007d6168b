"""GPU tiling policies (sm_90a, gfx942, gfx90a) for tessera-tile-choose-tiles: one policy per kernel kind,
written once for every GPU and reading only the arch table (arch.py) — so the Tile-IR of two
GPU targets differs only in what that table says (tile sizes, memory space, matrix instruction).

A policy returns the kernel's tiles and its tile-level body. On a GPU the body's loads into the scratchpad
("lds" on CDNA, "shared" on Hopper) are exactly the buffers the kernel allocates there, row padding
included, and the ROCDL lowering allocates them from the body (lowering/rocdl/kernel_text.KernelInfo).
Tiles every GPU kernel has: `threads` (the workgroup size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice, elementwise, load, mma, store

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


def _matmul(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """y[M, N] (op)= x[M, K] @ W[N, K]^T: a workgroup computes a block_m x block_n tile of y, staging
    x[block_m, block_k] and W[block_n, block_k] (both K-contiguous) in the scratchpad per K step."""
    n = int(dims["n"])
    element = matrix_element(precision)
    y_dtype = str(dims.get("y_dtype", "f32"))
    instruction = arch.instruction(element)
    if instruction is None:
        return _simt_matmul(n, arch)
    if arch.vendor == "amd":
        # 4 waves as 2 x 2, each a 32 x 64 quadrant of y: 2 x 4 MFMA tiles, 6 fragment reads per 8 MFMAs.
        block_m, block_n, block_k, threads, stages = 64, 128, 32, 4 * arch.wave_size, 1
    else:
        # One consumer warpgroup's m64 WGMMA rows twice, 128 columns, 3-stage TMA pipeline.
        block_m, block_n, block_k, threads, stages = 128, 128, 64, 3 * 128, 3
    pad = bank_pad(element, arch)
    is_async = arch.async_copies
    space = arch.scratch_space
    staged = [stages] if stages > 1 else []
    body = [
        load("x", [*staged, block_m, block_k], space, element, pad, is_async=is_async),
        load("weight", [*staged, block_n, block_k], space, element, pad, is_async=is_async),
        mma(block_m, block_n, block_k, element, element),
        elementwise(str(dims["epilogue"])),
        store("y", [block_m, block_n], element=y_dtype),
    ]
    tiles = {"block_m": block_m, "block_n": block_n, "block_k": block_k, "threads": threads}
    tiles |= {"mma_m": instruction.m, "mma_n": instruction.n, "mma_k": instruction.k}
    if stages > 1:
        tiles["stages"] = stages
    # kernels/gemm.py writes the GEMM once; the matrix units keep their emitters (lowering/rocdl/gemm.py MFMA,
    # lowering/nvvm/gemm.py WGMMA + TMA) until the MFMA / WGMMA patterns of tessera.tile.mma land.
    return TileChoice(tiles, body, grid=-(-n // block_n), parallel="column_blocks", emitter=True)


# The SIMT GEMM's tile of y per wave: the lowering's Blocked accumulator gives each lane of a 32-lane wave
# 8 x 8 outputs (64 lanes: 4 x 8), reading 8 + 8 (4 + 8) staged operands per 64 (32) multiply-adds.
SIMT_BLOCK_M, SIMT_BLOCK_N, SIMT_BLOCK_K = 32, 64, 16


def _simt_matmul(n: int, arch: GpuArch) -> TileChoice:
    """No matrix instruction for the operands (Hopper under --precision fp32: its only f32 tensor-core path is
    tf32): kernels/gemm.py's GEMM in GPU blocks (kernels/gemm_blocks.py), one wave per tile of y, the grid
    its column blocks by the call's token blocks."""
    tiles = {"block_m": SIMT_BLOCK_M, "block_n": SIMT_BLOCK_N, "block_k": SIMT_BLOCK_K, "threads": arch.wave_size}
    return TileChoice(tiles, grid=-(-n // SIMT_BLOCK_N), parallel="column_blocks", token_block=SIMT_BLOCK_M)


def policies() -> dict[str, GpuPolicy]:
    """Every kind's GPU policy (the family modules register theirs)."""
    from tessera.tiling import gpu_attention, gpu_moe, gpu_rows, gpu_ssd

    table: dict[str, GpuPolicy] = {"matmul": _matmul}
    for family in (gpu_rows, gpu_attention, gpu_ssd, gpu_moe):
        table |= family.POLICIES
    return table
