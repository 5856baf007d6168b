"""tessera-expand-math{target}: the math functions a target has no instruction or library call for, written
out as ops it has — one pass for every target, run after the tile lowering. The algorithms and their error
bounds are lowering/math/'s.

    sm_90a   math.exp, math.log, math.sqrt, math.rsqrt of f32: exp_by_exp2, log_fdlibm, sqrt_intrinsic,
             rsqrt_by_division, element by element (a lane's several elements of a tile are a vector: each is
             extracted, expanded, and the results gathered again). convert-gpu-to-nvvm would call libdevice
             (__nv_expf, ...), which the PTX cannot carry, and LLVM's NVPTX back end has no exp or log of its
             own; other element types are an error.
    x86      math.exp, math.log of f32 and vectors of f32: exp_cephes, log_fdlibm (LLVM would call libm's
             expf / logf, once per element of a vector). f64 (scalars per token or head) stays with libm;
             sqrt and rsqrt are instructions (convert-math-to-llvm writes rsqrt as 1 / sqrt).
    gfx942, gfx90a
             nothing: convert-gpu-to-rocdl makes f32 exp, log, sqrt and rsqrt LLVM intrinsics that the AMDGPU
             back end selects as instruction sequences (v_exp_f32, v_log_f32 with range reduction,
             v_sqrt_f32), no library calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import math, vector
from xdsl.dialects.builtin import Float32Type, ModuleOp, VectorType
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.rewriter import InsertPoint

from tessera.dialects.upstream import FromElementsOp
from tessera.errors import TesseraError
from tessera.lowering.math.emitter import MathEmitter
from tessera.lowering.math.exp import exp_by_exp2, exp_cephes
from tessera.lowering.math.log import log_fdlibm
from tessera.lowering.math.sqrt import rsqrt_by_division, sqrt_intrinsic

Expansion = Callable[[MathEmitter, SSAValue], SSAValue]


@dataclass(frozen=True)
class TargetMath:
    """What a target expands: `functions` by op, on f32 and vectors of f32 (whole where `vectors`, else element
    by element). Other types are left to the target's library, or, where it has none (`library` False), an
    error."""

    functions: Mapping[type[Operation], Expansion]
    vectors: bool
    library: bool


TARGETS: dict[str, TargetMath] = {
    "x86": TargetMath({math.ExpOp: exp_cephes, math.LogOp: log_fdlibm}, vectors=True, library=True),
    "gfx942": TargetMath({}, vectors=True, library=True),
    "gfx90a": TargetMath({}, vectors=True, library=True),
    "sm_90a": TargetMath(
        {
            math.ExpOp: exp_by_exp2,
            math.LogOp: log_fdlibm,
            math.SqrtOp: sqrt_intrinsic,
            math.RsqrtOp: rsqrt_by_division,
        },
        vectors=False,
        library=False,
    ),
}


class ExpandMathOp(RewritePattern):
    """A math op of the target's table, replaced by its expansion on the op's operand."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.math = TARGETS[target]

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        expansion = self.math.functions.get(type(op))
        if expansion is None:
            return
        (operand,) = op.operands
        if not self._expands(op, operand.type):
            return
        type_ = operand.type
        if isinstance(type_, VectorType) and not self.math.vectors:  # element by element
            results = []
            for item in range(type_.element_count()):
                element = vector.ExtractOp(operand, [item], type_.element_type)
                rewriter.insert_op(element, InsertPoint.before(op))
                results.append(expansion(MathEmitter(rewriter, op, type_.element_type), element.result))
            rewriter.replace_matched_op(FromElementsOp(results))
            return
        rewriter.replace_matched_op([], [expansion(MathEmitter(rewriter, op, type_), operand)])

    def _expands(self, op: Operation, type_: Attribute) -> bool:
        vector_of_f32 = isinstance(type_, VectorType) and isinstance(type_.element_type, Float32Type)
        if isinstance(type_, Float32Type) or vector_of_f32:
            return True
        if self.math.library:
            return False
        raise TesseraError(f"{op.name}: {self.target} kernels compute it on f32 or vectors of f32, got {type_}")


def expand_math(module: ModuleOp, target: str) -> None:
    if target not in TARGETS:
        raise TesseraError(f"tessera-expand-math: unknown target '{target}' (known: {', '.join(TARGETS)})")
    PatternRewriteWalker(ExpandMathOp(target)).rewrite_module(module)


@dataclass(frozen=True)
class ExpandMathPass(ModulePass):
    name = "tessera-expand-math"

    target: str = "x86"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        expand_math(op, self.target)
