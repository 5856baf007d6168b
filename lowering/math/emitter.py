"""MathEmitter: the arith ops an expansion of tessera-expand-math is written in, on one value type — f32, or a
vector of f32, and the i32 (or vector of i32) of its bits — inserted before the math op being replaced.

The same expansion code serves a scalar and a vector: constants are splats where the type is a vector, and
comparisons and selects on vectors are dialects/upstream.py's (xDSL 0.74's arith.cmpf and arith.select take
i1 conditions only).
"""

from __future__ import annotations

from xdsl.dialects import arith, llvm
from xdsl.dialects.builtin import VectorType, i32
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter

from tessera.dialects import upstream
from tessera.lowering.tile_elements import Emitter, with_shape_of

# Lets LLVM fuse a product and the sum it feeds into one FMA where the CPU has FMA (separate ops elsewhere).
CONTRACT = arith.FastMathFlagsAttr([FastMathFlag.ALLOW_CONTRACT])


class MathEmitter(Emitter):
    """Builds the ops of one expansion on values of type `like` (f32 or vector<N x f32>)."""

    def __init__(self, rewriter: PatternRewriter, anchor: Operation, like: Attribute) -> None:
        super().__init__(rewriter, anchor)
        self.like = like
        self.bits_type = with_shape_of(like, i32)

    # --- constants (each defined once per expansion: Emitter.constant) -------------------------------------

    def f32(self, value: float) -> SSAValue:
        return self.constant(value, self.like)

    def i32(self, value: int) -> SSAValue:
        return self.constant(value, self.bits_type)

    # --- float arithmetic (IEEE, each rounded once) ----------------------------------------------------------

    def addf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.AddfOp(x, y))

    def subf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.SubfOp(x, y))

    def mulf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.MulfOp(x, y))

    def divf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.DivfOp(x, y))

    def maximumf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.MaximumfOp(x, y))

    def minimumf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.MinimumfOp(x, y))

    def fma(self, x: SSAValue, y: SSAValue, z: SSAValue) -> SSAValue:
        """x * y + z, fused into one rounding where the target has FMA, else two."""
        return self(arith.AddfOp(self(arith.MulfOp(x, y, CONTRACT)), z, CONTRACT))

    # --- the bits --------------------------------------------------------------------------------------------

    def bits(self, x: SSAValue) -> SSAValue:
        return self(arith.BitcastOp(x, self.bits_type))

    def from_bits(self, bits: SSAValue) -> SSAValue:
        return self(arith.BitcastOp(bits, self.like))

    def addi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.AddiOp(x, y))

    def subi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.SubiOp(x, y))

    def andi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.AndIOp(x, y))

    def shli(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.ShLIOp(x, y))

    def shrui(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(arith.ShRUIOp(x, y))

    # --- comparisons ----------------------------------------------------------------------------------------

    def cmpf(self, predicate: str, x: SSAValue, y: SSAValue) -> SSAValue:
        """An i1 (a vector of them for vectors): x <predicate> y, e.g. "olt" (false where either is NaN)."""
        if isinstance(x.type, VectorType):
            return self(upstream.CmpfOp(x, y, predicate))
        return self(arith.CmpfOp(x, y, predicate))

    def select(self, condition: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
        """x where `condition` holds, else y (element by element for vectors)."""
        if isinstance(x.type, VectorType):
            return self(upstream.SelectOp(condition, x, y))
        return self(arith.SelectOp(condition, x, y))

    # --- what the target has -------------------------------------------------------------------------------

    def intrinsic(self, name: str, x: SSAValue) -> SSAValue:
        """An LLVM intrinsic of one operand, called by name (e.g. "llvm.exp2.f32")."""
        return self(llvm.CallIntrinsicOp(name, [x], [x.type]))
