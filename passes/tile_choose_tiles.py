"""tessera-tile-choose-tiles: pick each kernel's tile sizes for a target and write its tile-level body.

Options: target (x86; sm_90a and gfx942 come with their lowerings), precision (fp32 | bf16: the element
type of weights the matrix tiles read).
Writes on every `tessera.tile.kernel`: `target`, `tiles`, the body of tile ops, and — for kernels whose
parallel unit is a tile (GEMM panels) — `parallel` and `grid`. Later passes and the lowering read these
and never re-derive them (IREE's "choose, then lower").
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import (
    DenseArrayBase,
    DictionaryAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    UnitAttr,
    bf16,
    f32,
    i64,
)
from xdsl.ir import Attribute, Operation
from xdsl.passes import ModulePass

from tessera.dialects import tile
from tessera.dialects.tile import plain_dict
from tessera.errors import TesseraError

TARGETS = ("x86",)
PRECISIONS = ("fp32", "bf16")
_ELEMENTS: dict[str, Attribute] = {"f32": f32, "bf16": bf16}


def _attr(value: object) -> Attribute:
    if isinstance(value, bool):
        return UnitAttr() if value else IntegerAttr(0, i64)
    if isinstance(value, int):
        return IntegerAttr(value, i64)
    if isinstance(value, list):
        return DenseArrayBase.from_list(i64, value)
    assert isinstance(value, str)
    return StringAttr(value)


def _tile_op(kind: str, props: dict[str, object]) -> Operation:
    ops: dict[str, type[Operation]] = {
        "load": tile.LoadOp,
        "store": tile.StoreOp,
        "mma": tile.MmaOp,
        "elementwise": tile.ElementwiseOp,
        "reduce": tile.ReduceOp,
        "scan": tile.ScanOp,
    }
    converted: dict[str, Attribute] = {}
    for key, value in props.items():
        if key in ("element", "lhs", "rhs", "acc"):
            converted[key] = _ELEMENTS[str(value)]
        else:
            converted[key] = _attr(value)
    return ops[kind](properties=converted)


def choose_tiles(module: ModuleOp, target: str = "x86", precision: str = "fp32") -> None:
    if target not in TARGETS:
        raise TesseraError(
            f"tessera-tile-choose-tiles: target '{target}' has no tiling policy (known: {', '.join(TARGETS)})"
        )
    if precision not in PRECISIONS:
        raise TesseraError(f"tessera-tile-choose-tiles: precision must be fp32 or bf16, got '{precision}'")
    from tessera.lowering.x86.tiling import POLICIES

    for kernel in [op for op in module.ops if isinstance(op, tile.KernelOp)]:
        policy = POLICIES.get(kernel.kind.data)
        if policy is None:
            raise TesseraError(
                f"{kernel.name} @{kernel.sym_name.data}: kind '{kernel.kind.data}' has no {target} tiling"
            )
        choice = policy(dict(plain_dict(kernel.dims)), precision)
        kernel.properties["target"] = StringAttr(target)
        kernel.properties["tiles"] = DictionaryAttr({k: IntegerAttr(v, i64) for k, v in choice.tiles.items()})
        if choice.grid is not None:
            kernel.properties["grid"] = IntegerAttr(choice.grid, i64)
        if choice.parallel is not None:
            kernel.properties["parallel"] = StringAttr(choice.parallel)
        block = kernel.body.block
        for old in list(block.ops):
            old.detach()
            old.erase()
        for kind, props in choice.body:
            block.add_op(_tile_op(kind, props))


@dataclass(frozen=True)
class TileChooseTilesPass(ModulePass):
    name = "tessera-tile-choose-tiles"

    target: str = "x86"
    precision: str = "fp32"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        choose_tiles(op, self.target, self.precision)
