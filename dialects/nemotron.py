"""nemotron: the model-block ops of Graph-IR, named as the seeds name them.

`nemotron.mamba2_mixer`, `nemotron.attn_gqa`, `nemotron.mlp_relu2` and `nemotron.moe` each map
x [tokens, hidden] to [tokens, hidden] with the semantics of Hugging Face's NemotronH modules
(docs/graph_ir.md). Every block carries `layer`, its index in the pattern: later levels and the
reference executor key per-layer state (conv/SSM state, KV cache) on it. Weights are operands, so the
verifiers check every shape relation between weights and attributes.
"""

from __future__ import annotations

from xdsl.dialects.builtin import I64, BoolAttr, Float64Type, FloatAttr, IntegerAttr, TensorType
from xdsl.ir import Dialect
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    IRDLOption,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from tessera.dialects.verify_utils import activation, dims, divides, expect_shape, positive, weights


def _int(attr: IntegerAttr) -> int:
    return attr.value.data


def _group(
    keyword: str, required: tuple[str, ...], optional: tuple[str, ...] = (), *, all_optional: bool = False
) -> str:
    """`keyword(%a : type, %b : type)` in the declarative format; optional operands print only when present."""
    typed = [f"${name} `:` type(${name})" for name in required]
    body = " `,` ".join(typed)
    for name in optional:
        body += f" (`,` ${name}^ `:` type(${name}))?"
    if all_optional:
        first, *rest = optional
        inner = f"${first}^ `:` type(${first})" + "".join(f" `,` ${n} `:` type(${n})" for n in rest)
        return f"(`{keyword}` `(` {inner} `)`)?"
    return f"`{keyword}` `(` {body} `)`"


def _format(*groups: str) -> str:
    # Types sit beside their operands: a block has several optional weights, so one functional type
    # list would be ambiguous.
    return " ".join(["$x `:` type($x)", *groups, "attr-dict `->` type($result)"])


class _Block(IRDLOperation):
    """What all blocks share: x in (declared first by each block, so it is operand 0), same-typed result
    out, a layer index."""

    result = result_def(TensorType)
    layer = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure())
    irdl_options: tuple[IRDLOption, ...] = (ParsePropInAttrDict(),)

    def _verify_block(self) -> int:
        x = self.operands[0]
        hidden = activation(self.name, "x", x)
        if self.result.type != x.type:
            raise VerifyException(f"{self.name}: result type {self.result.type} must equal x's {x.type}")
        if _int(self.layer) < 0:
            raise VerifyException(f"{self.name}: layer must be >= 0, got {_int(self.layer)}")
        weight_names = [name for name, _ in self.get_irdl_definition().operands[1:]]
        weights(self.name, {name: getattr(self, name) for name in weight_names})
        return hidden


@irdl_op_definition
class Mamba2MixerOp(_Block):
    """Mamba-2 mixer: in_proj → causal depthwise conv + SiLU → SSD scan (A_log, dt_bias, D) →
    group-gated RMSNorm → out_proj.

    ```mlir
    %y = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>)
           conv(%w_conv : tensor<96x4xf32>, %b_conv : tensor<96xf32>) dt_bias(%dt_bias : tensor<4xf32>)
           A_log(%a_log : tensor<4xf32>) D(%d : tensor<4xf32>) norm(%w_norm : tensor<32xf32>)
           out_proj(%w_out : tensor<32x32xf32>) {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64,
           state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64,
           epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
    ```
    """

    name = "nemotron.mamba2_mixer"
    x = operand_def(TensorType)
    in_proj_weight = operand_def(TensorType)
    in_proj_bias = opt_operand_def(TensorType)
    conv_weight = operand_def(TensorType)
    conv_bias = opt_operand_def(TensorType)
    dt_bias = operand_def(TensorType)
    A_log = operand_def(TensorType)
    D = operand_def(TensorType)
    norm_weight = operand_def(TensorType)
    out_proj_weight = operand_def(TensorType)
    out_proj_bias = opt_operand_def(TensorType)
    num_heads = prop_def(IntegerAttr[I64])
    head_dim = prop_def(IntegerAttr[I64])
    state_size = prop_def(IntegerAttr[I64])
    n_groups = prop_def(IntegerAttr[I64])
    conv_kernel = prop_def(IntegerAttr[I64])
    chunk_size = prop_def(IntegerAttr[I64])
    epsilon = prop_def(FloatAttr[Float64Type])
    time_step_min = prop_def(FloatAttr[Float64Type])
    irdl_options = (
        ParsePropInAttrDict(),
        AttrSizedOperandSegments(as_property=True),
    )
    assembly_format = _format(
        _group("in_proj", ("in_proj_weight",), ("in_proj_bias",)),
        _group("conv", ("conv_weight",), ("conv_bias",)),
        _group("dt_bias", ("dt_bias",)),
        _group("A_log", ("A_log",)),
        _group("D", ("D",)),
        _group("norm", ("norm_weight",)),
        _group("out_proj", ("out_proj_weight",), ("out_proj_bias",)),
    )

    def verify_(self) -> None:
        hidden = self._verify_block()
        heads, head_dim, state = _int(self.num_heads), _int(self.head_dim), _int(self.state_size)
        groups, kernel, chunk = _int(self.n_groups), _int(self.conv_kernel), _int(self.chunk_size)
        positive(
            self.name, num_heads=heads, head_dim=head_dim, state_size=state, n_groups=groups,
            conv_kernel=kernel, chunk_size=chunk,
        )  # fmt: skip
        divides(self.name, "n_groups", groups, "num_heads", heads)
        if not self.epsilon.value.data > 0:
            raise VerifyException(f"{self.name}: epsilon must be positive, got {self.epsilon.value.data}")
        if self.time_step_min.value.data < 0:
            raise VerifyException(f"{self.name}: time_step_min must be >= 0, got {self.time_step_min.value.data}")
        inner = heads * head_dim
        conv = inner + 2 * groups * state
        in_proj = inner + conv + heads
        rule = f"2*I + 2*G*N + H with I={inner}, G={groups}, N={state}, H={heads}"
        expect_shape(self.name, "in_proj_weight", self.in_proj_weight, (in_proj, hidden), rule)
        if self.in_proj_bias is not None:
            expect_shape(self.name, "in_proj_bias", self.in_proj_bias, (in_proj,))
        expect_shape(self.name, "conv_weight", self.conv_weight, (conv, kernel), "[I + 2*G*N, conv_kernel]")
        if self.conv_bias is not None:
            expect_shape(self.name, "conv_bias", self.conv_bias, (conv,))
        for role, value in (("dt_bias", self.dt_bias), ("A_log", self.A_log), ("D", self.D)):
            expect_shape(self.name, role, value, (heads,), "one per head")
        expect_shape(self.name, "norm_weight", self.norm_weight, (inner,), "num_heads * head_dim")
        expect_shape(self.name, "out_proj_weight", self.out_proj_weight, (hidden, inner))
        if self.out_proj_bias is not None:
            expect_shape(self.name, "out_proj_bias", self.out_proj_bias, (hidden,))


