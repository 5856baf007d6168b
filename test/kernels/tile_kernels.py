"""One kernel of a kind, built through the compiler's own path (Tile-IR kernel, tessera-tile-choose-tiles
and tessera-tile-compute-footprint for a target), for the kernel tests of every target."""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, ModuleOp, StringAttr, f64, i64
from xdsl.ir import Block, Region

from tessera.dialects import tile
from tessera.lowering.convert_schedule_to_tile import GRID_DIMS
from tessera.passes.tile_choose_tiles import choose_tiles
from tessera.passes.tile_compute_footprint import compute_footprints


def _attribute(value: int | float | str) -> IntegerAttr | FloatAttr | StringAttr:
    if isinstance(value, str):
        return StringAttr(value)
    if isinstance(value, float):
        return FloatAttr(value, f64)
    return IntegerAttr(value, i64)


def tile_kernel(kind: str, dims: Mapping[str, int | float | str], target: str, precision: str = "fp32",
                name: str | None = None, grid: int | None = None) -> tile.KernelOp:  # fmt: skip
    """The `tessera.tile.kernel` of `kind` with `dims`, tiled for `target` (named `name`, default the kind);
    its grid as convert-tessera-schedule-to-tile sets it (the extent of the kind's grid dimension, 0 for one
    program per token) unless given."""
    if grid is None:
        grid_dim = GRID_DIMS[kind]
        grid = 0 if grid_dim is None or grid_dim not in dims else int(dims[grid_dim])
    kernel = tile.KernelOp(
        properties={
            "sym_name": StringAttr(name or kind),
            "kind": StringAttr(kind),
            "dims": DictionaryAttr({key: _attribute(value) for key, value in dims.items()}),
            "parallel": StringAttr("tokens"),
            "grid": IntegerAttr(grid, i64),
        },
        regions=[Region(Block())],
    )
    module = ModuleOp([kernel])
    choose_tiles(module, target, precision)
    compute_footprints(module)
    kernel.detach()
    return kernel
