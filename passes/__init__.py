"""Same-level transforms, one pass per file; `PASSES` registers them with tessera-opt (the conversions
between levels are lowering/'s `CONVERSIONS`). A pass here reads and rewrites one level and imports no
lowering."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _annotate_costs() -> type[ModulePass]:
    from tessera.passes.graph_annotate_costs import GraphAnnotateCostsPass

    return GraphAnnotateCostsPass


def _plan_buffers() -> type[ModulePass]:
    from tessera.passes.schedule_plan_buffers import SchedulePlanBuffersPass

    return SchedulePlanBuffersPass


def _choose_tiles() -> type[ModulePass]:
    from tessera.passes.tile_choose_tiles import TileChooseTilesPass

    return TileChooseTilesPass


def _compute_footprint() -> type[ModulePass]:
    from tessera.passes.tile_compute_footprint import TileComputeFootprintPass

    return TileComputeFootprintPass


PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "tessera-graph-annotate-costs": _annotate_costs,
    "tessera-schedule-plan-buffers": _plan_buffers,
    "tessera-tile-choose-tiles": _choose_tiles,
    "tessera-tile-compute-footprint": _compute_footprint,
}
