"""Upstream MLIR ops that xDSL 0.74 lacks, mirrored with MLIR 22's names, operands and properties so that
Tessera builds them as typed IR and prints them once, in generic form, for MLIR to read
(toolchain.to_upstream_text). Each is the subset Tessera emits, with its verifier.

    gpu.shuffle   a value of another lane of the wave (mode xor | down | up | idx), and whether it was valid
    vector.from_elements   a vector of scalars (a GPU lane's elements of a tile)
    AddrSpaceCastOp        a pointer into another address space (shared::cta to shared::cluster)
    arith.cmpf, arith.cmpi, arith.select on vectors (xDSL's give and take i1 only): an i1 per element, and
                  the choice it makes per element (built for vectors only; scalars use xDSL's own ops)
    #gpu.address_space<workgroup>, and gpu.func with workgroup attributions (xDSL's gpu.func takes exactly
                  its function arguments as entry-block arguments): the workgroup's shared memory / LDS
                  buffers, entry-block arguments after the function's, counted by `workgroup_attributions`
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import auto
from typing import Any, ClassVar

from xdsl.dialects import arith, gpu
from xdsl.dialects.arith import CMPF_COMPARISON_OPERATIONS, FastMathFlagsAttr
from xdsl.dialects.arith import CmpfOp as XdslCmpfOp
from xdsl.dialects.arith import CmpiOp as XdslCmpiOp
from xdsl.dialects.builtin import AnyFloat, IntegerAttr, IntegerType, MemRefType, VectorType, i1, i32, i64
from xdsl.dialects.llvm import LLVMPointerType
from xdsl.ir import Attribute, Dialect, EnumAttribute, Operation, SpacedOpaqueSyntaxAttribute, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    VarConstraint,
    base,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    var_operand_def,
)
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum


class ShuffleModeEnum(StrEnum):
    XOR = auto()
    DOWN = auto()
    UP = auto()
    IDX = auto()


@irdl_attr_definition
class ShuffleModeAttr(EnumAttribute[ShuffleModeEnum], SpacedOpaqueSyntaxAttribute):
    """`#gpu<shuffle_mode xor>`"""

    name = "gpu.shuffle_mode"


class AddressSpaceEnum(StrEnum):
    GLOBAL = auto()
    WORKGROUP = auto()
    PRIVATE = auto()


@irdl_attr_definition
class AddressSpaceAttr(EnumAttribute[AddressSpaceEnum]):
    """`#gpu.address_space<workgroup>`: a memref's memory on a GPU."""

    name = "gpu.address_space"

    def print_parameter(self, printer: Printer) -> None:
        printer.print_string(f"<{self.data}>")


WORKGROUP = AddressSpaceAttr(AddressSpaceEnum.WORKGROUP)


class WorkgroupFuncOp(gpu.FuncOp):
    """xDSL's gpu.func (its definition, a subclass only to replace the verifier), whose entry block may also
    take workgroup attributions: the last `workgroup_attributions` block arguments, memrefs in
    #gpu.address_space<workgroup>."""

    def attributions(self) -> int:
        count = self.attributes.get("workgroup_attributions")
        return 0 if count is None else int(count.value.data)  # type: ignore[attr-defined]

    def add_workgroup_buffer(self, type_: MemRefType) -> SSAValue:
        """A new workgroup attribution of `type_` (its memory space set to workgroup)."""
        shared = MemRefType(type_.element_type, type_.get_shape(), memory_space=WORKGROUP)
        argument = self.body.block.insert_arg(shared, len(self.body.block.args))
        self.attributes["workgroup_attributions"] = IntegerAttr(self.attributions() + 1, i64)
        return argument

    def verify_(self) -> None:
        self.get_irdl_definition().verify(self)
        args = self.body.block.arg_types
        inputs = self.function_type.inputs.data
        count = self.attributions()
        if tuple(args[: len(args) - count]) != tuple(inputs):
            raise VerifyException(f"{self.name}: the entry block's first arguments are the function's {inputs}")
        for type_ in args[len(args) - count :]:
            if not isinstance(type_, MemRefType) or type_.memory_space != WORKGROUP:
                raise VerifyException(f"{self.name}: a workgroup attribution is a workgroup memref, got {type_}")
        if self.kernel is not None and self.function_type.outputs.data:
            raise VerifyException(f"{self.name}: a kernel returns nothing")


