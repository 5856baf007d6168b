"""Tessera's weight layout: the tensors a model has, their shapes, and their Hugging Face names.

Tessera names a layer's tensors after its Graph-IR op, so the IR reads on its own:

    embedding.weight                                  [vocab, hidden]
    layers.{i}.norm.weight                            [hidden]             (every layer's pre-norm)
    layers.{i}.mamba2_mixer.in_proj.weight            [2*inner + 2*G*N + H, hidden]   split [z | xBC | dt]
    layers.{i}.mamba2_mixer.in_proj.bias              [in_proj]            (use_bias)
    layers.{i}.mamba2_mixer.conv1d.weight             [conv_dim, conv_kernel]   (HF: [conv_dim, 1, K])
    layers.{i}.mamba2_mixer.conv1d.bias               [conv_dim]           (use_conv_bias)
    layers.{i}.mamba2_mixer.{dt_bias,A_log,D}         [mamba_heads]
    layers.{i}.mamba2_mixer.norm.weight               [inner]              (group-gated RMSNorm)
    layers.{i}.mamba2_mixer.out_proj.weight           [hidden, inner]      (+ .bias with use_bias)
    layers.{i}.attn_gqa.{q,k,v,o}_proj.weight         [heads*hd, hidden] / [kv*hd, hidden] / [hidden, heads*hd]
    layers.{i}.mlp_relu2.{up,down}_proj.weight        [ffn, hidden] / [hidden, ffn]  (+ .bias with mlp_bias)
    layers.{i}.moe.router.weight                      [experts, hidden]
    layers.{i}.moe.router.e_score_correction_bias     [experts]
    layers.{i}.moe.experts.up_proj                    [experts, moe_ffn, moe_in]     (HF: one tensor per expert)
    layers.{i}.moe.experts.down_proj                  [experts, moe_in, moe_ffn]
    layers.{i}.moe.shared_expert.{up,down}_proj.weight
    layers.{i}.moe.{fc1,fc2}_latent_proj.weight       (moe_latent_size only)
    final_norm.weight                                 [hidden]
    lm_head.weight                                    [vocab, hidden]      (always: see below)

transformers' NemotronHForCausalLM never ties lm_head to the embedding (its `_tied_weights_keys` is
empty), whatever `tie_word_embeddings` says, so lm_head.weight is its own tensor here too; only a
checkpoint that lacks it on disk takes the embedding (frontend/checkpoint.py).

Every Tessera tensor is a pure relabelling, reshape or stack of HF tensors, so the layout converts
back to HF bit-exactly. Linear weights keep PyTorch's [out, in] order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tessera.model.config import ModelConfig

# How a Tessera tensor is made from its HF source tensors.
Transform = Literal["same", "squeeze_middle", "stack"]

MIXER_OP_NAMES = {"M": "mamba2_mixer", "*": "attn_gqa", "-": "mlp_relu2", "E": "moe"}
HF_PREFIXES = ("backbone.", "model.")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the Tessera layout and how to build it from the HF checkpoint."""

    name: str
    shape: tuple[int, ...]
    hf_names: tuple[str, ...]  # without the backbone./model. prefix (except lm_head)
    transform: Transform = "same"
    # False for HF buffers (the router's score-correction bias): stored, but not a parameter.
    parameter: bool = True

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def _linear(name: str, hf: str, out_dim: int, in_dim: int, bias: bool) -> list[TensorSpec]:
    specs = [TensorSpec(f"{name}.weight", (out_dim, in_dim), (f"{hf}.weight",))]
    if bias:
        specs.append(TensorSpec(f"{name}.bias", (out_dim,), (f"{hf}.bias",)))
    return specs


def _mamba_tensors(c: ModelConfig, t: str, h: str) -> list[TensorSpec]:
    heads = c.mamba_num_heads
    specs = _linear(f"{t}.in_proj", f"{h}.in_proj", c.mamba_in_proj_dim, c.hidden_size, c.use_bias)
    specs.append(
        TensorSpec(f"{t}.conv1d.weight", (c.mamba_conv_dim, c.conv_kernel), (f"{h}.conv1d.weight",), "squeeze_middle")
    )
    if c.use_conv_bias:
        specs.append(TensorSpec(f"{t}.conv1d.bias", (c.mamba_conv_dim,), (f"{h}.conv1d.bias",)))
    specs += [TensorSpec(f"{t}.{p}", (heads,), (f"{h}.{p}",)) for p in ("dt_bias", "A_log", "D")]
    specs.append(TensorSpec(f"{t}.norm.weight", (c.mamba_intermediate_size,), (f"{h}.norm.weight",)))
    specs += _linear(f"{t}.out_proj", f"{h}.out_proj", c.hidden_size, c.mamba_intermediate_size, c.use_bias)
    return specs


def _attention_tensors(c: ModelConfig, t: str, h: str) -> list[TensorSpec]:
    q_dim = c.num_attention_heads * c.head_dim
    kv_dim = c.num_key_value_heads * c.head_dim
    # HF builds q/k/v/o with bias=False whatever attention_bias says.
    return [
        *_linear(f"{t}.q_proj", f"{h}.q_proj", q_dim, c.hidden_size, False),
        *_linear(f"{t}.k_proj", f"{h}.k_proj", kv_dim, c.hidden_size, False),
        *_linear(f"{t}.v_proj", f"{h}.v_proj", kv_dim, c.hidden_size, False),
        *_linear(f"{t}.o_proj", f"{h}.o_proj", c.hidden_size, q_dim, False),
    ]


