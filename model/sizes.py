"""Sizes that follow from a model's config alone: the decode state a sequence needs, and the parameters one
token touches (for the memory report, the compile options' checks and the benchmarks' rooflines)."""

from __future__ import annotations

from dataclasses import dataclass

from tessera.model.config import ModelConfig
from tessera.model.weights_layout import param_count

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class StateFigures:
    """Bytes of decode state that one sequence needs."""

    ssm_state_bytes: int  # all Mamba layers, [heads, head_dim, state] each
    conv_state_bytes: int  # all Mamba layers, [conv_dim, conv_kernel - 1] each
    kv_cache_bytes_per_token: int  # all attention layers, K and V


def state_figures(
    config: ModelConfig, *, ssm_dtype: str = "float32", activation_dtype: str | None = None
) -> StateFigures:
    """Decode-state sizes. The SSM state is float32 by default (HF's mamba_ssm_cache_dtype); the conv
    state and KV cache hold activations, in the model's dtype unless told otherwise."""
    act_bytes = DTYPE_BYTES[activation_dtype or config.dtype]
    mamba_layers = config.hybrid_override_pattern.count("M")
    attention_layers = config.hybrid_override_pattern.count("*")
    ssm = mamba_layers * config.mamba_num_heads * config.mamba_head_dim * config.ssm_state_size
    conv = mamba_layers * config.mamba_conv_dim * (config.conv_kernel - 1)
    kv = attention_layers * 2 * config.num_key_value_heads * config.head_dim
    return StateFigures(ssm * DTYPE_BYTES[ssm_dtype], conv * act_bytes, kv * act_bytes)


def active_params_per_token(config: ModelConfig) -> int:
    """Parameters one token touches: all but the routed experts it is not sent to."""
    total = param_count(config)
    moe_layers = config.hybrid_override_pattern.count("E")
    idle = config.n_routed_experts - config.num_experts_per_tok
    per_expert = 2 * config.moe_intermediate_size * config.moe_input_size
    return total - moe_layers * idle * per_expert
