"""Interpreters of Tessera's IR levels on xDSL's interpreter framework: tile.py runs the body of a dataflow
Tile-IR kernel on numpy buffers (the reference executor of Graph-IR lives in reference/executor.py)."""

from tessera.interpreters.elements import TileInterpreterError
from tessera.interpreters.tile import run_kernel

__all__ = ["TileInterpreterError", "run_kernel"]
