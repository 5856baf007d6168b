"""tessera-graph-annotate-costs: write each model block's parameter count and matmul FLOPs per token.

Later levels (fusion and tile-size choices, the compile report) read these instead of re-deriving them
from weight shapes. Attributes written on every `nemotron.*` block:
  tessera.params           weights the block reads (elements; for MoE, all experts)
  tessera.active_params    weights one token reads (MoE: top_k routed experts + shared + router)
  tessera.flops_per_token  2 x active matrix weights (the projections; attention's score/value
                           products grow with context and are not included)
Options: none.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from tessera.dialects import nemotron

_BLOCKS = (nemotron.Mamba2MixerOp, nemotron.AttnGQAOp, nemotron.MLPReLU2Op, nemotron.MoEOp)


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


def block_costs(op: Operation) -> tuple[int, int, int]:
    """(params, active params, matmul FLOPs per token) of one block; operand 0 is the activation."""
    weights = [_shape(operand) for operand in op.operands[1:]]
    params = sum(prod(shape) for shape in weights)
    if isinstance(op, nemotron.MoEOp):
        routed = prod(_shape(op.experts_up)) + prod(_shape(op.experts_down))
        active = params - routed + routed * op.top_k.value.data // op.num_experts.value.data
        matrices = active - prod(_shape(op.router_bias))
    elif isinstance(op, nemotron.Mamba2MixerOp):
        active = params
        matrices = prod(_shape(op.in_proj_weight)) + prod(_shape(op.out_proj_weight))
    else:
        active = params
        matrices = sum(prod(shape) for shape in weights if len(shape) == 2)
    return params, active, 2 * matrices


class AnnotateBlockCosts(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, _BLOCKS) or "tessera.params" in op.attributes:
            return
        params, active, flops = block_costs(op)
        op.attributes["tessera.params"] = IntegerAttr(params, i64)
        op.attributes["tessera.active_params"] = IntegerAttr(active, i64)
        op.attributes["tessera.flops_per_token"] = IntegerAttr(flops, i64)
        rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class GraphAnnotateCostsPass(ModulePass):
    name = "tessera-graph-annotate-costs"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier([AnnotateBlockCosts()]), apply_recursively=False
        ).rewrite_module(op)
