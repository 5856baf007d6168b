"""GPU tiling policies of the SIMT kernels without a matrix instruction, all written in kernels/: the per-token
row kernels (embedding, rmsnorm, rms_scale, gated_rmsnorm, moe_combine, moe_router; kernels/rows.py,
kernels/moe.py, kernels/mamba.py), the KV-cache append (kernels/attention.py) and the Mamba pieces
(conv_silu, ssd_step; kernels/mamba.py).

A kernel of kernels/ is one wave (warp) per program, a tile of `block` = W elements one per lane (a row
kernel strides over the row's features and reduces with lane shuffles; conv_silu 4 channels per lane over a
block of rows; ssd_step a wave per head reducing each state row with shuffles). Tiles they load live in
registers; the router allocates LDS / shared memory (its scores and choices, 2 (E + W) floats, and a few per
group and per pick).

Tiles: `threads` (workgroup size: one wave of 64 on CDNA, one warp of 32 on Hopper), `block` and conv_silu's
`rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy


def _row_block(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """A kernel that reduces or gathers along a row with its wave's lanes (the router, moe_combine, ssd_step):
    one wave per row, a feature per lane per step."""
    return TileChoice({"threads": arch.wave_size, "block": arch.wave_size})


# Float32 features per lane per step of a streamed row: one 16-byte vector access each (where the row's
# accesses are aligned runs: lowering/simt_lanes.choose_row_runs), and four loads in flight per lane.
ROW_FEATURES_PER_LANE = 4


def _streamed_rows(row: Callable[[Mapping[str, Any]], int]) -> GpuPolicy:
    """A kernel that streams its rows (kernels/rows.py, gated_rmsnorm, kv_append): one wave per row, tiles of
    ROW_FEATURES_PER_LANE features a lane — fewer (a power of two, a whole wave at least) where the row
    (`row(dims)` features) is shorter, so that no lane idles past it."""

    def policy(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
        per_lane = ROW_FEATURES_PER_LANE
        while per_lane > 1 and row(dims) < per_lane * arch.wave_size:
            per_lane //= 2
        return TileChoice({"threads": arch.wave_size, "block": per_lane * arch.wave_size})

    return policy


# conv_silu's channels a program (per lane of its wave: independent loads in flight each row) and rows per
# token block (a block reads K - 1 rows of window besides: 5% more at K = 4).
CONV_CHANNELS_PER_LANE = 4
CONV_ROWS = 64


def _conv_silu(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """kernels/mamba.py's conv_silu over token blocks (conv_silu_token_blocks): a wave per CONV_CHANNELS_PER_LANE
    W channels and block of CONV_ROWS tokens, each lane its channels' taps and window in registers — the grid
    channel blocks by token blocks, so that a prefill's rows stream through every SM at once (the 12B at 8K
    tokens: 96 x 128 programs)."""
    channels, taps = int(dims["channels"]), int(dims["conv_kernel"])
    block = CONV_CHANNELS_PER_LANE * arch.wave_size
    tiles = {"threads": arch.wave_size, "block": block, "rows": max(CONV_ROWS, taps - 1)}
    return TileChoice(tiles, grid=-(-channels // block), parallel="channel_panels", token_block=tiles["rows"])


POLICIES: dict[str, GpuPolicy] = {
    "embedding": _streamed_rows(lambda dims: int(dims["hidden"])),
    "rmsnorm": _streamed_rows(lambda dims: int(dims["hidden"])),
    "rms_scale": _streamed_rows(lambda dims: int(dims["hidden"])),
    "gated_rmsnorm": _streamed_rows(
        lambda dims: int(dims["num_heads"]) * int(dims["head_dim"]) // int(dims["n_groups"])
    ),
    "kv_append": _streamed_rows(lambda dims: int(dims["head_dim"])),
    "draw_weights": _streamed_rows(lambda dims: int(dims["cols"])),
    "moe_router": _row_block,
    "moe_combine": _row_block,
    "conv_silu": _conv_silu,
    "ssd_step": _row_block,
}
