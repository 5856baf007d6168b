"""tessera.tile: Tile-IR — kernels with their iteration space, tile sizes, memory spaces and footprint.

Each Schedule-IR step becomes a `tessera.tile.launch` of a `tessera.tile.kernel`; identical steps (same
kind, dimensions and epilogue) launch the same kernel, so a 62-layer model compiles a few dozen kernels.
A kernel records:
    kind, dims       what it computes (the Schedule-IR step it came from) and its static dimensions
    parallel, grid   the dimension the runtime splits across threads / CTAs / workgroups, and its extent
    target, tiles    chosen once by `tessera-tile-choose-tiles{target=...}`; later passes only read them
    body             the tile-level steps: loads into a memory space (sync or async), matrix multiply-
                     accumulates with m/n/k and element types, elementwise ops, reductions and scans
    footprint        bytes of fast memory (cache / shared memory / LDS) per worker, computed from the body
                     by `tessera-tile-compute-footprint` and checked here against the target's limit

```mlir
tessera.tile.kernel @matmul_n200_k64_store {kind = "matmul", dims = {n = 200 : i64, k = 64 : i64, ...},
    parallel = "panels", grid = 7 : i64, target = "x86", tiles = {mr = 6 : i64, nr = 32 : i64, kc = 64 : i64},
    footprint = 9216 : i64} {
  tessera.tile.load "weight" [64, 32] f32 {space = "cache"}
  tessera.tile.mma m = 6 n = 32 k = 64 (f32, f32) -> f32
  tessera.tile.store "y" [6, 32] f32 {space = "global"}
}
```
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, Dialect, TypeAttribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import IsolatedFromAbove, NoTerminator, SymbolOpInterface
from xdsl.utils.exceptions import VerifyException

from tessera.dialects.schedule import element_bytes

# Fast memory per worker that a kernel's footprint must fit (bytes): an x86 core's L2 (a conservative
# 1 MiB), Hopper's opt-in shared memory per block (227 KiB), CDNA's LDS per workgroup (64 KiB).
FAST_MEMORY_LIMITS = {"x86": 1 << 20, "sm_90a": 227 * 1024, "gfx942": 64 * 1024, "gfx90a": 64 * 1024}
# Targets whose fast memory is a scratchpad the kernel allocates (shared memory, LDS) beside a register file:
# their footprint is the scratchpad bytes alone, the number a kernel descriptor reports. On a CPU the
# cache holds tiles and accumulators alike.
SCRATCHPAD_TARGETS = ("sm_90a", "gfx942", "gfx90a")
MEMORY_SPACES = ("global", "cache", "shared", "lds", "registers")


def _int(attr: Attribute) -> int:
    assert isinstance(attr, IntegerAttr)
    return int(attr.value.data)


def plain_dict(attr: DictionaryAttr) -> dict[str, int | float | str]:
    """A dictionary attribute of integers, floats and strings (kernel dims, tiles) as Python values."""
    plain: dict[str, int | float | str] = {}
    for key, value in attr.data.items():
        if isinstance(value, IntegerAttr):
            plain[key] = int(value.value.data)
        elif isinstance(value, FloatAttr):
            plain[key] = float(value.value.data)
        elif isinstance(value, StringAttr):
            plain[key] = value.data
    return plain


@irdl_op_definition
class KernelOp(IRDLOperation):
    name = "tessera.tile.kernel"
    sym_name = prop_def(SymbolNameConstraint())
    kind = prop_def(StringAttr)
    dims = prop_def(DictionaryAttr)
    parallel = prop_def(StringAttr)
    grid = prop_def(IntegerAttr[I64])
    target = opt_prop_def(StringAttr)
    tiles = opt_prop_def(DictionaryAttr)
    footprint = opt_prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), IsolatedFromAbove(), NoTerminator())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name attr-dict-with-keyword $body"

    def verify_(self) -> None:
        where = f"{self.name} @{self.sym_name.data}"
        if _int(self.grid) < 0:
            raise VerifyException(f"{where}: grid must be >= 0 (0: the call's token count), got {_int(self.grid)}")
        if self.footprint is None or self.target is None:
            return
        limit = FAST_MEMORY_LIMITS.get(self.target.data)
        if limit is None:
            raise VerifyException(
                f"{where}: unknown target '{self.target.data}' (known: {', '.join(FAST_MEMORY_LIMITS)})"
            )
        if _int(self.footprint) > limit:
            raise VerifyException(
                f"{where}: footprint {_int(self.footprint)} bytes exceeds the {self.target.data} limit of {limit} bytes"
            )


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
class LoadOp(_Transfer):
    """A tile of an operand brought into `space`; `async` marks a prefetch overlapped with compute."""

    name = "tessera.tile.load"
    is_async = opt_prop_def(UnitAttr, prop_name="async")


@irdl_op_definition
class StoreOp(_Transfer):
    """A tile of a result written from registers to `space` (usually global)."""

    name = "tessera.tile.store"


@irdl_op_definition
class MmaOp(IRDLOperation):
    """A matrix multiply-accumulate on tiles: acc[m, n] += lhs[m, k] * rhs[k, n]."""

    name = "tessera.tile.mma"
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
class ElementwiseOp(IRDLOperation):
    """An elementwise function over the current tile (silu, softplus, relu2, exp, scale, ...)."""

    name = "tessera.tile.elementwise"
    fn = prop_def(StringAttr)
    assembly_format = "$fn attr-dict"


class _AlongAxis(IRDLOperation):
    fn = prop_def(StringAttr)
    axis = prop_def(IntegerAttr[I64])
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$fn attr-dict"


@irdl_op_definition
class ReduceOp(_AlongAxis):
    """A reduction of the current tile along `axis` (sum of squares for a norm, max/sum for softmax)."""

    name = "tessera.tile.reduce"


@irdl_op_definition
class ScanOp(_AlongAxis):
    """A prefix scan along `axis` (the cumulative log-decay of a Mamba chunk; the recurrence across chunks)."""

    name = "tessera.tile.scan"


@irdl_op_definition
class LaunchOp(IRDLOperation):
    """One call of a kernel in a program, over the Schedule-IR buffers it reads (`ins`) and writes (`outs`)."""

    name = "tessera.tile.launch"
    kernel = prop_def(SymbolRefAttr)
    ins = var_operand_def(MemRefType)
    outs = var_operand_def(MemRefType)
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = "$kernel `ins` `(` $ins `:` type($ins) `)` `outs` `(` $outs `:` type($outs) `)` attr-dict"


TesseraTile = Dialect(
    "tessera.tile",
    [KernelOp, LoadOp, StoreOp, MmaOp, ElementwiseOp, ReduceOp, ScanOp, LaunchOp],
)
