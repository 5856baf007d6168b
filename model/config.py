"""The model configuration: one validated description of a Nemotron-H family member (ModelConfig), the
compile options that go with it (CompileOptions), and both together with where the files are (ModelSpec).

`config_from_dict` reads Hugging Face config.json fields (with the aliases older and remote-code configs
use); frontend/config.py finds them (a model.yaml, an HF checkpoint directory, a Hub repo id) and the runtime
reads them back from an artifact's tessera.json. Every inconsistency raises `ConfigError` with one line
naming the file and the field. Semantics follow transformers' `NemotronHConfig` defaults wherever a field
is absent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tessera.errors import TesseraError

# A bound on the depth of a model, so that a config cannot make the compiler build a graph for hours: the
# deepest family member (Nemotron-H 56B) has 118 layers.
MAX_LAYERS = 1024
# Layer kinds as they appear in `hybrid_override_pattern`, and their HF `layers_block_type` names.
PATTERN_TO_BLOCK_TYPE = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}
BLOCK_TYPE_TO_PATTERN = {v: k for k, v in PATTERN_TO_BLOCK_TYPE.items()}
# Older checkpoints spell the Mamba layer "mamba" and attention "attention".
LEGACY_BLOCK_TYPES = {"mamba": "M", "attention": "*"}
LAYER_KIND_NAMES = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}

KNOWN_TARGETS = ("reference", "x86", "nvvm", "rocdl")
KNOWN_DTYPES = ("float32", "bfloat16", "float16")

# Sizes, counts and token ids become memref dims and i64 attributes in the IR, and the GPU kernels
# compute positions and offsets in i32: every integer field must fit int32.
MAX_INT32 = 2**31 - 1
# Byte counts (a weight tensor, the decode state of a batch) are int64 in the safetensors headers, the
# manifests (which safe_io reads back with int64 limits) and the memory report: each must fit int64.
MAX_INT64 = 2**63 - 1
# Weights are stored in at most 8 bytes an element (F64).
MAX_WEIGHT_ITEMSIZE = 8


class ConfigError(TesseraError):
    """A model config that cannot describe a valid model."""


@dataclass(frozen=True)
class CompileOptions:
    """The `compile:` section: what to build and for which shapes."""

    targets: tuple[str, ...] = ("x86", "reference")  # native code, and the executable specification
    dtype: str = "float32"
    max_seq_len: int = 4096
    batch: int = 1
    chunk_size: int = 128
    # fp32 | bf16 (bfloat16 weights, float32 accumulation); None: from dtype (bfloat16 -> bf16, else fp32)
    precision: str | None = None
    ssm_state_dtype: str = "float32"  # or bfloat16: halves the Mamba state memory
    kv_cache_dtype: str = "float32"  # or bfloat16: halves the KV cache
    # The GPU a GPU target builds for (rocdl: gfx942 | gfx90a); None: the target's default.
    arch: str | None = None

    @property
    def effective_precision(self) -> str:
        if self.precision is not None:
            return self.precision
        return "bf16" if self.dtype == "bfloat16" else "fp32"


@dataclass(frozen=True)
class ModelConfig:
    """A Nemotron-H model, by Hugging Face config.json field names (defaults: NemotronHConfig's)."""

    hybrid_override_pattern: str
    vocab_size: int = 131072
    hidden_size: int = 4096
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 21504
    mlp_hidden_act: str = "relu2"
    mlp_bias: bool = False
    attention_bias: bool = False  # recorded only: HF's attention projections never carry a bias
    use_bias: bool = False  # Mamba in_proj / out_proj bias
    use_conv_bias: bool = True
    layer_norm_epsilon: float = 1e-5
    mamba_num_heads: int = 128
    mamba_head_dim: int = 64
    mamba_hidden_act: str = "silu"
    ssm_state_size: int = 128
    n_groups: int = 8
    conv_kernel: int = 4
    chunk_size: int = 128
    # HF clamps dt to [time_step_min, inf) in the chunked scan (prefill) and not at all in the
    # single-step update (decode); `time_step_limit` in config.json is not read by the model.
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = 0
    dtype: str = "float32"
    # Mixture of experts (pattern character E).
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 7688
    moe_shared_expert_intermediate_size: int = 7688
    moe_latent_size: int | None = None
    routed_scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True

    # --- derived figures -------------------------------------------------------------------
    @property
    def num_hidden_layers(self) -> int:
        return len(self.hybrid_override_pattern)

    @property
    def mamba_intermediate_size(self) -> int:
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def mamba_conv_dim(self) -> int:
        """Channels of the causal conv: x, B and C (gate z and dt bypass it)."""
        return self.mamba_intermediate_size + 2 * self.n_groups * self.ssm_state_size

    @property
    def mamba_in_proj_dim(self) -> int:
        """in_proj output, split as [z | xBC | dt]."""
        return self.mamba_intermediate_size + self.mamba_conv_dim + self.mamba_num_heads

    @property
    def moe_input_size(self) -> int:
        return self.moe_latent_size if self.moe_latent_size is not None else self.hidden_size

    def layer_kinds(self) -> tuple[str, ...]:
        return tuple(self.hybrid_override_pattern)


@dataclass(frozen=True)
class ModelSpec:
    """A model as Tessera compiles it: architecture, compile options, and where its files are."""

    config: ModelConfig
    compile: CompileOptions
    name: str
    source: str  # the path or repo id it was loaded from, for messages
    weights_dir: Path | None = None  # an HF checkpoint directory holding *.safetensors
    tokenizer_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The folder every file of the checkpoint must resolve inside, symlinks followed: weights_dir, or for a
    # Hub repo the repo's folder of the Hub cache, whose snapshot links point into its blobs/.
    root: Path | None = None


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

_CONFIG_FIELDS = {f.name: f for f in fields(ModelConfig)}
# HF config.json fields that Tessera reads under another name, or knows and does not need.
_HF_ALIASES = {
    "mamba_n_groups": "n_groups",
    "mamba_d_conv": "conv_kernel",
    "mamba_chunk_size": "chunk_size",
    "mamba_conv_bias": "use_conv_bias",
    "mamba_dt_min": "time_step_min",
    "mamba_dt_max": "time_step_max",
    "mamba_dt_init_floor": "time_step_floor",
    "torch_dtype": "dtype",
    "attention_head_dim": "head_dim",  # the remote-code NemotronH configs' name
    "num_local_experts": "n_routed_experts",
}
_HF_IGNORED = {
    "architectures",
    "attention_dropout",
    "auto_map",
    "expand",
    "hidden_dropout",
    "initializer_range",
    "layers_block_type",
    "layer_types",
    "model_type",
    "mtp_layers_block_type",
    "mtp_hybrid_override_pattern",
    "num_hidden_layers",
    "num_logits_to_keep",
    "num_nextn_predict_layers",
    "output_router_logits",
    "rescale_prenorm_residual",
    "residual_in_fp32",
    "sliding_window",
    "transformers_version",
    "use_cache",
    "use_mamba_kernels",
    "mamba_ssm_cache_dtype",
    "moe_shared_expert_overlap",
    "n_shared_experts",
    "time_step_limit",
    "mamba_dt_limit",
    "mamba_proj_bias",  # HF's mixer takes its in_proj/out_proj bias from use_bias, not from this
    "name_or_path",
    "_name_or_path",
    "rms_norm_eps",
    "mamba_expand",
    "tokenizer_class",
    "generation_config",
}


def field_error(source: str, field_name: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: field '{field_name}': {message}")


def _check_type(source: str, name: str, value: Any, expected: type | tuple[type, ...]) -> None:
    # bool is an int in Python; a YAML `true` where a size is expected is still a mistake.
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in _as_tuple(expected))
    if not ok:
        names = " or ".join(t.__name__ for t in _as_tuple(expected))
        raise field_error(source, name, f"expected {names}, got {value!r}")


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "hybrid_override_pattern": str,
    "mlp_hidden_act": str,
    "mamba_hidden_act": str,
    "dtype": str,
    "mlp_bias": bool,
    "attention_bias": bool,
    "use_bias": bool,
    "use_conv_bias": bool,
    "tie_word_embeddings": bool,
    "norm_topk_prob": bool,
    "layer_norm_epsilon": (float, int),
    "time_step_min": (float, int),
    "time_step_max": (float, int),
    "time_step_floor": (float, int),
    "routed_scaling_factor": (float, int),
    "bos_token_id": (int, type(None)),
    "pad_token_id": (int, type(None)),
    "eos_token_id": (int, list, type(None)),
    "moe_latent_size": (int, type(None)),
}


