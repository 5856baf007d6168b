"""tessera-convert: HF -> Tessera -> HF byte for byte, and one clear line for every broken checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_HF_CONFIG, assert_one_line_error, make_hf_checkpoint, run_tool, safetensors_files

from tessera.frontend.config import load_model
from tessera.model.checkpoint import load_weights, read_manifest
from tessera.model.config import config_from_dict
from tessera.model.safetensors_io import SafetensorsFile, to_float32
from tessera.model.weight_init import random_weights
from tessera.model.weights_layout import model_tensors, param_count

torch = pytest.importorskip("torch", reason="checkpoints are made with transformers (pip install -e '.[test]')")
transformers = pytest.importorskip("transformers", reason="checkpoints are made with transformers")


def convert(*args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool("tessera_convert", *args, "--no-progress", ok=ok)


def hf_state(path: Path) -> dict[str, Any]:  # torch tensors
    from safetensors import safe_open

    state = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            state.update({name: handle.get_tensor(name) for name in handle.keys()})
    return state


def assert_nothing_written(tmp_path: Path, *kept: str) -> None:
    """Only the inputs are left: no output directory, no hidden staging directory."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


# --- round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_sharded_round_trip_is_byte_identical(tmp_path: Path, seed: int, dtype: str) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf", seed, dtype=dtype, shard="20KB", randomize=True)
    assert (hf / "model.safetensors.index.json").is_file() and len(safetensors_files(hf)) > 2
    convert(hf, "-o", tmp_path / "tessera", "--shard-size", "16KiB")
    manifest = read_manifest(tmp_path / "tessera")
    assert len(manifest["shards"]) > 1
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    stored = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[dtype]
    assert {t["dtype"] for t in manifest["tensors"].values()} == {stored}  # kept, never converted
    convert("--export", tmp_path / "tessera", "-o", tmp_path / "back")
    back = tmp_path / "back"
    assert safetensors_files(back) == safetensors_files(hf)
    for name in ("model.safetensors.index.json", "config.json", "generation_config.json"):
        assert (back / name).read_bytes() == (hf / name).read_bytes(), name


@pytest.mark.parametrize(
    "overrides",
    [
        dict(pattern="*E-M", moe_latent_size=16, use_bias=True, mlp_bias=True),
        dict(pattern="MM", use_conv_bias=False, n_groups=4),
        dict(pattern="EE", n_group=2, topk_group=1),
    ],
    ids=["latent-moe-biases", "mamba-only", "grouped-moe"],
)
def test_single_file_round_trip_other_layouts(tmp_path: Path, seed: int, overrides: dict[str, object]) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf", seed, randomize=True, **overrides)
    convert(hf, "-o", tmp_path / "tessera")
    convert("--export", tmp_path / "tessera", "-o", tmp_path / "back")
    assert safetensors_files(tmp_path / "back") == safetensors_files(hf)


def test_export_keeps_a_header_written_by_another_writer(tmp_path: Path, seed: int) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf", seed, randomize=True)
    # Spaced JSON, tensors listed in reverse: not how the safetensors library writes, still valid.
    _with_header(hf / "model.safetensors", lambda h: None, reverse=True)
    convert(hf, "-o", tmp_path / "tessera")
    convert("--export", tmp_path / "tessera", "-o", tmp_path / "back")
    assert safetensors_files(tmp_path / "back") == safetensors_files(hf)


def test_weights_equal_the_hf_parameters(tmp_path: Path, seed: int) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf", seed, dtype="bfloat16", randomize=True)
    convert(hf, "-o", tmp_path / "tessera")
    weights = load_weights(tmp_path / "tessera")
    model = transformers.NemotronHForCausalLM.from_pretrained(hf, dtype=torch.bfloat16)
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(
        weights["layers.3.moe.experts.up_proj"], state["model.layers.3.mixer.experts.up_proj"]
    )
    np.testing.assert_array_equal(
        weights["layers.0.mamba2_mixer.conv1d.weight"], state["model.layers.0.mixer.conv1d.weight"][:, 0]
    )
    np.testing.assert_array_equal(weights["lm_head.weight"], state["lm_head.weight"])
    assert list(weights) == [s.name for s in model_tensors(load_model(hf).config)]
    assert all(w.dtype == np.float32 for w in weights.values())
    assert param_count(load_model(hf).config) == sum(p.numel() for p in model.parameters())

    raw = load_weights(tmp_path / "tessera", dtype=None)
    assert raw["embedding.weight"].dtype == np.uint16  # bf16 bits, memory-mapped
    np.testing.assert_array_equal(to_float32(raw["embedding.weight"], "BF16"), weights["embedding.weight"])
    wide = load_weights(tmp_path / "tessera", dtype=np.float64, verify=False)
    assert wide["final_norm.weight"].dtype == np.float64


