"""Upstream MLIR ops that xDSL 0.74 lacks, mirrored with MLIR 22's names, operands and properties so that
Tessera builds them as typed IR and prints them once, in generic form, for MLIR to read
(targets/toolchain.to_upstream_text). Each is the subset Tessera emits, with its verifier.

    gpu.shuffle   a value of another lane of the wave (mode xor | down | up | idx), and whether it was valid
"""

from __future__ import annotations

import io
from enum import auto

from xdsl.dialects.builtin import IntegerType, i1, i32
from xdsl.ir import Attribute, Dialect, EnumAttribute, Operation, SpacedOpaqueSyntaxAttribute, SSAValue
from xdsl.irdl import IRDLOperation, irdl_attr_definition, irdl_op_definition, operand_def, prop_def, result_def
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


# Not registered with tessera-opt's context, where xDSL's own gpu dialect holds the namespace: these ops are
# built by the lowerings and printed, never parsed back by xDSL.
UpstreamGpu = Dialect("gpu", [ShuffleOp], [ShuffleModeAttr])


def upstream_text(op: Operation) -> str:
    """`op` as MLIR 22 reads it: xDSL's generic form (every property spelled out, no custom syntax to drift
    apart), printed once where Tessera hands IR to the MLIR toolchain."""
    stream = io.StringIO()
    Printer(stream=stream, print_generic_format=True).print_op(op)
    return stream.getvalue() + "\n"
