"""Same-level transforms, one pass per file; `ALL_PASSES` is what tessera-opt registers."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _annotate_costs() -> type[ModulePass]:
    from tessera.passes.graph_annotate_costs import GraphAnnotateCostsPass

    return GraphAnnotateCostsPass


def _graph_to_schedule() -> type[ModulePass]:
    from tessera.lowering.convert_graph_to_schedule import ConvertTesseraGraphToSchedulePass

    return ConvertTesseraGraphToSchedulePass


def _plan_buffers() -> type[ModulePass]:
    from tessera.passes.schedule_plan_buffers import SchedulePlanBuffersPass

    return SchedulePlanBuffersPass


def _schedule_to_tile() -> type[ModulePass]:
    from tessera.lowering.convert_schedule_to_tile import ConvertTesseraScheduleToTilePass

    return ConvertTesseraScheduleToTilePass


def _choose_tiles() -> type[ModulePass]:
    from tessera.passes.tile_choose_tiles import TileChooseTilesPass

    return TileChooseTilesPass


def _compute_footprint() -> type[ModulePass]:
    from tessera.passes.tile_compute_footprint import TileComputeFootprintPass

    return TileComputeFootprintPass


def _tile_to_x86() -> type[ModulePass]:
    from tessera.lowering.tile_to_x86 import ConvertTileToX86Pass

    return ConvertTileToX86Pass


def _tile_to_simt() -> type[ModulePass]:
    from tessera.lowering.tile_to_simt import ConvertTileToSimtPass

    return ConvertTileToSimtPass


def _expand_math() -> type[ModulePass]:
    from tessera.lowering.expand_math import ExpandMathPass

    return ExpandMathPass


# Same-level passes live here; conversions between levels live in lowering/ and are registered here too,
# so that every pass of every target pipeline runs alone under tessera-opt.
ALL_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "tessera-graph-annotate-costs": _annotate_costs,
    "convert-tessera-graph-to-schedule": _graph_to_schedule,
    "tessera-schedule-plan-buffers": _plan_buffers,
    "convert-tessera-schedule-to-tile": _schedule_to_tile,
    "tessera-tile-choose-tiles": _choose_tiles,
    "tessera-tile-compute-footprint": _compute_footprint,
    "convert-tessera-tile-to-x86": _tile_to_x86,
    "convert-tessera-tile-to-simt": _tile_to_simt,
    "tessera-expand-math": _expand_math,
}