def test_tessera_shards_are_read_by_the_safetensors_library(tmp_path: Path, seed: int) -> None:
    from safetensors import safe_open

    hf = make_hf_checkpoint(tmp_path / "hf", seed, dtype="bfloat16", randomize=True)
    convert(hf, "-o", tmp_path / "tessera", "--shard-size", "10KB")
    weights = load_weights(tmp_path / "tessera")
    seen = set()
    for shard in sorted((tmp_path / "tessera").glob("weights-*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            assert handle.metadata() == {"format": "tessera"}
            for name in handle.keys():
                np.testing.assert_array_equal(handle.get_tensor(name).float().numpy(), weights[name])
                seen.add(name)
    assert seen == set(weights)


def test_model_prefix_and_mtp_tensors_are_left_out(tmp_path: Path, seed: int) -> None:
    from safetensors.numpy import load_file, save_file

    hf = make_hf_checkpoint(tmp_path / "hf", seed, randomize=True)
    original = load_file(str(hf / "model.safetensors"))
    renamed = {k.replace("backbone.", "model.", 1): v for k, v in original.items()}
    save_file({**renamed, "mtp.layers.0.norm.weight": np.ones(32, np.float32)}, str(hf / "model.safetensors"))
    result = convert(hf, "-o", tmp_path / "tessera")
    assert "left out 1 tensor" in result.stderr and "mtp.layers.0.norm.weight" in result.stderr
    manifest = read_manifest(tmp_path / "tessera")
    assert manifest["hf"]["prefix"] == "model." and manifest["hf"]["ignored"] == ["mtp.layers.0.norm.weight"]
    convert("--export", tmp_path / "tessera", "-o", tmp_path / "back")
    back = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(back) == set(renamed)
    for name, value in renamed.items():
        assert back[name].tobytes() == value.tobytes(), name


def test_sharded_checkpoint_with_an_mtp_file_exports_a_consistent_index(tmp_path: Path, seed: int) -> None:
    from safetensors.numpy import save_file

    hf = make_hf_checkpoint(tmp_path / "hf", seed, shard="20KB")
    index_path = hf / "model.safetensors.index.json"
    original_index = index_path.read_bytes()
    index = json.loads(original_index)
    save_file({"mtp.layers.0.norm.weight": np.ones(32, np.float32)}, str(hf / "mtp.safetensors"))
    index["weight_map"]["mtp.layers.0.norm.weight"] = "mtp.safetensors"
    index_path.write_text(json.dumps(index))
    convert(hf, "-o", tmp_path / "tessera")
    convert("--export", tmp_path / "tessera", "-o", tmp_path / "back")
    assert not (tmp_path / "back" / "mtp.safetensors").exists()
    # The rewritten index is what save_pretrained wrote for the model without the mtp file.
    assert (tmp_path / "back" / "model.safetensors.index.json").read_bytes() == original_index


def test_tied_embeddings_without_a_stored_lm_head(tmp_path: Path, seed: int) -> None:
    from safetensors.numpy import load_file, save_file

    hf = make_hf_checkpoint(tmp_path / "hf", seed, tie_word_embeddings=True, randomize=True)
    tensors = load_file(str(hf / "model.safetensors"))
    del tensors["lm_head.weight"]  # as a checkpoint that relies on tying stores it
    save_file(tensors, str(hf / "model.safetensors"), metadata={"format": "pt"})
    convert(hf, "-o", tmp_path / "tessera")
    weights = load_weights(tmp_path / "tessera")
    np.testing.assert_array_equal(weights["lm_head.weight"], weights["embedding.weight"])
    assert read_manifest(tmp_path / "tessera")["hf"]["lm_head_stored"] is False
    convert("--export", tmp_path / "tessera", "-o", tmp_path / "back")
    assert safetensors_files(tmp_path / "back") == safetensors_files(hf)


def test_untied_checkpoint_without_lm_head_is_refused(hf: Path, tmp_path: Path) -> None:
    _rewrite(hf / "model.safetensors", lambda t: t.pop("lm_head.weight"))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "'lm_head.weight'", "missing")
    assert_nothing_written(tmp_path, "hf")


def test_progress_bar_stays_off_the_log_when_not_a_terminal(hf: Path, tmp_path: Path) -> None:
    result = run_tool("tessera_convert", hf, "-o", tmp_path / "out")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert result.stderr.splitlines() == [
        f"wrote {tmp_path / 'out'}: {len(load_weights(tmp_path / 'out'))} tensors in 1 shard(s)"
    ]


# --- random weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["M-M-", "**E", "M"])
def test_param_count_equals_hf(pattern: str) -> None:
    config = transformers.NemotronHConfig(
        **{**TINY_HF_CONFIG, "hybrid_override_pattern": pattern, "moe_latent_size": 16}
    )
    model = transformers.NemotronHForCausalLM(config)
    ours = config_from_dict(config.to_dict(), "hf", strict=False)
    assert param_count(ours) == sum(p.numel() for p in model.parameters())


def test_random_weights_are_initialised_like_hf(seed: int) -> None:
    config = config_from_dict({**TINY_HF_CONFIG, "hidden_size": 256, "vocab_size": 400}, "test", strict=False)
    weights = random_weights(config, seed=seed)
    assert {s.name: s.shape for s in model_tensors(config)} == {k: v.shape for k, v in weights.items()}
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in weights.values())
    np.testing.assert_array_equal(weights["embedding.weight"], random_weights(config, seed=seed)["embedding.weight"])
    assert not np.array_equal(weights["embedding.weight"], random_weights(config, seed=seed + 1)["embedding.weight"])
    assert abs(float(weights["embedding.weight"].std()) - 0.02) < 0.002
    assert abs(float(weights["layers.3.moe.router.weight"].std()) - 0.02) < 0.004
    mixer = "layers.0.mamba2_mixer"
    np.testing.assert_allclose(weights[f"{mixer}.A_log"], np.log([1.0, 2.0, 3.0, 4.0]), rtol=1e-6)
    np.testing.assert_array_equal(weights[f"{mixer}.D"], 1.0)
    np.testing.assert_array_equal(weights[f"{mixer}.norm.weight"], 1.0)
    np.testing.assert_array_equal(weights["layers.3.moe.router.e_score_correction_bias"], 0.0)
    dt = np.log1p(np.exp(weights[f"{mixer}.dt_bias"].astype(np.float64)))  # softplus undoes the init
    assert ((dt >= config.time_step_min * 0.999) & (dt <= config.time_step_max * 1.001)).all()
    # As transformers 5.23 initialises them: conv1d like a Linear; Mamba out_proj rescaled by sqrt(layers).
    assert abs(float(weights[f"{mixer}.conv1d.weight"].std()) - 0.02) < 0.004
    out_proj = weights[f"{mixer}.out_proj.weight"]
    bound = 1 / np.sqrt(out_proj.shape[1]) / np.sqrt(config.num_hidden_layers)
    assert np.abs(out_proj).max() <= bound and np.abs(out_proj).max() > 0.9 * bound


