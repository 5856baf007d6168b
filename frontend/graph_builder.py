"""Config -> Graph-IR: one `func.func @forward(%input_ids) -> logits`, driven by the layer pattern.

Each layer is `h = h + mixer(rmsnorm(h))`; weights are `tessera.graph.weight` ops named by the Tessera
weight layout (model/weights_layout.py), so the IR, the converter and the executor agree on names.

    python -m tessera.frontend.graph_builder configs/nemotron_h_tiny.yaml   # prints the module
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from xdsl.builder import Builder, InsertPoint
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    BoolAttr,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.irdl import IRDLOperation
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from tessera.dialects import graph, nemotron
from tessera.model.config import ConfigError, ModelConfig
from tessera.model.weights_layout import MIXER_OP_NAMES, TensorSpec, model_tensors


def _int(value: int) -> IntegerAttr:
    return IntegerAttr(value, i64)


def _float(value: float) -> FloatAttr:
    return FloatAttr(float(value), Float64Type())


class _GraphBuilder:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.activation = TensorType(f32, [DYNAMIC_INDEX, config.hidden_size])
        self.specs = {spec.name: spec for spec in model_tensors(config)}
        self.block = Block(arg_types=[TensorType(i64, [DYNAMIC_INDEX])])
        self.builder = Builder(InsertPoint.at_end(self.block))

    def insert(self, op: Operation) -> SSAValue:
        self.builder.insert(op)
        return op.results[0]

    def weight(self, name: str) -> SSAValue:
        spec: TensorSpec = self.specs[name]
        return self.insert(graph.WeightOp(name, TensorType(f32, spec.shape)))

    def optional(self, name: str) -> SSAValue | None:
        return self.weight(name) if name in self.specs else None

    def rmsnorm(self, x: SSAValue, weight_name: str) -> SSAValue:
        return self.insert(graph.RMSNormOp(x, self.weight(weight_name), self.config.layer_norm_epsilon))

    def block_op(
        self,
        op_type: type[IRDLOperation],
        x: SSAValue,
        operands: list[tuple[SSAValue | None, bool]],
        properties: Mapping[str, Attribute],
    ) -> SSAValue:
        # Optional operands are passed as [] or [value], as IRDL's segment sizes expect.
        packed: list[SSAValue | list[SSAValue]] = [
            [] if value is None else [value] if optional else value for value, optional in operands
        ]
        return self.insert(op_type(operands=[x, *packed], properties=dict(properties), result_types=[self.activation]))

    def layer(self, index: int, h: SSAValue) -> SSAValue:
        c = self.config
        kind = c.hybrid_override_pattern[index]
        prefix = f"layers.{index}.{MIXER_OP_NAMES[kind]}"
        x = self.rmsnorm(h, f"layers.{index}.norm.weight")

        def w(name: str) -> tuple[SSAValue, bool]:
            return self.weight(f"{prefix}.{name}"), False

        def opt(name: str) -> tuple[SSAValue | None, bool]:
            return self.optional(f"{prefix}.{name}"), True

        layer = {"layer": _int(index)}
        if kind == "M":
            out = self.block_op(
                nemotron.Mamba2MixerOp,
                x,
                [
                    w("in_proj.weight"),
                    opt("in_proj.bias"),
                    w("conv1d.weight"),
                    opt("conv1d.bias"),
                    w("dt_bias"),
                    w("A_log"),
                    w("D"),
                    w("norm.weight"),
                    w("out_proj.weight"),
                    opt("out_proj.bias"),
                ],
                {
                    **layer,
                    "num_heads": _int(c.mamba_num_heads),
                    "head_dim": _int(c.mamba_head_dim),
                    "state_size": _int(c.ssm_state_size),
                    "n_groups": _int(c.n_groups),
                    "conv_kernel": _int(c.conv_kernel),
                    "chunk_size": _int(c.chunk_size),
                    "epsilon": _float(c.layer_norm_epsilon),
                    "time_step_min": _float(c.time_step_min),
                },
            )
        elif kind == "*":
            out = self.block_op(
                nemotron.AttnGQAOp,
                x,
                [w("q_proj.weight"), w("k_proj.weight"), w("v_proj.weight"), w("o_proj.weight")],
                {
                    **layer,
                    "num_heads": _int(c.num_attention_heads),
                    "num_kv_heads": _int(c.num_key_value_heads),
                    "head_dim": _int(c.head_dim),
                },
            )
        elif kind == "-":
            out = self.block_op(
                nemotron.MLPReLU2Op,
                x,
                [w("up_proj.weight"), w("down_proj.weight"), opt("up_proj.bias"), opt("down_proj.bias")],
                layer,
            )
        else:
            out = self.block_op(
                nemotron.MoEOp,
                x,
                [
                    w("router.weight"),
                    w("router.e_score_correction_bias"),
                    w("experts.up_proj"),
                    w("experts.down_proj"),
                    w("shared_expert.up_proj.weight"),
                    w("shared_expert.down_proj.weight"),
                    opt("fc1_latent_proj.weight"),
                    opt("fc2_latent_proj.weight"),
                ],
                {
                    **layer,
                    "num_experts": _int(c.n_routed_experts),
                    "top_k": _int(c.num_experts_per_tok),
                    "n_group": _int(c.n_group),
                    "topk_group": _int(c.topk_group),
                    "norm_topk_prob": BoolAttr.from_bool(c.norm_topk_prob),
                    "routed_scaling_factor": _float(c.routed_scaling_factor),
                },
            )
        return self.insert(graph.AddOp(operands=[h, out], result_types=[self.activation]))

    def build(self) -> ModuleOp:
        c = self.config
        ids = self.block.args[0]
        ids.name_hint = "input_ids"
        table = self.weight("embedding.weight")
        h = self.insert(graph.EmbeddingOp(operands=[ids, table], result_types=[self.activation]))
        for index in range(c.num_hidden_layers):
            h = self.layer(index, h)
        h = self.rmsnorm(h, "final_norm.weight")
        head = self.weight("lm_head.weight")
        logits_type = TensorType(f32, [DYNAMIC_INDEX, c.vocab_size])
        logits = self.insert(graph.LMHeadOp(operands=[h, head], result_types=[logits_type]))
        self.builder.insert(func.ReturnOp(logits))
        function = func.FuncOp("forward", ((self.block.args[0].type,), (logits_type,)), Region(self.block))
        return ModuleOp([function])


def check_supported(config: ModelConfig, source: str = "model config") -> None:
    """Refuse, naming the field, what the config reader accepts but the Graph-IR blocks cannot express."""
    kinds = set(config.hybrid_override_pattern)
    if "E" in kinds:
        if config.mlp_bias:
            raise ConfigError(f"{source}: field 'mlp_bias': MoE layers with mlp_bias are not supported")
        kept = config.topk_group * (config.n_routed_experts // config.n_group)
        if config.num_experts_per_tok > kept:
            # HF picks the top_k experts among the topk_group kept groups only.
            raise ConfigError(
                f"{source}: field 'num_experts_per_tok': {config.num_experts_per_tok} exceeds the experts of "
                f"the kept groups, topk_group * n_routed_experts / n_group = {kept}"
            )
    if "M" in kinds and not config.time_step_min >= 0:
        raise ConfigError(f"{source}: field 'time_step_min': must be >= 0, got {config.time_step_min}")


def build_graph(config: ModelConfig, source: str = "model config") -> ModuleOp:
    """The Graph-IR module of `config`, verified. A config it cannot express raises ConfigError, one line
    naming `source` (the file the config came from) and the field."""
    check_supported(config, source)
    module = _GraphBuilder(config).build()
    try:
        module.verify()
    except (VerifyException, DiagnosticException) as exc:
        # A block-verifier rule that no check above catches: still one line, never a traceback.
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError(f"{source}: the model's Graph-IR does not verify: {first}") from None
    return module


def _main(argv: list[str]) -> int:
    from tessera.errors import TesseraError
    from tessera.frontend.config import load_model

    if len(argv) != 1:
        print("usage: python -m tessera.frontend.graph_builder MODEL", file=sys.stderr)
        return 2
    try:
        spec = load_model(argv[0])
        print(build_graph(spec.config, spec.source))
    except TesseraError as exc:
        print(f"graph_builder: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