def _pattern_from_block_types(source: str, block_types: Any) -> str:
    if not isinstance(block_types, list) or not block_types:
        raise field_error(source, "layers_block_type", f"expected a non-empty list of layer kinds, got {block_types!r}")
    chars = []
    for i, kind in enumerate(block_types):
        char = (BLOCK_TYPE_TO_PATTERN.get(kind) or LEGACY_BLOCK_TYPES.get(kind)) if isinstance(kind, str) else None
        if char is None:
            known = ", ".join(sorted(BLOCK_TYPE_TO_PATTERN))
            raise field_error(source, f"layers_block_type[{i}]", f"unknown layer kind {kind!r} (known: {known})")
        chars.append(char)
    return "".join(chars)


def config_from_dict(raw: dict[str, Any], source: str, *, strict: bool) -> ModelConfig:
    """Build and validate a ModelConfig from HF-named fields.

    strict: reject unknown fields (model.yaml, where a typo must not pass silently); an HF
    config.json carries many fields Tessera does not need and is read leniently.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a map of config fields, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = _HF_ALIASES.get(key, key)
        if name in _CONFIG_FIELDS and name != "hybrid_override_pattern":
            values[name] = value
        elif key in _HF_IGNORED or key == "hybrid_override_pattern":
            continue
        elif strict:
            raise field_error(source, key, "unknown field (not a NemotronH config.json field)")

    # The layer pattern: either spelling; if both are given they must agree.
    pattern = raw.get("hybrid_override_pattern")
    block_types = raw.get("layers_block_type", raw.get("layer_types"))
    if pattern is not None:
        _check_type(source, "hybrid_override_pattern", pattern, str)
        if block_types is not None and _pattern_from_block_types(source, block_types) != pattern:
            raise field_error(source, "layers_block_type", "disagrees with hybrid_override_pattern")
    elif block_types is not None:
        pattern = _pattern_from_block_types(source, block_types)
    else:
        raise field_error(source, "hybrid_override_pattern", "missing (give it or layers_block_type)")
    if not pattern:
        raise field_error(source, "hybrid_override_pattern", "is empty: a model needs at least one layer")
    if len(pattern) > MAX_LAYERS:
        raise field_error(
            source, "hybrid_override_pattern", f"has {len(pattern)} layers, more than the {MAX_LAYERS} allowed"
        )
    for i, char in enumerate(pattern):
        if char not in PATTERN_TO_BLOCK_TYPE:
            raise field_error(
                source,
                "hybrid_override_pattern",
                f"unknown layer character {char!r} at position {i} (known: M, *, -, E)",
            )
    layers = raw.get("num_hidden_layers")
    if layers is not None:
        _check_type(source, "num_hidden_layers", layers, int)
    if layers is not None and layers != len(pattern):
        raise field_error(
            source,
            "num_hidden_layers",
            f"is {layers} but hybrid_override_pattern has {len(pattern)} layers",
        )
    if "dtype" in values and values["dtype"] is None:
        del values["dtype"]  # HF writes null for "not recorded": keep the default
    if "dtype" in values and not isinstance(values["dtype"], str):
        values["dtype"] = str(values["dtype"]).removeprefix("torch.")

    for name, value in values.items():
        _check_type(source, name, value, _FIELD_TYPES.get(name, int))
    _check_unread_fields(raw, source)
    config = ModelConfig(hybrid_override_pattern=pattern, **values)
    validate_config(config, source)
    return config


def _check_unread_fields(raw: dict[str, Any], source: str) -> None:
    """Fields Tessera does not read but that must still make sense, or the file is not a valid config."""
    for key in ("time_step_limit", "mamba_dt_limit"):
        # HF's (lower, upper) clamp of dt, default (0.0, inf): upper may be infinite, neither NaN.
        if raw.get(key) is None:
            continue
        limit = raw[key]
        if (
            not isinstance(limit, list | tuple)
            or len(limit) != 2
            or not all(_is_number(v) and not math.isnan(v) for v in limit)
            or not 0 <= limit[0] <= limit[1]
            or math.isinf(limit[0])
        ):
            raise field_error(
                source, key, f"expected [lower, upper] with 0 <= lower <= upper, lower finite, got {limit!r}"
            )
    value = raw.get("initializer_range")
    if value is not None and not (_is_number(value) and math.isfinite(value) and value >= 0):
        raise field_error(source, "initializer_range", f"must be a finite number >= 0, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_bounds(config: ModelConfig, source: str) -> None:
    """Every integer field within [0, MAX_INT32], every float field finite."""
    for f in fields(ModelConfig):
        value = getattr(config, f.name)
        if _is_number(value) and isinstance(value, int) and not 0 <= value <= MAX_INT32:
            raise field_error(source, f.name, f"must be in [0, {MAX_INT32}], got {value}")
        if isinstance(value, float) and not math.isfinite(value):
            raise field_error(source, f.name, f"must be a finite number, got {value}")


def _check_time_steps(config: ModelConfig, source: str) -> None:
    # HF draws dt_bias from log-uniform [time_step_min, time_step_max] and floors it at time_step_floor.
    if not config.time_step_min > 0:
        raise field_error(source, "time_step_min", f"must be positive, got {config.time_step_min}")
    if config.time_step_max < config.time_step_min:
        raise field_error(
            source, "time_step_max", f"{config.time_step_max} is below time_step_min {config.time_step_min}"
        )
    if config.time_step_floor < 0:
        raise field_error(source, "time_step_floor", f"must be >= 0, got {config.time_step_floor}")


def _check_token_ids(config: ModelConfig, source: str) -> None:
    """bos / pad: null or a token id; eos: null, a token id, or a non-empty list of them (as HF allows)."""
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(config, name)
        ids = value if isinstance(value, list) and name == "eos_token_id" else [value]
        if value is None:
            continue
        if not ids:
            raise field_error(source, name, "is an empty list (give null for none)")
        for token in ids:
            if not _is_number(token) or not isinstance(token, int) or not 0 <= token < config.vocab_size:
                raise field_error(source, name, f"token id {token!r} is not an integer in [0, {config.vocab_size})")


def _check_weight_bytes(config: ModelConfig, source: str) -> None:
    """Each weight tensor, and all of them together, must have a byte count that fits int64."""
    from tessera.model.weights_layout import TensorSpec, layer_tensors

    pattern = config.hybrid_override_pattern
    table = TensorSpec("embedding.weight", (config.vocab_size, config.hidden_size), ())
    total = 2 * table.numel + config.hidden_size  # embedding, lm_head, final_norm
    largest = table
    # Layers of one kind have the same tensors: size the first of each kind, count the rest.
    for kind in set(pattern):
        specs = layer_tensors(config, pattern.index(kind))
        largest = max([largest, *specs], key=lambda spec: spec.numel)
        total += pattern.count(kind) * sum(spec.numel for spec in specs)
    if largest.numel * MAX_WEIGHT_ITEMSIZE > MAX_INT64:
        raise ConfigError(
            f"{source}: tensor '{largest.name}' of shape {list(largest.shape)} is too large for int64 byte offsets"
        )
    if total * MAX_WEIGHT_ITEMSIZE > MAX_INT64:
        raise ConfigError(f"{source}: the model's {total} weights are too many for int64 byte counts")


def validate_config(config: ModelConfig, source: str) -> None:
    """Check every relation between fields that the model's shapes rely on."""
    _check_bounds(config, source)
    kinds = set(config.hybrid_override_pattern)
    positive = ["vocab_size", "hidden_size", "max_position_embeddings"]
    if "*" in kinds:
        positive += ["num_attention_heads", "num_key_value_heads", "head_dim"]
    if "-" in kinds:
        positive += ["intermediate_size"]
    if "M" in kinds:
        positive += ["mamba_num_heads", "mamba_head_dim", "ssm_state_size", "n_groups", "conv_kernel", "chunk_size"]
    if "E" in kinds:
        positive += [
            "n_routed_experts",
            "num_experts_per_tok",
            "moe_intermediate_size",
            "moe_shared_expert_intermediate_size",
            "n_group",
            "topk_group",
        ]
    for name in positive:
        if getattr(config, name) <= 0:
            raise field_error(source, name, f"must be positive, got {getattr(config, name)}")
    if config.layer_norm_epsilon <= 0 or not math.isfinite(config.layer_norm_epsilon):
        raise field_error(source, "layer_norm_epsilon", f"must be a positive number, got {config.layer_norm_epsilon}")
    if config.dtype not in KNOWN_DTYPES:
        raise field_error(source, "dtype", f"unsupported dtype {config.dtype!r} (known: {', '.join(KNOWN_DTYPES)})")
    if "*" in kinds and config.num_attention_heads % config.num_key_value_heads:
        raise field_error(
            source,
            "num_key_value_heads",
            f"{config.num_key_value_heads} does not divide num_attention_heads {config.num_attention_heads}",
        )
    if ("-" in kinds or "E" in kinds) and config.mlp_hidden_act != "relu2":
        raise field_error(source, "mlp_hidden_act", f"only relu2 is supported, got {config.mlp_hidden_act!r}")
    if "M" in kinds:
        if config.mamba_num_heads % config.n_groups:
            raise field_error(
                source, "n_groups", f"{config.n_groups} does not divide mamba_num_heads {config.mamba_num_heads}"
            )
        if config.mamba_hidden_act != "silu":
            raise field_error(source, "mamba_hidden_act", f"only silu is supported, got {config.mamba_hidden_act!r}")
    if "E" in kinds:
        if config.num_experts_per_tok > config.n_routed_experts:
            raise field_error(
                source,
                "num_experts_per_tok",
                f"{config.num_experts_per_tok} exceeds n_routed_experts {config.n_routed_experts}",
            )
        if config.n_routed_experts % config.n_group:
            raise field_error(
                source, "n_group", f"{config.n_group} does not divide n_routed_experts {config.n_routed_experts}"
            )
        if config.topk_group > config.n_group:
            raise field_error(source, "topk_group", f"{config.topk_group} exceeds n_group {config.n_group}")
        if config.moe_latent_size is not None and config.moe_latent_size <= 0:
            raise field_error(source, "moe_latent_size", f"must be positive, got {config.moe_latent_size}")
    _check_time_steps(config, source)
    _check_token_ids(config, source)
    _check_weight_bytes(config, source)