def _mlp_tensors(c: ModelConfig, t: str, h: str, ffn: int, in_dim: int) -> list[TensorSpec]:
    return [
        *_linear(f"{t}.up_proj", f"{h}.up_proj", ffn, in_dim, c.mlp_bias),
        *_linear(f"{t}.down_proj", f"{h}.down_proj", in_dim, ffn, c.mlp_bias),
    ]


def _moe_tensors(c: ModelConfig, t: str, h: str) -> list[TensorSpec]:
    experts = c.n_routed_experts
    per_expert = range(experts)
    specs = [
        TensorSpec(f"{t}.router.weight", (experts, c.hidden_size), (f"{h}.gate.weight",)),
        TensorSpec(
            f"{t}.router.e_score_correction_bias", (experts,), (f"{h}.gate.e_score_correction_bias",), parameter=False
        ),
        TensorSpec(
            f"{t}.experts.up_proj",
            (experts, c.moe_intermediate_size, c.moe_input_size),
            tuple(f"{h}.experts.{e}.up_proj.weight" for e in per_expert),
            "stack",
        ),
        TensorSpec(
            f"{t}.experts.down_proj",
            (experts, c.moe_input_size, c.moe_intermediate_size),
            tuple(f"{h}.experts.{e}.down_proj.weight" for e in per_expert),
            "stack",
        ),
    ]
    specs += _mlp_tensors(
        c, f"{t}.shared_expert", f"{h}.shared_experts", c.moe_shared_expert_intermediate_size, c.hidden_size
    )
    if c.moe_latent_size is not None:
        specs += _linear(f"{t}.fc1_latent_proj", f"{h}.fc1_latent_proj", c.moe_latent_size, c.hidden_size, c.mlp_bias)
        specs += _linear(f"{t}.fc2_latent_proj", f"{h}.fc2_latent_proj", c.hidden_size, c.moe_latent_size, c.mlp_bias)
    return specs


def layer_tensors(config: ModelConfig, index: int) -> list[TensorSpec]:
    """The tensors of layer `index`: its pre-norm, then its mixer's."""
    kind = config.hybrid_override_pattern[index]
    hf = f"layers.{index}"
    tessera = f"layers.{index}"
    specs = [TensorSpec(f"{tessera}.norm.weight", (config.hidden_size,), (f"{hf}.norm.weight",))]
    mixer_t = f"{tessera}.{MIXER_OP_NAMES[kind]}"
    mixer_h = f"{hf}.mixer"
    if kind == "M":
        specs += _mamba_tensors(config, mixer_t, mixer_h)
    elif kind == "*":
        specs += _attention_tensors(config, mixer_t, mixer_h)
    elif kind == "-":
        specs += _mlp_tensors(config, mixer_t, mixer_h, config.intermediate_size, config.hidden_size)
    else:
        specs += _moe_tensors(config, mixer_t, mixer_h)
    return specs


def model_tensors(config: ModelConfig) -> list[TensorSpec]:
    """Every tensor of the Tessera layout, in model order."""
    specs = [TensorSpec("embedding.weight", (config.vocab_size, config.hidden_size), ("embeddings.weight",))]
    for index in range(config.num_hidden_layers):
        specs += layer_tensors(config, index)
    specs.append(TensorSpec("final_norm.weight", (config.hidden_size,), ("norm_f.weight",)))
    specs.append(TensorSpec("lm_head.weight", (config.vocab_size, config.hidden_size), ("lm_head.weight",)))
    return specs


def hf_shape(spec: TensorSpec) -> tuple[int, ...]:
    """The shape each of the spec's HF source tensors has on disk."""
    if spec.transform == "squeeze_middle":
        return (spec.shape[0], 1, spec.shape[1])
    if spec.transform == "stack":
        return spec.shape[1:]
    return spec.shape


def hf_tensors(config: ModelConfig, weights: Mapping[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """Tessera-layout `weights` as the HF tensors they are made from: (name without the backbone./model.
    prefix, except lm_head; array in its HF shape) — what loads them into transformers' NemotronHForCausalLM."""
    for spec in model_tensors(config):
        value = weights[spec.name]
        if spec.transform == "stack":
            yield from zip(spec.hf_names, value, strict=True)
        else:
            yield spec.hf_names[0], value.reshape(hf_shape(spec))


def param_count(config: ModelConfig) -> int:
    """Parameters of the model; equals sum(p.numel()) of HF's NemotronHForCausalLM."""
    return sum(spec.numel for spec in model_tensors(config) if spec.parameter)


def param_count_by_kind(config: ModelConfig) -> dict[str, int]:
    """Parameters by layer kind (pattern character), plus 'embedding', 'lm_head' and 'final_norm'."""
    counts: dict[str, int] = {}
    for index, kind in enumerate(config.hybrid_override_pattern):
        counts[kind] = counts.get(kind, 0) + sum(s.numel for s in layer_tensors(config, index) if s.parameter)
    counts["embedding"] = config.vocab_size * config.hidden_size
    counts["final_norm"] = config.hidden_size
    counts["lm_head"] = config.vocab_size * config.hidden_size
    return counts
