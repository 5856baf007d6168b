"""The subset of MLIR 22's `x86vector` dialect that Tessera emits (xDSL 0.74 has none), mirrored with MLIR's
name, operands and types so that the x86 lowering builds it as typed IR and prints it once, in generic form.

    DotBF16Op   vdpbf16ps (AVX-512 BF16): src[16 f32] + the sums of the 16 adjacent pairs of a[32 bf16] times
                b[32 bf16], lane i += a[2i] b[2i] + a[2i + 1] b[2i + 1]

lowering/x86/pipeline.py's AVX512BF16_LLVM_PIPELINE converts it (convert-vector-to-llvm{enable-x86vector}) to
LLVM's 512-bit AVX-512 BF16 dot-product intrinsic.
"""

from __future__ import annotations

from xdsl.dialects.builtin import BFloat16Type, Float32Type, VectorType
from xdsl.ir import Dialect, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, result_def
from xdsl.utils.exceptions import VerifyException

LANES = 16  # f32 lanes of one 512-bit register: the accumulator; its inputs hold 2 * LANES bf16


@irdl_op_definition
class DotBF16Op(IRDLOperation):
    name = "x86vector.avx512.dot"
    src = operand_def(VectorType)
    a = operand_def(VectorType)
    b = operand_def(VectorType)
    dst = result_def(VectorType)

    def __init__(self, src: SSAValue, a: SSAValue, b: SSAValue) -> None:
        super().__init__(operands=[src, a, b], result_types=[src.type])

    def verify_(self) -> None:
        src, a, b = (value.type for value in (self.src, self.a, self.b))
        assert isinstance(src, VectorType) and isinstance(a, VectorType) and isinstance(b, VectorType)
        f32_lanes = src.get_shape() == (LANES,) and isinstance(src.element_type, Float32Type)
        pairs = all(t.get_shape() == (2 * LANES,) and isinstance(t.element_type, BFloat16Type) for t in (a, b))
        if not f32_lanes or not pairs or self.dst.type != src:
            raise VerifyException(
                f"{self.name}: vector<16xf32> + vector<32xbf16> . vector<32xbf16>, got {src}, {a}, {b}"
            )


X86Vector = Dialect("x86vector", [DotBF16Op], [])