def compile_options_from_dict(raw: Any, source: str, config: ModelConfig) -> CompileOptions:
    defaults = CompileOptions(
        dtype=config.dtype, max_seq_len=config.max_position_embeddings, chunk_size=config.chunk_size
    )
    if raw is None:
        check_compile_options(defaults, source, config)
        return defaults
    if not isinstance(raw, dict):
        raise field_error(source, "compile", f"expected a mapping, got {raw!r}")
    known = {f.name for f in fields(CompileOptions)}
    for key in raw:
        if key not in known:
            raise field_error(source, f"compile.{key}", f"unknown field (known: {', '.join(sorted(known))})")
    options = replace(defaults, **{k: v for k, v in raw.items() if k != "targets"})
    if "targets" in raw:
        targets = raw["targets"]
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets:
            raise field_error(source, "compile.targets", f"expected a non-empty list, got {targets!r}")
        options = replace(options, targets=tuple(targets))
    check_compile_options(options, source, config)
    return options


def check_compile_options(options: CompileOptions, source: str, config: ModelConfig) -> None:
    """Every compile option of its kind and within the bounds the IR and the runtime need."""
    for target in options.targets:
        if target not in KNOWN_TARGETS:
            raise field_error(
                source, "compile.targets", f"unknown target {target!r} (known: {', '.join(KNOWN_TARGETS)})"
            )
    if options.dtype not in KNOWN_DTYPES:
        raise field_error(source, "compile.dtype", f"unsupported dtype {options.dtype!r}")
    if options.precision not in (None, "fp32", "bf16"):
        raise field_error(source, "compile.precision", f"must be fp32 or bf16, got {options.precision!r}")
    for name in ("ssm_state_dtype", "kv_cache_dtype"):
        if getattr(options, name) not in ("float32", "bfloat16"):
            raise field_error(source, f"compile.{name}", f"must be float32 or bfloat16, got {getattr(options, name)!r}")
    if options.arch is not None and not isinstance(options.arch, str):
        raise field_error(source, "compile.arch", f"expected a GPU name such as gfx942, got {options.arch!r}")
    for name in ("max_seq_len", "batch", "chunk_size"):
        value = getattr(options, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise field_error(source, f"compile.{name}", f"must be a positive integer, got {value!r}")
        if value > MAX_INT32:
            raise field_error(source, f"compile.{name}", f"must be at most {MAX_INT32}, got {value}")
    _check_state_bytes(options, source, config)


def _check_state_bytes(options: CompileOptions, source: str, config: ModelConfig) -> None:
    """The decode state of a batch (KV caches of max_seq_len positions, Mamba states) must fit int64 bytes."""
    from tessera.model.sizes import state_figures

    # float32 is the widest state dtype: an upper bound whatever ssm_state_dtype / kv_cache_dtype say.
    figures = state_figures(config, ssm_dtype="float32", activation_dtype="float32")
    per_sequence = (
        figures.ssm_state_bytes + figures.conv_state_bytes + figures.kv_cache_bytes_per_token * options.max_seq_len
    )
    if per_sequence * options.batch > MAX_INT64:
        raise field_error(
            source,
            "compile.max_seq_len",
            f"the decode state of {options.batch} x {options.max_seq_len} positions is "
            f"{per_sequence * options.batch} bytes, too many for int64",
        )


def hf_config_dict(config: ModelConfig) -> dict[str, Any]:
    """The config as HF config.json fields (what `NemotronHConfig(**d)` accepts)."""
    out = {f.name: getattr(config, f.name) for f in fields(ModelConfig)}
    out["model_type"] = "nemotron_h"
    out["architectures"] = ["NemotronHForCausalLM"]
    out["num_hidden_layers"] = config.num_hidden_layers
    return out
