"""What a tiling policy returns for one kernel: its tile sizes and (optionally) a new grid, the parallel
dimension, a range of the grid per call, a block of tokens per program. Every target's policies
(tiling/x86.py, tiling/gpu*.py) build these; tessera-tile-choose-tiles writes them into Tile-IR and builds the
kernel of kernels/ from the tiles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TileChoice:
    tiles: dict[str, int]
    grid: int | None = None  # a new grid (e.g. GEMM panels instead of columns); None keeps it
    parallel: str | None = None
    # The kernel's body runs a range [first, end) of the grid per call (tessera.tile.kernel's `ranged`).
    ranged: bool = False
    # Tokens per program along a second grid dimension over the call's tokens (tessera.tile.kernel's
    # `token_block`; the body takes that dimension's program id too).
    token_block: int | None = None
