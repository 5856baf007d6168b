"""The shape every target backend has (after Triton's backends): a name and an ordered list of stages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from xdsl.dialects.builtin import ModuleOp

from tessera.frontend.config import ModelSpec


class Backend(Protocol):
    name: str
    # Stage names in order; `tessera-compile --emit=<stage>` stops after one. "graph" is always first.
    stages: tuple[str, ...]
    # Where the backend reports what it is doing (tessera-compile prints it unless -q).
    progress: Callable[[str], None]

    def check(self, spec: ModelSpec) -> None:
        """Refuse, before any work, a model or option this target cannot build (one-line TesseraError)."""
        ...

    def lower(self, graph: ModuleOp, spec: ModelSpec, until: str, dump_dir: Path | None) -> dict[str, str]:
        """The IR text of every stage after graph, up to `until` (one of `stages`), by stage name;
        each is also written to dump_dir when one is given."""
        ...

    def compile(self, graph: ModuleOp, spec: ModelSpec, out_dir: Path, dump_dir: Path | None) -> dict[str, Any]:
        """Lower `graph` and write this target's files under out_dir/<name>/.

        Returns the target's entry for the artifact manifest (which files, launch metadata, ...).
        """
        ...
