"""GPU tiling policies: the MoE experts (kernels/moe_blocks.py).

moe_experts: a workgroup per (expert, group of `group` tokens) lists the slots of those tokens routed to its
expert and computes them `rows` at a time: the up product K block by K block over x rows gathered into the
scratchpad, the hidden layer (as the matrix element) in the scratchpad `chunk` ffn columns at a time, the down
product per L block. The group is sized so that a workgroup expects about ROWS_PER_GROUP routed rows (each
rows' pass streams the expert's weights once); the chunk is what the scratchpad holds beside the rest.

Tiles: `threads` (one wave), `rows`, `group`, `chunk`, `block_k` (x columns per up step), `block_f` (ffn
columns per up block and per down step), `block_l` (latent columns per down block), `weight_bf16`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch, mma_rows_padded, staged_shape
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy, gemv_tiles, matrix_element

ROWS = 16  # routed rows per pass: the M of one 16x16 matrix tile
ROWS_PER_GROUP = 32  # expected routed rows per workgroup (group * top_k / num_experts)
BLOCK_K, BLOCK_F, BLOCK_L = 32, 64, 64


def _bytes(shape: tuple[int, ...], element_bytes: int, padded: bool = False) -> int:
    count = 1
    for extent in staged_shape(shape, element_bytes) if padded else shape:
        count *= extent
    return count * element_bytes


def _moe_experts(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    experts, top_k, ffn = int(dims["num_experts"]), int(dims["top_k"]), int(dims["ffn"])
    element = matrix_element(precision)
    size = 2 if element == "bf16" else 4
    a_padded, b_padded = mma_rows_padded(True)
    # Beside the hidden chunk: the slot list, the gathered x block (read in place), the staged up block, the
    # staged hidden slice and down block, the down result (tessera-tile-compute-footprint counts the same).
    rest = (
        4 * ROWS
        + _bytes((ROWS, BLOCK_K), size, a_padded)
        + _bytes((BLOCK_F, BLOCK_K), size, b_padded)
        + _bytes((ROWS, BLOCK_F), size, a_padded)
        + _bytes((BLOCK_L, BLOCK_F), size, b_padded)
        + 4 * ROWS * BLOCK_L
    )
    whole = -(-ffn // BLOCK_F) * BLOCK_F
    fits = (arch.static_limit - rest) // (ROWS * size) // BLOCK_F * BLOCK_F
    group = -(-ROWS_PER_GROUP * experts // top_k // 64) * 64
    tiles = {"threads": arch.wave_size, "rows": ROWS, "group": group, "chunk": min(whole, fits)}
    tiles |= {"block_k": BLOCK_K, "block_f": BLOCK_F, "block_l": BLOCK_L, "weight_bf16": int(element == "bf16")}
    return TileChoice(tiles, grid=experts, parallel="experts", token_block=group)


def _expert_gemvs(role: str) -> GpuPolicy:
    """kernels/moe_decode.py's decode-step expert GEMVs: tiling/gpu.py's GEMV tiles for the role's rows (up: F,
    down: L), a program per choice and block of `columns` rows."""

    def policy(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
        n = int(dims["ffn"] if role == "up" else dims["latent"])
        gemv = gemv_tiles(n, matrix_element(precision), arch)
        grid = int(dims["top_k"]) * -(-n // gemv.tiles["columns"])
        return TileChoice(gemv.tiles, grid=grid, parallel="experts")

    return policy


POLICIES: dict[str, GpuPolicy] = {
    "moe_experts": _moe_experts,
    "moe_experts_up": _expert_gemvs("up"),
    "moe_experts_down": _expert_gemvs("down"),
}