# --- bad input: one line naming the file or tensor, nothing left behind ------------------------------


@pytest.fixture
def hf(tmp_path: Path, seed: int) -> Path:
    return make_hf_checkpoint(tmp_path / "hf", seed)


def _rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_truncated_file(hf: Path, tmp_path: Path) -> None:
    path = hf / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "model.safetensors", "truncated")
    path.write_bytes(path.read_bytes()[:5])
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "model.safetensors", "truncated")
    assert_nothing_written(tmp_path, "hf")


def test_corrupt_header(hf: Path, tmp_path: Path) -> None:
    path = hf / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"!!!!"
    path.write_bytes(bytes(data))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "model.safetensors", "corrupt header")
    path.write_bytes(struct.pack("<Q", 10**12) + bytes(data[8:]))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "corrupt or truncated header")
    assert_nothing_written(tmp_path, "hf")


def _with_header(path: Path, change, reverse: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Rewrite a safetensors header by hand (spaced JSON; keys reversed with `reverse`), data unchanged."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    change(header)
    if reverse:
        header = dict(reversed(header.items()))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda h: h["backbone.norm_f.weight"].__setitem__("dtype", "F8_E9M9"), "unsupported dtype F8_E9M9"),
        (lambda h: h["backbone.norm_f.weight"].__setitem__("data_offsets", [0, 64]), "do not hold F32[32]"),
        (lambda h: h["backbone.norm_f.weight"].__setitem__("shape", "32"), "malformed shape"),
        (lambda h: h.__setitem__("__metadata__", {"format": 1}), "__metadata__"),
    ],
    ids=["dtype", "offsets", "shape", "metadata"],
)
def test_malformed_header_entries(hf: Path, tmp_path: Path, change, phrase: str) -> None:  # type: ignore[no-untyped-def]
    _with_header(hf / "model.safetensors", change)
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "model.safetensors", phrase)
    assert_nothing_written(tmp_path, "hf")


