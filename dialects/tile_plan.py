"""The planned tile steps of a kernel not yet written as dataflow Tile-IR: un-connected records of what one
worker loads into which memory space, multiplies, reduces and stores, read only by the footprint pass and
the GPU lowerings' LDS planning. A kernel written in kernels/ has a dataflow body instead (dialects/tile.py);
these go away with the last hand-written emitter.

```mlir
tessera.tile.plan_load "weight" [64, 32] f32 {space = "cache"}
tessera.tile.plan_mma m = 6 n = 32 k = 64 (f32, f32) -> f32
tessera.tile.plan_store "y" [6, 32] f32 {space = "global"}
```
"""

from __future__ import annotations

from xdsl.dialects.builtin import I64, DenseArrayBase, IntegerAttr, StringAttr, UnitAttr, i64
from xdsl.ir import Attribute, TypeAttribute
from xdsl.irdl import IRDLOperation, ParsePropInAttrDict, irdl_op_definition, opt_prop_def, prop_def
from xdsl.utils.exceptions import VerifyException

from tessera.dialects.schedule import element_bytes

MEMORY_SPACES = ("global", "cache", "shared", "lds", "registers")


def _int(attr: Attribute) -> int:
    assert isinstance(attr, IntegerAttr)
    return int(attr.value.data)


class _Transfer(IRDLOperation):
    operand = prop_def(StringAttr)
    shape = prop_def(DenseArrayBase.constr(i64))
    element = prop_def(TypeAttribute)
    space = prop_def(StringAttr)
    # Elements after each row in `space` (a padded, bank-conflict-free shared-memory / LDS layout).
    pad = opt_prop_def(IntegerAttr[I64])
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$operand $shape $element attr-dict"

    def verify_(self) -> None:
        if self.space.data not in MEMORY_SPACES:
            raise VerifyException(f"{self.name} '{self.operand.data}': space must be one of {MEMORY_SPACES}")
        if any(d <= 0 for d in self.shape.get_values()):
            raise VerifyException(f"{self.name} '{self.operand.data}': tile dimensions must be positive")
        if self.pad is not None and _int(self.pad) < 0:
            raise VerifyException(f"{self.name} '{self.operand.data}': pad must be >= 0")

    def tile_bytes(self) -> int:
        """Bytes the tile occupies in its space, row padding included."""
        *outer, row = (int(dim) for dim in self.shape.get_values())
        count = row + (0 if self.pad is None else _int(self.pad))
        for dim in outer:
            count *= dim
        return count * element_bytes(self.element)


@irdl_op_definition
class PlanLoadOp(_Transfer):
    """A tile of an operand brought into `space`; `async` marks a prefetch overlapped with compute."""

    name = "tessera.tile.plan_load"
    is_async = opt_prop_def(UnitAttr, prop_name="async")


@irdl_op_definition
class PlanStoreOp(_Transfer):
    """A tile of a result written from registers to `space` (usually global)."""

    name = "tessera.tile.plan_store"


@irdl_op_definition
class PlanMmaOp(IRDLOperation):
    """A matrix multiply-accumulate on tiles: acc[m, n] += lhs[m, k] * rhs[k, n]."""

    name = "tessera.tile.plan_mma"
    m = prop_def(IntegerAttr[I64])
    n = prop_def(IntegerAttr[I64])
    k = prop_def(IntegerAttr[I64])
    lhs = prop_def(TypeAttribute)
    rhs = prop_def(TypeAttribute)
    acc = prop_def(TypeAttribute)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "`m` `=` $m `n` `=` $n `k` `=` $k `(` $lhs `,` $rhs `)` `->` $acc attr-dict"

    def accumulator_bytes(self) -> int:
        return _int(self.m) * _int(self.n) * element_bytes(self.acc)


@irdl_op_definition
class PlanElementwiseOp(IRDLOperation):
    """An elementwise function over the current tile (silu, softplus, relu2, exp, scale, ...)."""

    name = "tessera.tile.plan_elementwise"
    fn = prop_def(StringAttr)
    assembly_format = "$fn attr-dict"


class _AlongAxis(IRDLOperation):
    fn = prop_def(StringAttr)
    axis = prop_def(IntegerAttr[I64])
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$fn attr-dict"


@irdl_op_definition
class PlanReduceOp(_AlongAxis):
    """A reduction of the current tile along `axis` (sum of squares for a norm, max/sum for softmax)."""

    name = "tessera.tile.plan_reduce"


@irdl_op_definition
class PlanScanOp(_AlongAxis):
    """A prefix scan along `axis` (the cumulative log-decay of a Mamba chunk; the recurrence across chunks)."""

    name = "tessera.tile.plan_scan"


PLAN_OPS = [PlanLoadOp, PlanStoreOp, PlanMmaOp, PlanElementwiseOp, PlanReduceOp, PlanScanOp]
