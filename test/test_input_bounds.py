"""Hostile numbers: every numeric CLI option, config field, config relation and pass option is bounded, and a
float weight relabelled as an integer dtype is refused; each ends in one line naming the option, field or
tensor, never a traceback."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import NEEDS_MLIR, assert_one_line_error, make_hf_checkpoint, run_tool

from tessera.frontend.config import load_model
from tessera.frontend.graph_builder import build_graph
from tessera.lowering.convert_graph_to_schedule import ScheduleConversionError, convert_graph_to_schedule
from tessera.model.checkpoint import CheckpointError, load_weights
from tessera.model.config import ConfigError, config_from_dict
from tessera.runtime.sampling import SamplingError, SamplingOptions
from tessera.tools.tessera_convert import parse_size

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "nemotron_h_tiny.yaml"
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _write_yaml(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data.update(changes)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --- model.yaml fields and their relations ---------------------------------------------------------------

# K and V caches of 2^10 heads x 2^21 x 4 bytes = 2^33 bytes a position each: at 2^31 - 1 positions either
# alone overflows int64.
HUGE_KV = {"num_attention_heads": 1024, "num_key_value_heads": 1024, "head_dim": 2**21}


@pytest.mark.parametrize(
    ("changes", "field", "phrase"),
    [
        ({"hidden_size": INT32_MAX + 1}, "hidden_size", f"[0, {INT32_MAX}]"),
        ({"vocab_size": -3}, "vocab_size", f"[0, {INT32_MAX}]"),
        ({"hidden_size": True}, "hidden_size", "expected int"),
        ({"hidden_size": 64.0}, "hidden_size", "expected int"),
        ({"max_position_embeddings": 0}, "max_position_embeddings", "must be positive"),
        ({"num_hidden_layers": True}, "num_hidden_layers", "expected int"),
        ({"layer_norm_epsilon": float("nan")}, "layer_norm_epsilon", "finite"),
        ({"layer_norm_epsilon": 0}, "layer_norm_epsilon", "positive"),
        ({"routed_scaling_factor": float("inf")}, "routed_scaling_factor", "finite"),
        ({"routed_scaling_factor": float("nan")}, "routed_scaling_factor", "finite"),
        ({"time_step_min": 0.2, "time_step_max": 0.1}, "time_step_max", "below time_step_min 0.2"),
        ({"time_step_min": 0.0}, "time_step_min", "must be positive"),
        ({"time_step_min": -1e-3}, "time_step_min", "must be positive"),
        ({"time_step_max": float("inf")}, "time_step_max", "finite"),
        ({"time_step_floor": -1e-4}, "time_step_floor", ">= 0"),
        ({"time_step_limit": [0.5, 0.1]}, "time_step_limit", "lower <= upper"),
        ({"time_step_limit": [float("nan"), 1.0]}, "time_step_limit", "lower <= upper"),
        ({"time_step_limit": "wide"}, "time_step_limit", "lower <= upper"),
        ({"initializer_range": float("inf")}, "initializer_range", "finite"),
        ({"eos_token_id": 301}, "eos_token_id", "not an integer in [0, 301)"),
        ({"eos_token_id": [2, -1]}, "eos_token_id", "-1"),
        ({"eos_token_id": [2, True]}, "eos_token_id", "True"),
        ({"eos_token_id": []}, "eos_token_id", "empty list"),
        ({"eos_token_id": "2"}, "eos_token_id", "expected int or list"),
        ({"bos_token_id": 1000}, "bos_token_id", "[0, 301)"),
        ({"pad_token_id": -1}, "pad_token_id", "got -1"),
        ({"pad_token_id": [0]}, "pad_token_id", "expected int"),
        ({"moe_latent_size": 0}, "moe_latent_size", "must be positive"),
        ({"compile": {"max_seq_len": INT32_MAX + 1}}, "compile.max_seq_len", f"at most {INT32_MAX}"),
        ({"compile": {"max_seq_len": -5}}, "compile.max_seq_len", "positive integer"),
        ({"compile": {"batch": True}}, "compile.batch", "positive integer"),
        ({"compile": {"chunk_size": 0}}, "compile.chunk_size", "positive integer"),
        ({"compile": {"chunk_size": 16.5}}, "compile.chunk_size", "positive integer"),
        ({**HUGE_KV, "compile": {"max_seq_len": INT32_MAX}}, "compile.max_seq_len", "too many for int64"),
    ],
)
def test_yaml_numbers_are_bounded(tmp_path: Path, changes: dict[str, object], field: str, phrase: str) -> None:
    message = _config_error(_write_yaml(tmp_path, **changes))
    assert f"field '{field}'" in message, message
    assert phrase in message, message


def test_weights_too_large_for_int64_name_the_tensor(tmp_path: Path) -> None:
    # 2^31 - 1 squared elements of 8 bytes: more than int64 byte offsets reach.
    message = _config_error(_write_yaml(tmp_path, vocab_size=INT32_MAX, hidden_size=INT32_MAX))
    assert "tensor 'embedding.weight'" in message and "int64" in message


def test_nulls_and_lists_of_token_ids_that_hf_allows(tmp_path: Path) -> None:
    config = load_model(_write_yaml(tmp_path, eos_token_id=[2, 11], bos_token_id=None, pad_token_id=None)).config
    assert (config.eos_token_id, config.bos_token_id, config.pad_token_id) == ([2, 11], None, None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"time_step_limit": [0.0, 1.0, 2.0]}, "time_step_limit"),
        ({"mamba_dt_limit": [-1.0, 1.0]}, "mamba_dt_limit"),
        ({"initializer_range": "0.02"}, "initializer_range"),
        ({"layers_block_type": [["mamba"]]}, "layers_block_type[0]"),
        ({"eos_token_id": [2, 4.0]}, "eos_token_id"),
    ],
)
def test_hf_config_numbers_are_bounded(tmp_path: Path, changes: dict[str, object], field: str) -> None:
    config = {"hybrid_override_pattern": "M*", "vocab_size": 101, "hidden_size": 32, "num_attention_heads": 4}
    config |= {"num_key_value_heads": 2, "mamba_num_heads": 4, "n_groups": 2, **changes}
    if "layers_block_type" in changes:
        del config["hybrid_override_pattern"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    message = _config_error(tmp_path / "config.json")
    assert f"field '{field}'" in message, message


def test_hf_default_time_step_limit_is_accepted(tmp_path: Path) -> None:
    config = {"hybrid_override_pattern": "M", "vocab_size": 101, "hidden_size": 32, "mamba_num_heads": 4}
    config |= {"n_groups": 2, "time_step_limit": [0.0, {"__float__": "Infinity"}], "initializer_range": 0.02}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert load_model(tmp_path).config.hybrid_override_pattern == "M"


# --- command-line options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--seed", "-1"], "'--seed'"),
        (["--seed", str(INT64_MAX + 1)], "'--seed'"),
        (["--max-seq-len", "0"], "'--max-seq-len'"),
        (["--max-seq-len", str(2**63)], "'--max-seq-len'"),
        (["--max-seq-len", "nan"], "'--max-seq-len'"),
        (["--batch", "0"], "'--batch'"),
        (["--batch", "1" * 5000], "'--batch'"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_compile_options_are_bounded(tmp_path: Path, args: list[str], phrase: str) -> None:
    result = run_tool("tessera_compile", TINY, "-o", tmp_path / "out", "-q", *args, ok=False)
    assert_one_line_error(result, "tessera-compile: error:", phrase)
    assert not (tmp_path / "out").exists()


def test_compile_override_is_checked_against_the_model(tmp_path: Path) -> None:
    path = _write_yaml(tmp_path, **HUGE_KV)
    result = run_tool("tessera_compile", path, "--emit=graph", "--max-seq-len", INT32_MAX, ok=False)
    assert_one_line_error(result, str(path), "--max-seq-len", "compile.max_seq_len", "int64")


@pytest.fixture(scope="module")
def reference_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "tiny"
    run_tool("tessera_compile", TINY, "--target", "reference", "-o", out, "-q")
    return out


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--seed", "-1"], "'--seed'"),
        (["--seed", str(2**64)], "'--seed'"),
        (["--temperature", "nan"], "'--temperature'"),
        (["--temperature", "inf"], "'--temperature'"),
        (["--temperature", "-0.5"], "'--temperature'"),
        (["--temperature", "1e-300"], "temperature must be 0 (greedy) or a finite number"),
        (["--top-p", "nan"], "'--top-p'"),
        (["--top-p", "0"], "'--top-p'"),
        (["--top-p", "1.5"], "'--top-p'"),
        (["--top-k", "-1"], "'--top-k'"),
        (["--top-k", str(INT32_MAX + 1)], "'--top-k'"),
        (["--max-new-tokens", "-1"], "'--max-new-tokens'"),
        (["--max-new-tokens", str(2**63)], "'--max-new-tokens'"),
    ],
)
def test_run_options_are_bounded(reference_artifact: Path, args: list[str], phrase: str) -> None:
    result = run_tool("tessera_run", reference_artifact, "--input-ids", "1,2,3", *args, ok=False)
    assert_one_line_error(result, "tessera-run: error:", phrase)


@NEEDS_MLIR
def test_run_refuses_more_tokens_than_the_kv_cache_holds(tmp_path: Path) -> None:
    out = tmp_path / "x86"
    run_tool("tessera_compile", TINY, "--target", "x86", "--max-seq-len", 8, "-o", out, "-q")
    # 3 prompt tokens + 6 new ones: the last new token is never fed back, so 8 positions suffice.
    run_tool("tessera_run", out, "--input-ids", "1,2,3", "--max-new-tokens", 6)
    too_many = run_tool("tessera_run", out, "--input-ids", "1,2,3", "--max-new-tokens", 7, ok=False)
    assert_one_line_error(too_many, "--max-new-tokens", "reach 9 tokens", "compiled maximum of 8", "at most 6")
    long_prompt = run_tool("tessera_run", out, "--input-ids", ",".join(["1"] * 9), "--max-new-tokens", 0, ok=False)
    assert_one_line_error(long_prompt, "prompt of 9 tokens", "compiled maximum of 8")


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"temperature": 1e-300}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"seed": -1}, "seed"),
    ],
)
def test_sampling_options_are_bounded(options: dict[str, float], phrase: str) -> None:
    with pytest.raises(SamplingError, match=phrase):
        SamplingOptions(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GB", 2 * 10**9), ("500MiB", 500 * 2**20), ("1.5 GB", 1_500_000_000), (".5KB", 500), ("4096", 4096)],
)
def test_shard_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("size", "phrase"),
    [
        ("inf", "not a size"),
        ("nan", "not a size"),
        ("-1GB", "not a size"),
        ("1e9", "not a size"),
        ("0", "at least 1 byte"),
        ("0.1", "at least 1 byte"),
        ("9" * 5000, "not a size"),
        ("99999999999999999999TiB", "more than"),
        ("2 parsecs", "not a size"),
    ],
)
def test_convert_shard_size_is_bounded(tmp_path: Path, size: str, phrase: str) -> None:
    # Refused before the source is read: no checkpoint needed.
    result = run_tool("tessera_convert", tmp_path / "nowhere", "-o", tmp_path / "out", "--shard-size", size, ok=False)
    assert_one_line_error(result, "tessera-convert: error: --shard-size", phrase)


# --- pass options and tessera-opt inputs ------------------------------------------------------------------


def test_state_bytes_are_checked_by_the_conversion() -> None:
    config = config_from_dict({**yaml.safe_load(TINY.read_text()), **HUGE_KV}, "huge", strict=False)
    graph = build_graph(config)
    with pytest.raises(ScheduleConversionError, match=r"k_cache of shape .* beyond int64"):
        convert_graph_to_schedule(graph, max_seq_len=INT32_MAX)


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda path: path.write_bytes(b"\xff\xfe\x00 func.func"), "not UTF-8 text (byte 0xff at offset 0)"),
        (lambda path: path.write_text("builtin.module {" * 5000 + "}" * 5000), "nested too deeply"),
        (lambda path: path.write_text("func.func @f() -> " + "tensor<" * 3000 + "f32" + ">" * 3000), "nested too"),
        (lambda path: path.write_text('"test.op"() {a = ' + "[" * 100000 + "]" * 100000 + "} : () -> ()"), "nested"),
        (lambda path: path.write_text('"test.op"() {a = 1' + "0" * 5000 + "} : () -> ()"), "digits"),
        (lambda path: path.write_text("func.func @f( {"), "Expected argument or type"),
    ],
    ids=["utf8", "regions", "types", "attributes", "digits", "truncated"],
)
def test_opt_refuses_malformed_input_in_one_line(tmp_path: Path, make, phrase: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.mlir"
    make(path)
    result = run_tool("tessera_opt", path, "--allow-unregistered-dialect", ok=False)
    assert_one_line_error(result, "tessera-opt: error:", "bad.mlir", phrase)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["-p", "convert-tessera-graph-to-schedule{max-seq-len=-5}"], "option 'max-seq-len' must be an integer"),
        (["-p", "convert-tessera-graph-to-schedule{chunk-size=0}"], "option 'chunk-size' must be an integer"),
        (["-p", "convert-tessera-graph-to-schedule{chunk-size=1.5}"], "option 'chunk-size' expects"),
        (["-p", "convert-tessera-graph-to-schedule{kv-cache-dtype=f8}"], "option 'kv-cache-dtype' must be one of"),
        (["-p", "tessera-schedule-plan-buffers{{"], "column"),
        (["-p", "no-such-pass"], "unknown pass 'no-such-pass'"),
        (["-t", "x86-mlir{"], "-t: column"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_opt_refuses_malformed_pipelines_in_one_line(args: list[str], phrase: str) -> None:
    result = run_tool("tessera_opt", ROOT / "graph_examples" / "hybrid.mlir", *args, ok=False)
    assert_one_line_error(result, "tessera-opt: error:", phrase)


# --- wrong-typed weights ----------------------------------------------------------------------------------

RELABELLED = "backbone.layers.1.mixer.k_proj.weight"


def _relabel(path: Path, tensor: str, dtype: str) -> None:
    """Give one tensor of a safetensors file another dtype of the same item size, bytes unchanged."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header[tensor]["dtype"] = dtype
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])


def _convert(*args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool("tessera_convert", *args, "--no-progress", ok=ok)


@pytest.mark.parametrize(("stored", "label"), [("float32", "I32"), ("bfloat16", "I16")])
def test_convert_refuses_a_float_relabelled_as_integer(tmp_path: Path, seed: int, stored: str, label: str) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf", seed, dtype=stored)
    _relabel(hf / "model.safetensors", RELABELLED, label)
    result = _convert(hf, "-o", tmp_path / "out", ok=False)
    assert_one_line_error(result, "model.safetensors", RELABELLED, f"dtype {label}", "not a float dtype")
    assert not (tmp_path / "out").exists()


def test_load_refuses_a_float_relabelled_as_integer(tmp_path: Path, seed: int) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf", seed)
    out = tmp_path / "tessera"
    _convert(hf, "-o", out)
    shard = next(out.glob("weights-*.safetensors"))
    _relabel(shard, "layers.1.attn_gqa.k_proj.weight", "I32")
    # The shard's size and hash would catch this edit; a manifest written for the relabelled shard would not.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["bytes"] = shard.stat().st_size
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"tensor 'layers.1.attn_gqa.k_proj.weight' has dtype I32") as info:
        load_weights(out, verify=False)
    assert shard.name in str(info.value)
