"""tessera-expand-math{target}: the math functions a target has no instruction or library call for, written
out as ops it has — one pass for every target, run after the tile lowering.

    sm_90a   math.sqrt (f32) -> llvm.call_intrinsic "llvm.sqrt.f32" (sqrt.rn.f32, correctly rounded):
             convert-gpu-to-nvvm would call libdevice's __nv_sqrtf, which the PTX cannot carry
    x86, gfx942, gfx90a
             nothing: LLVM's x86 and AMDGPU back ends have sqrt

exp and log of the kernels still emitted as text are lowering/nvvm/math.py's; they move here with the
kernels that use them.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import llvm, math
from xdsl.dialects.builtin import Float32Type, ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern

from tessera.errors import TesseraError

TARGETS = ("x86", "gfx942", "gfx90a", "sm_90a")


class SqrtAsIntrinsic(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: math.SqrtOp, rewriter: PatternRewriter) -> None:
        if not isinstance(op.operand.type, Float32Type):
            raise TesseraError(f"{op.name}: sm_90a kernels take the square root of f32 only, got {op.operand.type}")
        rewriter.replace_matched_op(llvm.CallIntrinsicOp("llvm.sqrt.f32", [op.operand], [op.result.type]))


def expand_math(module: ModuleOp, target: str) -> None:
    if target not in TARGETS:
        raise TesseraError(f"tessera-expand-math: unknown target '{target}' (known: {', '.join(TARGETS)})")
    if target == "sm_90a":
        PatternRewriteWalker(SqrtAsIntrinsic()).rewrite_module(module)


@dataclass(frozen=True)
class ExpandMathPass(ModulePass):
    name = "tessera-expand-math"

    target: str = "x86"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        expand_math(op, self.target)
