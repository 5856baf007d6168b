"""Class 5 of issue 12: wrong-typed weights.

Rule: a weight's dtype must be a float dtype the layout allows. A float tensor relabelled as an integer type
of the same width (F32 -> I32, BF16 -> I16) keeps its byte count and shape, so only the dtype check can
refuse it; accepted, it converts, compiles and runs with silently wrong numbers.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hostile_run import (
    PROMPT_IDS,
    Box,
    checkpoint_artifact,
    file_record,
    has_mlir,
    hf_checkpoint,
    load_json,
    refused,
    relabel_tensor,
    rerecord,
    session_dir,
    tiny_hf_fields,
)

# The first MLP's up projection: a GEMM weight, by its HF and its Tessera name.
HF_TENSOR = "backbone.layers.1.mixer.up_proj.weight"
TESSERA_TENSOR = "layers.1.mlp_relu2.up_proj.weight"
NAMES = (HF_TENSOR.removeprefix("backbone."), TESSERA_TENSOR)  # a refusal may use either


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


@functools.cache
def bf16_checkpoint() -> Path:
    from conftest import base_seed, derive_seed, make_hf_checkpoint

    fields = tiny_hf_fields()
    seed = derive_seed(base_seed(), "hostile/hf_bf16")
    return make_hf_checkpoint(
        session_dir() / "hf_bf16", seed, fields.pop("hybrid_override_pattern"), dtype="bfloat16", **fields
    )


@pytest.mark.parametrize(
    ("source", "dtype", "tool"),
    [
        ("float32", "I32", "tessera-convert"),
        ("float32", "I32", "tessera-compile"),
        ("bfloat16", "I16", "tessera-convert"),
    ],
)
def test_relabelled_tensor_in_an_hf_checkpoint(box: Box, source: str, dtype: str, tool: str) -> None:
    checkpoint = box.copy_in(hf_checkpoint() if source == "float32" else bf16_checkpoint(), "ckpt")
    relabel_tensor(checkpoint / "model.safetensors", HF_TENSOR, dtype)
    if tool == "tessera-convert":
        outcome = box.run(tool, checkpoint, "-o", box.out(), "--no-progress")
    else:
        outcome = box.run(tool, checkpoint, "--target", "reference", "-o", box.out(), "-q")
    refused(outcome, NAMES, dtype)


def test_relabelled_stacked_experts_in_an_hf_checkpoint(box: Box) -> None:
    # every expert relabelled alike, so the stacked tensor has one (wrong) dtype and no mixing to catch
    checkpoint = box.copy_in(hf_checkpoint(), "ckpt")
    shard = checkpoint / "model.safetensors"
    for expert in range(int(tiny_hf_fields()["n_routed_experts"])):
        relabel_tensor(shard, f"backbone.layers.6.mixer.experts.{expert}.up_proj.weight", "I32")
    refused(box.run("tessera-convert", checkpoint, "-o", box.out(), "--no-progress"), "up_proj", "I32")


def relabel_converted(weights: Path, tensor: str, dtype: str) -> None:
    """Relabel a tensor of a Tessera weight directory consistently: shard header, manifest dtype, shard record."""
    manifest = load_json(weights / "manifest.json")
    shard_name = manifest["tensors"][tensor]["shard"]
    relabel_tensor(weights / shard_name, tensor, dtype)
    manifest["tensors"][tensor]["dtype"] = dtype
    for shard in manifest["shards"]:
        if shard["file"] == shard_name:
            shard.update(file_record(weights / shard_name))
    (weights / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


@pytest.mark.parametrize("tool", ["x86", "reference", "export"])
def test_relabelled_tensor_in_converted_weights(box: Box, tool: str) -> None:
    if tool == "x86" and not has_mlir():
        pytest.skip("the x86 target needs the MLIR 22 / llvmlite toolchain")
    artifact = box.copy_in(checkpoint_artifact().path, "artifact")
    relabel_converted(artifact / "weights", TESSERA_TENSOR, "I32")
    rerecord(artifact, "weights/manifest.json")
    if tool == "export":
        outcome = box.run("tessera-convert", "--export", artifact / "weights", "-o", box.out(), "--no-progress")
    else:
        outcome = box.run("tessera-run", artifact, "--target", tool, "--input-ids", PROMPT_IDS, "--max-new-tokens", "2")
    refused(outcome, NAMES, "I32")
