"""tessera-tile-compute-footprint: each kernel's fast-memory bytes per worker, from its tile-level body.

footprint = bytes of every tile loaded into a fast space (cache, shared, lds, registers)
          + bytes of every matrix-multiply accumulator (kept in registers / fast memory).
Written as `footprint` on every `tessera.tile.kernel`; the kernel verifier then checks it against the
target's limit (dialects/tile.py FAST_MEMORY_LIMITS), so an over-sized tile choice fails here, with the
kernel named, rather than as a slow or failing kernel later. Options: none.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i64
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import VerifyException

from tessera.dialects import tile
from tessera.errors import TesseraError

FAST_SPACES = ("cache", "shared", "lds", "registers")


def kernel_footprint(kernel: tile.KernelOp) -> int:
    total = 0
    for op in kernel.body.block.ops:
        if isinstance(op, tile.LoadOp) and op.space.data in FAST_SPACES:
            total += op.tile_bytes()
        elif isinstance(op, tile.MmaOp):
            total += op.accumulator_bytes()
    return total


def compute_footprints(module: ModuleOp) -> None:
    for kernel in [op for op in module.ops if isinstance(op, tile.KernelOp)]:
        if kernel.target is None:
            raise TesseraError(
                f"{kernel.name} @{kernel.sym_name.data}: no tiles chosen (run tessera-tile-choose-tiles first)"
            )
        kernel.properties["footprint"] = IntegerAttr(kernel_footprint(kernel), i64)
        try:
            kernel.verify()
        except VerifyException as exc:
            raise TesseraError(str(exc).splitlines()[0]) from None


@dataclass(frozen=True)
class TileComputeFootprintPass(ModulePass):
    name = "tessera-tile-compute-footprint"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        compute_footprints(op)
