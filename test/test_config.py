"""The config loader: family YAMLs, HF config.json forms, Hub ids, and one clear error per bad field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tessera.frontend.config import load_model
from tessera.frontend.model_specs import FAMILY, render
from tessera.model.config import ConfigError
from tessera.model.sizes import state_figures
from tessera.model.weights_layout import param_count

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "nemotron_h_tiny.yaml"


def _write_yaml(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(TINY.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", FAMILY)
def test_family_configs_load(name: str) -> None:
    spec = load_model(ROOT / "configs" / f"{name}.yaml")
    assert spec.config.num_hidden_layers == len(spec.config.hybrid_override_pattern)
    assert spec.compile.chunk_size == 128


def test_family_figures_match_family_md() -> None:
    # ../shared/FAMILY.md: layer counts by kind, and Nano-3's 31.6B total / ~3.5B active parameters.
    expected = {
        "nemotron_h_4b": (24, 4, 24, 0),
        "nemotron_h_8b": (24, 4, 24, 0),
        "nemotron_h_47b": (45, 5, 48, 0),
        "nemotron_h_56b": (54, 10, 54, 0),
        "nemotron_nano_9b_v2_base": (27, 4, 25, 0),
        "nemotron_nano_12b_v2_base": (28, 6, 28, 0),
        "nemotron_3_nano_30b_a3b": (23, 6, 0, 23),
    }
    for name, counts in expected.items():
        pattern = load_model(ROOT / "configs" / f"{name}.yaml").config.hybrid_override_pattern
        assert tuple(pattern.count(k) for k in "M*-E") == counts, name
    nano12 = load_model(ROOT / "configs" / "nemotron_nano_12b_v2_base.yaml").config
    assert 12.0e9 < param_count(nano12) < 12.6e9
    # 28 Mamba layers x 128 heads x 80 x 128 state x 4 bytes; 6 attention layers x 2 x 8 x 128 x 2 bytes.
    figures = state_figures(nano12)
    assert figures.ssm_state_bytes == 28 * 128 * 80 * 128 * 4
    assert figures.kv_cache_bytes_per_token == 6 * 2 * 8 * 128 * 2


def test_model_specs_md_is_current() -> None:
    assert (ROOT / "MODEL_SPECS.md").read_text() == render(), (
        "MODEL_SPECS.md is stale: python -m tessera.frontend.model_specs > MODEL_SPECS.md"
    )


def test_hf_directory_with_layers_block_type(tmp_path: Path) -> None:
    # The form save_pretrained writes: layers_block_type, no num_hidden_layers, infinity as an object.
    config = {
        "model_type": "nemotron_h",
        "layers_block_type": ["linear_attention", "full_attention", "mlp", "moe"],
        "vocab_size": 101,
        "hidden_size": 32,
        "time_step_limit": [0.0, {"__float__": "Infinity"}],
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "mamba_num_heads": 4,
        "n_groups": 2,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = load_model(tmp_path)
    assert spec.config.hybrid_override_pattern == "M*-E"
    assert spec.weights_dir is None
    assert spec.compile.max_seq_len == spec.config.max_position_embeddings


def test_hf_directory_with_pattern_and_legacy_aliases(tmp_path: Path) -> None:
    # The remote-code NemotronH config.json (trust_remote_code era) spells some fields differently.
    config = {
        "hybrid_override_pattern": "M-M*",
        "num_hidden_layers": 4,
        "mamba_n_groups": 4,
        "mamba_d_conv": 3,
        "attention_head_dim": 64,
        "torch_dtype": "bfloat16",
        "auto_map": {"AutoConfig": "configuration_nemotron_h.NemotronHConfig"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = load_model(tmp_path / "config.json")
    c = spec.config
    assert (c.n_groups, c.conv_kernel, c.head_dim, c.dtype) == (4, 3, 64, "bfloat16")


def _error(source: Path | str) -> str:
    with pytest.raises(ConfigError) as info:
        load_model(source)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("changes", "field", "phrase"),
    [
        ({"num_hidden_layers": 9}, "num_hidden_layers", "has 7 layers"),
        ({"hybrid_override_pattern": "M-X"}, "hybrid_override_pattern", "unknown layer character 'X'"),
        ({"hybrid_override_pattern": None}, "hybrid_override_pattern", "missing"),
        ({"num_key_value_heads": 3}, "num_key_value_heads", "does not divide"),
        ({"n_groups": 3}, "n_groups", "does not divide"),
        ({"num_experts_per_tok": 9}, "num_experts_per_tok", "exceeds"),
        ({"hidden_size": 0}, "hidden_size", "must be positive"),
        ({"hidden_size": "big"}, "hidden_size", "expected int"),
        ({"hidden_sise": 64}, "hidden_sise", "unknown field"),
        ({"mlp_hidden_act": "gelu"}, "mlp_hidden_act", "only relu2"),
        ({"compile": {"targets": ["tpu"]}}, "compile.targets", "unknown target"),
        ({"compile": {"batch": 0}}, "compile.batch", "positive integer"),
        ({"compile": {"chunksize": 8}}, "compile.chunksize", "unknown field"),
        ({"weights": "no/such/dir"}, "weights", "no such directory"),
    ],
)
def test_yaml_errors_name_the_field(tmp_path: Path, changes: dict, field: str, phrase: str) -> None:
    path = _write_yaml(tmp_path, **changes)
    message = _error(path)
    assert str(path) in message
    assert f"'{field}'" in message
    assert phrase in message


def test_unknown_layer_kind_in_hf_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"layers_block_type": ["linear_attention", "conv"]}))
    assert "unknown layer kind 'conv'" in _error(tmp_path)


def test_pattern_and_block_types_disagree(tmp_path: Path) -> None:
    config = {"hybrid_override_pattern": "M*", "layers_block_type": ["mlp", "full_attention"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert "disagrees" in _error(tmp_path)


def test_malformed_files(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("vocab_size: [1, 2\n")
    assert "invalid YAML" in _error(bad_yaml)
    (tmp_path / "config.json").write_text("{not json")
    assert "invalid JSON" in _error(tmp_path)
    assert "no such file or directory" in _error(tmp_path / "missing.yaml")
    assert "no config.json" in _error(tmp_path / "..")


def test_hub_repo_id_from_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Hub cache laid out as huggingface_hub writes it, read offline.
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-nemotron" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"hybrid_override_pattern": "M-*", "vocab_size": 64}))
    refs = cache / "models--acme--tiny-nemotron" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    spec = load_model("acme/tiny-nemotron")
    assert spec.config.vocab_size == 64
    assert spec.source == "acme/tiny-nemotron"
    assert "not in the local Hugging Face cache" in _error("acme/not-cached")
