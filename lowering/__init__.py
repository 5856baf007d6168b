"""Conversions between levels (Graph-IR -> Schedule-IR -> Tile-IR -> upstream MLIR per target) and the
target-level rewrites after them; `CONVERSIONS` registers them with tessera-opt beside passes/`PASSES`, so
that every pass of every target pipeline runs alone."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _graph_to_schedule() -> type[ModulePass]:
    from tessera.lowering.convert_graph_to_schedule import ConvertTesseraGraphToSchedulePass

    return ConvertTesseraGraphToSchedulePass


def _schedule_to_tile() -> type[ModulePass]:
    from tessera.lowering.convert_schedule_to_tile import ConvertTesseraScheduleToTilePass

    return ConvertTesseraScheduleToTilePass


def _tile_to_x86() -> type[ModulePass]:
    from tessera.lowering.tile_to_x86 import ConvertTileToX86Pass

    return ConvertTileToX86Pass


def _tile_to_simt() -> type[ModulePass]:
    from tessera.lowering.tile_to_simt import ConvertTileToSimtPass

    return ConvertTileToSimtPass


def _expand_math() -> type[ModulePass]:
    from tessera.lowering.expand_math import ExpandMathPass

    return ExpandMathPass


CONVERSIONS: dict[str, Callable[[], type[ModulePass]]] = {
    "convert-tessera-graph-to-schedule": _graph_to_schedule,
    "convert-tessera-schedule-to-tile": _schedule_to_tile,
    "convert-tessera-tile-to-x86": _tile_to_x86,
    "convert-tessera-tile-to-simt": _tile_to_simt,
    "tessera-expand-math": _expand_math,
}
