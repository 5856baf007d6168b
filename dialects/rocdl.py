"""The subset of MLIR 22's `rocdl` dialect that Tessera emits as typed IR (xDSL 0.74 has none): CDNA's 16x16
MFMA instructions, mirrored with MLIR's names and operands so that the SIMT lowering builds them and prints
them once, in generic form.

    Mfma16x16x16Bf16Op   rocdl.mfma.f32.16x16x16bf16.1k (a, b: vector<4xi16>, bf16 bits; c: vector<4xf32>)
    Mfma16x16x4F32Op     rocdl.mfma.f32.16x16x4f32      (a, b: f32; c: vector<4xf32>)

Both take cbsz, abid and blgp (i32 operands; Tessera passes 0: no broadcast between blocks) and return the new
accumulator. Where each lane's fragment elements lie is arch.py's WaveFragments.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import IntegerType, VectorType, f32, i16, i32
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, result_def
from xdsl.utils.exceptions import VerifyException

ACCUMULATOR = VectorType(f32, [4])


class MfmaOp(IRDLOperation):
    """acc' = acc + A B on one wave's 16x16 tile (the operand types are each instruction's)."""

    OPERAND_TYPE: ClassVar[Attribute]

    a = operand_def()
    b = operand_def()
    c = operand_def(VectorType)
    cbsz = operand_def(IntegerType)
    abid = operand_def(IntegerType)
    blgp = operand_def(IntegerType)
    result = result_def(VectorType)

    def __init__(self, a: SSAValue, b: SSAValue, c: SSAValue, zero: SSAValue) -> None:
        """`zero`: an i32 0, for cbsz, abid and blgp."""
        super().__init__(operands=[a, b, c, zero, zero, zero], result_types=[ACCUMULATOR])

    def verify_(self) -> None:
        if self.a.type != self.OPERAND_TYPE or self.b.type != self.OPERAND_TYPE:
            raise VerifyException(f"{self.name}: operands are {self.OPERAND_TYPE}, got {self.a.type}, {self.b.type}")
        if self.c.type != ACCUMULATOR or self.result.type != ACCUMULATOR:
            raise VerifyException(f"{self.name}: the accumulator is {ACCUMULATOR}")
        if any(flag.type != i32 for flag in (self.cbsz, self.abid, self.blgp)):
            raise VerifyException(f"{self.name}: cbsz, abid and blgp are i32")


@irdl_op_definition
class Mfma16x16x16Bf16Op(MfmaOp):
    name = "rocdl.mfma.f32.16x16x16bf16.1k"
    OPERAND_TYPE: ClassVar[Attribute] = VectorType(i16, [4])


@irdl_op_definition
class Mfma16x16x4F32Op(MfmaOp):
    name = "rocdl.mfma.f32.16x16x4f32"
    OPERAND_TYPE: ClassVar[Attribute] = f32


# The op of each MFMA instruction the arch table names (arch.MatrixInstruction.name).
MFMA_OPS: dict[str, type[MfmaOp]] = {op.name: op for op in (Mfma16x16x16Bf16Op, Mfma16x16x4F32Op)}
Rocdl = Dialect("rocdl", list(MFMA_OPS.values()))