@irdl_op_definition
class AttnGQAOp(_Block):
    """Causal grouped-query attention (no RoPE, no QK norm, no bias), scale head_dim^-0.5.

    ```mlir
    %y = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>)
           v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
           {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
    ```
    """

    name = "nemotron.attn_gqa"
    x = operand_def(TensorType)
    q_weight = operand_def(TensorType)
    k_weight = operand_def(TensorType)
    v_weight = operand_def(TensorType)
    o_weight = operand_def(TensorType)
    num_heads = prop_def(IntegerAttr[I64])
    num_kv_heads = prop_def(IntegerAttr[I64])
    head_dim = prop_def(IntegerAttr[I64])
    assembly_format = _format(
        _group("q", ("q_weight",)), _group("k", ("k_weight",)), _group("v", ("v_weight",)), _group("o", ("o_weight",))
    )

    def verify_(self) -> None:
        hidden = self._verify_block()
        heads, kv_heads, head_dim = _int(self.num_heads), _int(self.num_kv_heads), _int(self.head_dim)
        positive(self.name, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim)
        divides(self.name, "num_kv_heads", kv_heads, "num_heads", heads)
        expect_shape(self.name, "q_weight", self.q_weight, (heads * head_dim, hidden), "num_heads * head_dim rows")
        expect_shape(self.name, "k_weight", self.k_weight, (kv_heads * head_dim, hidden), "num_kv_heads * head_dim")
        expect_shape(self.name, "v_weight", self.v_weight, (kv_heads * head_dim, hidden), "num_kv_heads * head_dim")
        expect_shape(self.name, "o_weight", self.o_weight, (hidden, heads * head_dim))


@irdl_op_definition
class MLPReLU2Op(_Block):
    """down(relu(up(x))²).

    ```mlir
    %y = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%wu : tensor<48x32xf32>)
           down(%wd : tensor<32x48xf32>, %bd : tensor<32xf32>) {layer = 2 : i64} -> tensor<?x32xf32>
    ```
    """

    name = "nemotron.mlp_relu2"
    x = operand_def(TensorType)
    up_weight = operand_def(TensorType)
    down_weight = operand_def(TensorType)
    up_bias = opt_operand_def(TensorType)
    down_bias = opt_operand_def(TensorType)
    irdl_options = (
        ParsePropInAttrDict(),
        AttrSizedOperandSegments(as_property=True),
    )
    assembly_format = _format(
        _group("up", ("up_weight",), ("up_bias",)), _group("down", ("down_weight",), ("down_bias",))
    )

    def verify_(self) -> None:
        hidden = self._verify_block()
        up = dims(self.name, "up_weight", self.up_weight)
        if len(up) != 2 or up[1] != hidden:
            raise VerifyException(f"{self.name}: up_weight must be [ffn, {hidden}], got {self.up_weight.type}")
        expect_shape(self.name, "down_weight", self.down_weight, (hidden, up[0]), "[hidden, ffn]")
        if self.up_bias is not None:
            expect_shape(self.name, "up_bias", self.up_bias, (up[0],))
        if self.down_bias is not None:
            expect_shape(self.name, "down_bias", self.down_bias, (hidden,))