def test_overlapping_tensors(hf: Path, tmp_path: Path) -> None:
    def overlap(header: dict) -> None:  # type: ignore[type-arg]
        first, second = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])[:2]
        length = header[second]["data_offsets"][1] - header[second]["data_offsets"][0]
        header[second]["data_offsets"] = [header[first]["data_offsets"][0], header[first]["data_offsets"][0] + length]

    _with_header(hf / "model.safetensors", overlap)
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "model.safetensors", "overlap")


def test_wrong_shape_tensor(hf: Path, tmp_path: Path) -> None:
    name = "backbone.layers.1.mixer.k_proj.weight"
    _rewrite(hf / "model.safetensors", lambda t: t.__setitem__(name, np.zeros((8, 32), np.float32)))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), name, "[8, 32]", "expected [16, 32]")
    assert_nothing_written(tmp_path, "hf")


def test_missing_tensor(hf: Path, tmp_path: Path) -> None:
    name = "backbone.layers.3.mixer.experts.2.down_proj.weight"
    _rewrite(hf / "model.safetensors", lambda t: t.pop(name))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), name, "missing")
    assert_nothing_written(tmp_path, "hf")


def test_unknown_tensor(hf: Path, tmp_path: Path) -> None:
    name = "backbone.layers.9.mixer.q_proj.weight"
    _rewrite(hf / "model.safetensors", lambda t: t.__setitem__(name, np.zeros((4, 4), np.float32)))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), name, "not part of this model")
    assert_nothing_written(tmp_path, "hf")


def test_experts_of_mixed_dtypes(hf: Path, tmp_path: Path) -> None:
    name = "backbone.layers.3.mixer.experts.1.up_proj.weight"
    _rewrite(hf / "model.safetensors", lambda t: t.__setitem__(name, t[name].astype(np.float16)))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "experts.up_proj", "mix dtypes")


def test_index_naming_the_wrong_file(tmp_path: Path, seed: int) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf", seed, shard="20KB")
    index = json.loads((hf / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    name = next(k for k, v in index["weight_map"].items() if v == files[0])
    index["weight_map"][name] = files[1]
    (hf / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "index.json", name, files[1])
    (hf / files[1]).unlink()
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), files[1], "missing")
    assert_nothing_written(tmp_path, "hf")


def test_pickle_checkpoint_is_refused(hf: Path, tmp_path: Path) -> None:
    (hf / "model.safetensors").unlink()
    (hf / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "pytorch_model.bin", "pickle")
    assert_nothing_written(tmp_path, "hf")


def test_missing_path(tmp_path: Path) -> None:
    assert_one_line_error(convert(tmp_path / "nowhere", "-o", tmp_path / "out", ok=False), "nowhere")
    assert_nothing_written(tmp_path)


def test_bad_shard_size(hf: Path, tmp_path: Path) -> None:
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", "--shard-size", "lots", ok=False), "--shard-size")
    assert_nothing_written(tmp_path, "hf")


def test_corrupted_shard_after_conversion(hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "tessera"
    convert(hf, "-o", out)
    shard = next(out.glob("weights-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert_one_line_error(convert("--export", out, "-o", tmp_path / "back", ok=False), shard.name, "sha256")
    assert_nothing_written(tmp_path, "hf", "tessera")
    with pytest.raises(Exception, match="sha256"):
        load_weights(out)


def test_export_of_a_directory_that_is_not_converted(hf: Path, tmp_path: Path) -> None:
    assert_one_line_error(convert("--export", hf, "-o", tmp_path / "back", ok=False), "manifest.json")
    assert_nothing_written(tmp_path, "hf")


def test_output_directory_is_not_clobbered(hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(convert(hf, "-o", out, ok=False), "not empty")
    assert (out / "keep.txt").read_text() == "mine"
    convert(hf, "-o", out, "--force")
    assert SafetensorsFile(next(out.glob("weights-*.safetensors"))).tensors
    assert not (out / "keep.txt").exists()


def test_compile_rejects_a_broken_checkpoint(hf: Path, tmp_path: Path) -> None:
    shutil.copy(hf / "model.safetensors", tmp_path / "copy")
    (hf / "model.safetensors").write_bytes((tmp_path / "copy").read_bytes()[:50])
    result = subprocess.run(
        [sys.executable, "-m", "tessera.tools.tessera_compile", hf, "-o", tmp_path / "art", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert_one_line_error(result, "model.safetensors")
    assert not (tmp_path / "art").exists()