@irdl_op_definition
class ShuffleOp(IRDLOperation):
    name = "gpu.shuffle"
    value = operand_def()
    offset = operand_def(i32)
    width = operand_def(i32)
    mode = prop_def(ShuffleModeAttr)
    shuffle_result = result_def()
    valid = result_def(i1)

    def __init__(self, value: SSAValue, offset: SSAValue, width: SSAValue, mode: str = "xor") -> None:
        super().__init__(
            operands=[value, offset, width],
            result_types=[value.type, i1],
            properties={"mode": ShuffleModeAttr(ShuffleModeEnum(mode))},
        )

    def verify_(self) -> None:
        type_: Attribute = self.value.type
        if self.shuffle_result.type != type_:
            raise VerifyException(f"{self.name}: result {self.shuffle_result.type} for a {type_} value")
        if isinstance(type_, IntegerType) and type_.width.data not in (32, 64):
            raise VerifyException(f"{self.name}: shuffles 32- or 64-bit values, got {type_}")


def _mask_of(type_: Attribute) -> VectorType:
    """vector<N x i1> for a vector<N x T>."""
    assert isinstance(type_, VectorType)
    return VectorType(i1, type_.get_shape())


# MLIR's arith.cmpi predicates, in the order of their integer values.
CMPI_PREDICATES = ("eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")


def _verify_comparison(op: IRDLOperation, elements: Any, kind: str, predicates: int) -> None:
    """A comparison of two vectors of `elements`: an i1 per element, a known predicate."""
    type_ = op.operands[0].type
    assert isinstance(type_, VectorType)
    if not isinstance(type_.element_type, elements):
        raise VerifyException(f"{op.name}: compares vectors of {kind}, got {type_}")
    if op.results[0].type != _mask_of(type_):
        raise VerifyException(
            f"{op.name}: the result of comparing {type_} is {_mask_of(type_)}, not {op.results[0].type}"
        )
    predicate = op.properties["predicate"]
    assert isinstance(predicate, IntegerAttr)
    if not 0 <= predicate.value.data < predicates:
        raise VerifyException(f"{op.name}: unknown predicate {predicate.value.data}")


@irdl_op_definition
class CmpfOp(IRDLOperation):
    """`arith.cmpf <predicate>, %a, %b : vector<N x f32>` -> vector<N x i1>."""

    name = "arith.cmpf"
    T: ClassVar = VarConstraint("T", base(VectorType))
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(VectorType)
    predicate = prop_def(IntegerAttr)
    fastmath = prop_def(FastMathFlagsAttr)

    print = XdslCmpfOp.print  # MLIR's custom form, as xDSL prints scalar comparisons

    def __init__(self, lhs: SSAValue, rhs: SSAValue, predicate: str) -> None:
        super().__init__(
            operands=[lhs, rhs],
            result_types=[_mask_of(lhs.type)],
            properties={
                "predicate": IntegerAttr(CMPF_COMPARISON_OPERATIONS.index(predicate), i64),
                "fastmath": FastMathFlagsAttr("none"),
            },
        )

    def verify_(self) -> None:
        _verify_comparison(self, AnyFloat, "floats", len(CMPF_COMPARISON_OPERATIONS))


@irdl_op_definition
class CmpiOp(IRDLOperation):
    """`arith.cmpi <predicate>, %a, %b : vector<N x i32>` -> vector<N x i1>."""

    name = "arith.cmpi"
    T: ClassVar = VarConstraint("T", base(VectorType))
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(VectorType)
    predicate = prop_def(IntegerAttr)

    print = XdslCmpiOp.print  # MLIR's custom form, as xDSL prints scalar comparisons

    def verify_(self) -> None:
        _verify_comparison(self, IntegerType, "integers", len(CMPI_PREDICATES))


@irdl_op_definition
class SelectOp(IRDLOperation):
    """`arith.select %mask, %a, %b : vector<N x i1>, vector<N x T>`: a's element where the mask is set, else b's."""

    name = "arith.select"
    T: ClassVar = VarConstraint("T", base(VectorType))
    condition = operand_def(VectorType)
    true_value = operand_def(T)
    false_value = operand_def(T)
    result = result_def(T)
    assembly_format = "$condition `,` $true_value `,` $false_value attr-dict `:` type($condition) `,` type($result)"

    def __init__(self, condition: SSAValue, true_value: SSAValue, false_value: SSAValue) -> None:
        super().__init__(operands=[condition, true_value, false_value], result_types=[true_value.type])

    def verify_(self) -> None:
        type_ = self.true_value.type
        if self.condition.type != _mask_of(type_):
            raise VerifyException(f"{self.name}: a {type_} is chosen by a {_mask_of(type_)}, not {self.condition.type}")


