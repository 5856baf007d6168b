"""tessera-convert: HF -> Tessera -> HF byte for byte, and one clear line for every broken checkpoint."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_tool

from tessera.frontend.checkpoint import load_weights, random_weights
from tessera.frontend.config import load_model
from tessera.frontend.safetensors_io import SafetensorsFile
from tessera.frontend.weights_layout import model_tensors, param_count

torch = pytest.importorskip("torch", reason="checkpoints are made with transformers (pip install -e '.[test]')")
transformers = pytest.importorskip("transformers", reason="checkpoints are made with transformers")

BASE = dict(
    vocab_size=101, hidden_size=32, hybrid_override_pattern="M*-E", num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, intermediate_size=48, mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=16, n_groups=2,
    chunk_size=8, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
    moe_shared_expert_intermediate_size=40,
)  # fmt: skip


def make_hf(path: Path, dtype: torch.dtype = torch.float32, max_shard_size: str | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**{**BASE, **overrides}))
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.to(dtype).save_pretrained(path, **kwargs)
    return model


def convert(*args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool("tessera_convert", *args, "--no-progress", ok=ok)


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix == ".safetensors"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_sharded_round_trip_is_byte_identical(tmp_path: Path, dtype: torch.dtype) -> None:
    hf = tmp_path / "hf"
    make_hf(hf, dtype, max_shard_size="20KB")
    assert (hf / "model.safetensors.index.json").is_file() and len(files_of(hf)) > 2
    convert(hf, "-o", tmp_path / "tessera", "--shard-size", "16KiB")
    manifest = json.loads((tmp_path / "tessera" / "manifest.json").read_text())
    assert len(manifest["shards"]) > 1
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    convert("--export", tmp_path / "tessera", "-o", tmp_path / "back")
    assert files_of(tmp_path / "back") == files_of(hf)
    index = json.loads((tmp_path / "back" / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == json.loads((hf / "model.safetensors.index.json").read_text())["weight_map"]


def test_weights_equal_the_hf_parameters(tmp_path: Path) -> None:
    model = make_hf(tmp_path / "hf", torch.bfloat16)
    convert(tmp_path / "hf", "-o", tmp_path / "tessera")
    weights = load_weights(tmp_path / "tessera")
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(
        weights["layers.3.moe.experts.up_proj"], state["model.layers.3.mixer.experts.up_proj"]
    )
    np.testing.assert_array_equal(
        weights["layers.0.mamba2_mixer.conv1d.weight"], state["model.layers.0.mixer.conv1d.weight"][:, 0]
    )
    assert all(w.dtype == np.float32 for w in weights.values())
    assert param_count(load_model(tmp_path / "hf").config) == sum(p.numel() for p in model.parameters())


def test_model_prefix_and_ignored_mtp_tensors(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    make_hf(tmp_path / "hf")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    renamed = {k.replace("backbone.", "model.", 1): v for k, v in tensors.items()}
    renamed["mtp.layers.0.norm.weight"] = np.ones(32, np.float32)
    save_file(renamed, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    convert(tmp_path / "hf", "-o", tmp_path / "tessera")
    assert json.loads((tmp_path / "tessera" / "manifest.json").read_text())["hf"]["prefix"] == "model."


@pytest.mark.parametrize("pattern", ["M-M-", "**E", "M"])
def test_param_count_equals_hf(pattern: str) -> None:
    config = transformers.NemotronHConfig(**{**BASE, "hybrid_override_pattern": pattern, "moe_latent_size": 16})
    model = transformers.NemotronHForCausalLM(config)
    from tessera.frontend.config import config_from_dict

    ours = config_from_dict(config.to_dict(), "hf", strict=False)
    assert param_count(ours) == sum(p.numel() for p in model.parameters())


def test_random_weights_cover_the_layout() -> None:
    config = load_model(Path(__file__).parent.parent / "configs" / "nemotron_h_tiny.yaml").config
    weights = random_weights(config, seed=3)
    assert {s.name: s.shape for s in model_tensors(config)} == {k: v.shape for k, v in weights.items()}
    np.testing.assert_array_equal(weights["embedding.weight"], random_weights(config, seed=3)["embedding.weight"])


# --- bad input: one line naming the file or tensor, nothing left behind ------------------------------


@pytest.fixture
def hf(tmp_path: Path) -> Path:
    make_hf(tmp_path / "hf")
    return tmp_path / "hf"


def _rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_truncated_file(hf: Path, tmp_path: Path) -> None:
    path = hf / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "model.safetensors", "truncated")
    assert not (tmp_path / "out").exists()


def test_corrupt_header(hf: Path, tmp_path: Path) -> None:
    path = hf / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"!!!!"
    path.write_bytes(bytes(data))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "model.safetensors", "corrupt header")
    path.write_bytes(struct.pack("<Q", 10**12) + bytes(data[8:]))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "corrupt or truncated header")
    assert not (tmp_path / "out").exists()


def test_wrong_shape_tensor(hf: Path, tmp_path: Path) -> None:
    name = "backbone.layers.1.mixer.k_proj.weight"
    _rewrite(hf / "model.safetensors", lambda t: t.__setitem__(name, np.zeros((8, 32), np.float32)))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), name, "[8, 32]", "expected [16, 32]")


def test_missing_tensor(hf: Path, tmp_path: Path) -> None:
    name = "backbone.layers.3.mixer.experts.2.down_proj.weight"
    _rewrite(hf / "model.safetensors", lambda t: t.pop(name))
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), name, "missing")
    assert not list(tmp_path.glob(".out*"))


def test_pickle_checkpoint_is_refused(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    make_hf(hf)
    (hf / "model.safetensors").unlink()
    (hf / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    assert_one_line_error(convert(hf, "-o", tmp_path / "out", ok=False), "pytorch_model.bin", "pickle")


def test_missing_path(tmp_path: Path) -> None:
    assert_one_line_error(convert(tmp_path / "nowhere", "-o", tmp_path / "out", ok=False), "nowhere")


def test_corrupted_shard_after_conversion(hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "tessera"
    convert(hf, "-o", out)
    shard = next(out.glob("weights-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert_one_line_error(convert("--export", out, "-o", tmp_path / "back", ok=False), shard.name, "sha256")
    assert not (tmp_path / "back").exists()


def test_output_directory_is_not_clobbered(hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(convert(hf, "-o", out, ok=False), "not empty")
    assert (out / "keep.txt").read_text() == "mine"
    convert(hf, "-o", out, "--force")
    assert SafetensorsFile(next(out.glob("weights-*.safetensors"))).tensors


def test_compile_rejects_a_broken_checkpoint(hf: Path, tmp_path: Path) -> None:
    shutil.copy(hf / "model.safetensors", tmp_path / "copy")
    (hf / "model.safetensors").write_bytes((tmp_path / "copy").read_bytes()[:50])
    result = subprocess.run(
        [sys.executable, "-m", "tessera.tools.tessera_compile", hf, "-o", tmp_path / "art", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert_one_line_error(result, "model.safetensors")
    assert not (tmp_path / "art").exists()
