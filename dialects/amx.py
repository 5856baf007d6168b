"""The subset of MLIR 22's `amx` dialect that Tessera emits (xDSL 0.74 has none), mirrored with MLIR's names,
operands and properties so that the x86 lowering builds it as typed IR and prints it once, in generic form.

    TileType      an AMX tile register: R <= 16 rows of at most 64 bytes (bf16 inputs, f32 accumulators)
    TileZeroOp    tilezero: a tile of zeros
    TileLoadOp    tileloadd: R rows of a memref from [indices], rows along its second-last dimension
    TileMulFOp    tdpbf16ps: acc[M, N] += a[M, K] times b, b given as k pairs (VNNI): a [K/2, 2N] tile
    TileStoreOp   tilestored: the tile's rows into a memref at [indices]

LLVM's X86 back end configures the tiles (ldtilecfg) from the shapes; lowering/x86/pipeline.py's
AMX_LLVM_PIPELINE converts these ops (convert-vector-to-llvm{enable-amx}, convert-to-llvm for the tile type).
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import BFloat16Type, Float32Type, IndexType, IntAttr, MemRefType
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    result_def,
    var_operand_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

ROWS = 16  # the most rows a tile register holds
ROW_BYTES = 64  # the most bytes of one of its rows


@irdl_attr_definition
class TileType(ParametrizedAttribute, TypeAttribute):
    """An AMX tile (printed as MLIR's, e.g. 16x32 of bf16): rows x columns of bf16 (an input) or f32 (an
    accumulator)."""

    name = "amx.tile"
    rows: IntAttr
    columns: IntAttr
    element_type: Attribute

    def __init__(self, rows: int, columns: int, element_type: Attribute) -> None:
        super().__init__(IntAttr(rows), IntAttr(columns), element_type)

    def get_shape(self) -> tuple[int, int]:
        return (self.rows.data, self.columns.data)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.rows.data}x{self.columns.data}x")
        printer.print_attribute(self.element_type)
        printer.print_string(">")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            (rows, columns), element = parser.parse_ranked_shape()
        return [IntAttr(rows), IntAttr(columns), element]

    def verify(self) -> None:
        rows, columns = self.get_shape()
        if not isinstance(self.element_type, BFloat16Type | Float32Type):
            raise VerifyException(f"{self.name}: tiles hold bf16 or f32, got {self.element_type}")
        width = 2 if isinstance(self.element_type, BFloat16Type) else 4
        if not 0 < rows <= ROWS or not 0 < columns * width <= ROW_BYTES:
            raise VerifyException(f"{self.name}: at most {ROWS} rows of {ROW_BYTES} bytes, got {rows}x{columns}")


def _verify_access(op: IRDLOperation, base: SSAValue, indices: Sequence[SSAValue], tile: Attribute) -> None:
    memref = base.type
    assert isinstance(memref, MemRefType) and isinstance(tile, TileType)
    if len(indices) != len(memref.get_shape()) or len(indices) < 2:
        raise VerifyException(f"{op.name}: {len(indices)} indices into a {memref} (rank >= 2, one index per axis)")
    if memref.element_type != tile.element_type:
        raise VerifyException(f"{op.name}: a {tile} in a {memref}")


@irdl_op_definition
class TileZeroOp(IRDLOperation):
    name = "amx.tile_zero"
    res = result_def(TileType)

    def __init__(self, type_: TileType) -> None:
        super().__init__(result_types=[type_])


@irdl_op_definition
class TileLoadOp(IRDLOperation):
    name = "amx.tile_load"
    base = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    stride = opt_operand_def(IndexType)
    res = result_def(TileType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(self, base: SSAValue, indices: Sequence[SSAValue], type_: TileType) -> None:
        super().__init__(operands=[base, list(indices), []], result_types=[type_])

    def verify_(self) -> None:
        _verify_access(self, self.base, self.indices, self.res.type)


@irdl_op_definition
class TileMulFOp(IRDLOperation):
    name = "amx.tile_mulf"
    lhs = operand_def(TileType)
    rhs = operand_def(TileType)
    acc = operand_def(TileType)
    res = result_def(TileType)

    def __init__(self, lhs: SSAValue, rhs: SSAValue, acc: SSAValue) -> None:
        super().__init__(operands=[lhs, rhs, acc], result_types=[acc.type])

    def verify_(self) -> None:
        lhs, rhs, acc = (value.type for value in (self.lhs, self.rhs, self.acc))
        assert isinstance(lhs, TileType) and isinstance(rhs, TileType) and isinstance(acc, TileType)
        (m, k), (pairs, n2), (m2, n) = lhs.get_shape(), rhs.get_shape(), acc.get_shape()
        bf16_inputs = isinstance(lhs.element_type, BFloat16Type) and isinstance(rhs.element_type, BFloat16Type)
        if not bf16_inputs or not isinstance(acc.element_type, Float32Type):
            raise VerifyException(f"{self.name}: bf16 inputs and an f32 accumulator, got {lhs}, {rhs}, {acc}")
        if m != m2 or k != 2 * pairs or n2 != 2 * n or self.res.type != acc:
            raise VerifyException(f"{self.name}: {m}x{k} times k pairs {pairs}x{n2} does not accumulate into {acc}")


@irdl_op_definition
class TileStoreOp(IRDLOperation):
    name = "amx.tile_store"
    base = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    val = operand_def(TileType)
    stride = opt_operand_def(IndexType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(self, base: SSAValue, indices: Sequence[SSAValue], value: SSAValue) -> None:
        super().__init__(operands=[base, list(indices), value, []])

    def verify_(self) -> None:
        _verify_access(self, self.base, self.indices, self.val.type)


# Built by the x86 lowering and printed for MLIR 22; not parsed back by tessera-opt.
Amx = Dialect("amx", [TileZeroOp, TileLoadOp, TileMulFOp, TileStoreOp], [TileType])
