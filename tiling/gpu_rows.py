"""GPU tiling policies of the SIMT kernels without a matrix instruction, all written in kernels/: the per-token
row kernels (embedding, rmsnorm, rms_scale, gated_rmsnorm, moe_combine, moe_router; kernels/rows.py,
kernels/moe.py, kernels/mamba.py), the KV-cache append (kernels/attention.py) and the Mamba decode pieces
(conv_silu, ssd_step; kernels/mamba.py).

A kernel of kernels/ is one wave (warp) per program, a tile of `block` = W elements one per lane (a row
kernel strides over the row's features and reduces with lane shuffles; conv_silu is a channel per lane; ssd_step
a wave per head reducing each state row with shuffles). Tiles they load live in registers; conv_silu and the
router allocate LDS / shared memory (conv_silu's staged taps and carried inputs, (2 K - 1) W floats, read
once: a lane walks every row of its channel in one chunk, its taps and window in registers; the router's
scores and choices, 2 (E + W) floats, and a few per group and per pick).

Tiles: `threads` (workgroup size: one wave of 64 on CDNA, one warp of 32 on Hopper) and `block`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy


def _row_block(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """A kernel written in kernels/rows.py: one wave per row, a feature per lane per step."""
    return TileChoice({"threads": arch.wave_size, "block": arch.wave_size})


def _conv_silu(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """kernels/mamba.py's conv_silu: a wave per panel of W channels, a channel per lane walking the call's
    tokens (its taps and carried inputs staged in the workgroup's LDS / shared memory); the grid counts
    panels."""
    channels = int(dims["channels"])
    tiles = {"threads": arch.wave_size, "block": arch.wave_size, "panel": arch.wave_size}
    return TileChoice(tiles, grid=-(-channels // arch.wave_size), parallel="channel_panels")


POLICIES: dict[str, GpuPolicy] = {
    "embedding": _row_block,
    "rmsnorm": _row_block,
    "rms_scale": _row_block,
    "gated_rmsnorm": _row_block,
    "moe_router": _row_block,
    "moe_combine": _row_block,
    "kv_append": _row_block,
    "conv_silu": _conv_silu,
    "ssd_step": _row_block,
}
