"""Same-level transforms, one pass per file; `ALL_PASSES` is what tessera-opt registers."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _annotate_costs() -> type[ModulePass]:
    from tessera.passes.graph_annotate_costs import GraphAnnotateCostsPass

    return GraphAnnotateCostsPass


ALL_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "tessera-graph-annotate-costs": _annotate_costs,
}