@irdl_op_definition
class ExtUIOp(IRDLOperation):
    """`arith.extui %v : vector<N x i16> to vector<N x i32>`: each element zero-extended."""

    name = arith.ExtUIOp.name  # xDSL's own op, whose operands are scalars only
    input = operand_def(VectorType)
    result = result_def(VectorType)

    def __init__(self, value: SSAValue, result_type: VectorType) -> None:
        super().__init__(operands=[value], result_types=[result_type])

    def verify_(self) -> None:
        source, target = self.input.type, self.result.type
        assert isinstance(source, VectorType) and isinstance(target, VectorType)
        elements = (source.element_type, target.element_type)
        if source.get_shape() != target.get_shape() or not all(isinstance(e, IntegerType) for e in elements):
            raise VerifyException(f"{self.name}: {source} to {target} is not one integer vector to another")
        if elements[1].width.data <= elements[0].width.data:  # type: ignore[attr-defined]
            raise VerifyException(f"{self.name}: {target} is not wider than {source}")


@irdl_op_definition
class FromElementsOp(IRDLOperation):
    """`%v = vector.from_elements %a, %b : vector<2xf32>`: a rank-1 vector of its scalar operands, in order."""

    name = "vector.from_elements"
    elements = var_operand_def()
    result = result_def(VectorType)

    def __init__(self, elements: Sequence[SSAValue]) -> None:
        assert elements, "a vector has at least one element"
        super().__init__(operands=[list(elements)], result_types=[VectorType(elements[0].type, [len(elements)])])

    def verify_(self) -> None:
        type_ = self.result.type
        assert isinstance(type_, VectorType)
        if len(type_.get_shape()) != 1 or type_.element_count() != len(self.elements):
            raise VerifyException(f"{self.name}: {len(self.elements)} elements do not make a {type_}")
        if any(element.type != type_.element_type for element in self.elements):
            raise VerifyException(f"{self.name}: every element of a {type_} is a {type_.element_type}")


@irdl_op_definition
class AddrSpaceCastOp(IRDLOperation):
    """A pointer as the same bytes' pointer in another address space (a CTA's shared memory as the cluster's
    shared window, where an async copy writes)."""

    name = "llvm.addrspacecast"
    arg = operand_def(LLVMPointerType)
    res = result_def(LLVMPointerType)

    def __init__(self, pointer: SSAValue, result_type: LLVMPointerType) -> None:
        super().__init__(operands=[pointer], result_types=[result_type])

    def verify_(self) -> None:
        if self.arg.type == self.res.type:
            raise VerifyException(f"{self.name}: casts between two address spaces, got {self.arg.type} twice")


# Not registered with tessera-opt's context, where xDSL's own gpu and arith dialects hold the namespaces: these
# ops are built by the lowerings and printed, never parsed back by xDSL.
UpstreamGpu = Dialect("gpu", [ShuffleOp], [ShuffleModeAttr, AddressSpaceAttr])
UpstreamArith = Dialect("arith", [CmpfOp, CmpiOp, ExtUIOp, SelectOp])
UpstreamVector = Dialect("vector", [FromElementsOp])
UpstreamLlvm = Dialect("llvm", [AddrSpaceCastOp])
# The element ops of a tile map whose vector forms are the mirrors above (tile_elements.LowerMap).
VECTOR_FORMS: dict[type[Operation], type[IRDLOperation]] = {
    arith.CmpfOp: CmpfOp,
    arith.CmpiOp: CmpiOp,
    arith.SelectOp: SelectOp,
}


@dataclass(eq=False, repr=False)
class _GenericPrinter(Printer):
    """xDSL's printer in generic form, faster where a lowered kernel spends its printing time: text without a
    newline goes straight to the stream (not through print()), and each distinct attribute (types above all:
    i32, index, the global-memory pointer type on every op) is rendered once. Equal attributes print alike, so
    the text is the same byte for byte (test_upstream_text_is_xdsls_generic_print); 0.47 -> 0.27 s for Nano-12B's NVVM kernels."""

    _attribute_texts: dict[Attribute, str] = field(default_factory=dict)

    def print_string(self, text: str, *, indent: int | None = None) -> None:
        if "\n" in text:
            super().print_string(text, indent=indent)
            return
        self._current_column += len(text)
        self.stream.write(text)  # type: ignore[union-attr]

    def print_attribute(self, attribute: Attribute) -> None:
        try:
            text = self._attribute_texts.get(attribute)
        except TypeError:  # an attribute holding unhashable data
            super().print_attribute(attribute)
            return
        if text is None:
            stream, column = self.stream, self._current_column
            self.stream = io.StringIO()
            super().print_attribute(attribute)
            text = self.stream.getvalue()
            self.stream, self._current_column = stream, column
            self._attribute_texts[attribute] = text
        self.print_string(text)


def upstream_text(op: Operation) -> str:
    """`op` as MLIR 22 reads it: xDSL's generic form (every property spelled out, no custom syntax to drift
    apart), printed once where Tessera hands IR to the MLIR toolchain."""
    stream = io.StringIO()
    _GenericPrinter(stream=stream, print_generic_format=True).print_op(op)
    return stream.getvalue() + "\n"