@irdl_op_definition
class MoEOp(_Block):
    """Mixture of experts: sigmoid router with score-correction bias, group-limited top-k, normalised and
    scaled weights, ReLU² routed experts (optionally in a latent space), plus one shared expert.

    ```mlir
    %y = nemotron.moe %x : tensor<?x32xf32> router(%wr : tensor<4x32xf32>, %br : tensor<4xf32>)
           experts(%eu : tensor<4x24x16xf32>, %ed : tensor<4x16x24xf32>)
           shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
           latent(%li : tensor<16x32xf32>, %lo : tensor<32x16xf32>)
           {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64,
           norm_topk_prob = true, routed_scaling_factor = 2.5 : f64} -> tensor<?x32xf32>
    ```
    """

    name = "nemotron.moe"
    x = operand_def(TensorType)
    router_weight = operand_def(TensorType)
    router_bias = operand_def(TensorType)
    experts_up = operand_def(TensorType)
    experts_down = operand_def(TensorType)
    shared_up_weight = operand_def(TensorType)
    shared_down_weight = operand_def(TensorType)
    latent_in_weight = opt_operand_def(TensorType)
    latent_out_weight = opt_operand_def(TensorType)
    num_experts = prop_def(IntegerAttr[I64])
    top_k = prop_def(IntegerAttr[I64])
    n_group = prop_def(IntegerAttr[I64])
    topk_group = prop_def(IntegerAttr[I64])
    norm_topk_prob = prop_def(BoolAttr)
    routed_scaling_factor = prop_def(FloatAttr[Float64Type])
    irdl_options = (
        ParsePropInAttrDict(),
        AttrSizedOperandSegments(as_property=True),
    )
    assembly_format = _format(
        _group("router", ("router_weight", "router_bias")),
        _group("experts", ("experts_up", "experts_down")),
        _group("shared", ("shared_up_weight", "shared_down_weight")),
        _group("latent", (), ("latent_in_weight", "latent_out_weight"), all_optional=True),
    )

    def verify_(self) -> None:
        hidden = self._verify_block()
        experts, top_k = _int(self.num_experts), _int(self.top_k)
        n_group, topk_group = _int(self.n_group), _int(self.topk_group)
        positive(self.name, num_experts=experts, top_k=top_k, n_group=n_group, topk_group=topk_group)
        if top_k > experts:
            raise VerifyException(f"{self.name}: top_k ({top_k}) must not exceed num_experts ({experts})")
        divides(self.name, "n_group", n_group, "num_experts", experts)
        if topk_group > n_group:
            raise VerifyException(f"{self.name}: topk_group ({topk_group}) must not exceed n_group ({n_group})")
        kept = topk_group * (experts // n_group)
        if top_k > kept:
            # The router picks top_k experts among the kept groups only.
            raise VerifyException(
                f"{self.name}: top_k ({top_k}) must not exceed the experts of the kept groups, "
                f"topk_group * num_experts / n_group = {kept}"
            )
        expect_shape(self.name, "router_weight", self.router_weight, (experts, hidden), "[num_experts, hidden]")
        expect_shape(self.name, "router_bias", self.router_bias, (experts,), "one per expert")
        if (self.latent_in_weight is None) != (self.latent_out_weight is None):
            raise VerifyException(f"{self.name}: latent_in_weight and latent_out_weight come together")
        latent = hidden
        if self.latent_in_weight is not None and self.latent_out_weight is not None:
            latent_shape = dims(self.name, "latent_in_weight", self.latent_in_weight)
            if len(latent_shape) != 2 or latent_shape[1] != hidden:
                raise VerifyException(f"{self.name}: latent_in_weight must be [latent, {hidden}]")
            latent = latent_shape[0]
            expect_shape(self.name, "latent_out_weight", self.latent_out_weight, (hidden, latent))
        up = dims(self.name, "experts_up", self.experts_up)
        if len(up) != 3 or up[0] != experts or up[2] != latent:
            raise VerifyException(
                f"{self.name}: experts_up must be [{experts}, ffn, {latent}] (num_experts, ffn, latent), "
                f"got {self.experts_up.type}"
            )
        expect_shape(self.name, "experts_down", self.experts_down, (experts, latent, up[1]), "[experts, latent, ffn]")
        shared = dims(self.name, "shared_up_weight", self.shared_up_weight)
        if len(shared) != 2 or shared[1] != hidden:
            raise VerifyException(f"{self.name}: shared_up_weight must be [shared_ffn, {hidden}]")
        expect_shape(self.name, "shared_down_weight", self.shared_down_weight, (hidden, shared[0]))


Nemotron = Dialect("nemotron", [Mamba2MixerOp, AttnGQAOp, MLPReLU2Op, MoEOp])
