"""Class 1 of issue 12: paths that escape their folder.

Rule: every path read from a file (a checkpoint index, tessera.json, a weights manifest, model.yaml) or found
in a folder (a shard, config.json, tokenizer.json, a Hub snapshot link) is relative and resolves, symlinks
included, inside its folder — for a Hub repo id, inside that repo's folder of the Hub cache — or the command
refuses in one line; no command deletes or overwrites its input.

Each case puts a valid file outside the input folder (box.outside) and removes the one inside, so a tool
that follows the hostile path would succeed: refusing is the only correct outcome, and the audit log shows
whether the outside file was opened anyway.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hostile_run import (
    NEW_TOKENS,
    PROMPT_IDS,
    TINY_YAML,
    Box,
    Outcome,
    Phrase,
    checkpoint_artifact,
    edit_json,
    file_record,
    has_mlir,
    hf_checkpoint,
    hf_sharded,
    hub_repo,
    hub_snapshot,
    load_json,
    refused,
    rerecord,
    tiny_artifact,
)

INDEX = "model.safetensors.index.json"
FORMS = ["parent", "absolute"]


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def hostile_path(target: Path, folder: Path, form: str) -> str:
    """How a file in `folder` names `target` outside it: ../-relative or absolute."""
    return os.path.relpath(target, folder) if form == "parent" else str(target)


def use_checkpoint(box: Box, tool: str, checkpoint: Path | str, env: dict[str, str] | None = None) -> Outcome:
    """Convert or compile a checkpoint (the reference target: weights are converted before any target)."""
    if tool == "tessera-convert":
        return box.run(tool, checkpoint, "-o", box.out(), "--no-progress", env=env)
    return box.run(tool, checkpoint, "--target", "reference", "-o", box.out(), "-q", env=env)


def run_artifact(box: Box, artifact: Path, *args: str, env: dict[str, str] | None = None) -> Outcome:
    return box.run("tessera-run", artifact, *args, "--max-new-tokens", NEW_TOKENS, "--json", env=env)


# --- checkpoints ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tool", ["tessera-convert", "tessera-compile"])
def test_index_weight_map_naming_a_shard_outside(box: Box, tool: str, form: str) -> None:
    checkpoint = box.copy_in(hf_sharded(), "ckpt")
    index = load_json(checkpoint / INDEX)
    moved = sorted(set(index["weight_map"].values()))[-1]
    outside = (checkpoint / moved).rename(box.outside / moved)  # its tensors exist only outside now
    named = hostile_path(outside, checkpoint, form)
    edit_json(
        checkpoint / INDEX,
        lambda i: i["weight_map"].update({k: named for k, v in i["weight_map"].items() if v == moved}),
    )
    refused(use_checkpoint(box, tool, checkpoint), INDEX)


@pytest.mark.parametrize(
    ("name", "tool", "link"),
    [
        ("model.safetensors", "tessera-convert", "absolute"),
        ("model.safetensors", "tessera-convert", "relative"),
        ("model.safetensors", "tessera-compile", "relative"),
        ("config.json", "tessera-convert", "absolute"),
        ("tokenizer.json", "tessera-compile", "relative"),  # compile copies it into the artifact
    ],
)
def test_checkpoint_file_that_is_a_symlink_outside(box: Box, name: str, tool: str, link: str) -> None:
    checkpoint = box.copy_in(hf_checkpoint(), "ckpt")
    outside = (checkpoint / name).rename(box.outside / name)
    (checkpoint / name).symlink_to(outside if link == "absolute" else os.path.relpath(outside, checkpoint))
    refused(use_checkpoint(box, tool, checkpoint), name)


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("model.safetensors", "absolute"),  # a snapshot link anywhere on the machine
        ("model.safetensors", "other-repo"),  # into another repo's blobs: inside the Hub cache, not this repo
        ("config.json", "parent"),
    ],
)
def test_hub_snapshot_link_leaving_its_repo(box: Box, name: str, target: str) -> None:
    source = hf_checkpoint()
    if target == "other-repo":
        other = box.inputs / "hub" / "models--org--other" / "blobs" / "b"
        other.parent.mkdir(parents=True)
        shutil.copyfile(source / name, other)
        link = f"../../../models--org--other/blobs/{other.name}"
    else:
        outside = shutil.copyfile(source / name, box.outside / name)
        link = str(outside) if target == "absolute" else os.path.relpath(outside, hub_snapshot(box))
    hub, repo = hub_repo(box, source, {name: link})
    box.read_roots = [repo]
    refused(use_checkpoint(box, "tessera-convert", "org/tiny", env={"HF_HUB_CACHE": str(hub)}), name)


# --- tessera.json and the weights manifest: what tessera-run reads ------------------------------------------


def _x86() -> str:
    return "x86" if has_mlir() else "reference"


@dataclass(frozen=True)
class ArtifactPath:
    """Files tessera.json names: where (keys), which (files, one per key), and a run that reads them."""

    keys: list[tuple[str, ...]]
    files: list[str]
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    from_checkpoint: bool = False  # the artifact compiled from a checkpoint (weights/, tokenizer.json)


X86 = ["--target", "x86", "--input-ids", PROMPT_IDS]
REFERENCE = ["--target", "reference", "--input-ids", PROMPT_IDS]
LIBRARIES = {"library": "kernels.so", "generic": "kernels.so", "avx512": "kernels.avx512.so", "amx": "kernels.amx.so"}
ARTIFACT_PATHS = {
    "x86-program": ArtifactPath([("targets", "x86", "program")], ["x86/program.json"], X86),
    "x86-llvm-ir": ArtifactPath([("targets", "x86", "llvm_ir")], ["x86/kernels.ll"], X86, {"TESSERA_KERNELS": "jit"}),
    "x86-libraries": ArtifactPath(
        [("targets", "x86", key) if key == "library" else ("targets", "x86", "libraries", key) for key in LIBRARIES],
        [f"x86/{name}" for name in LIBRARIES.values()],
        X86,
        {"TESSERA_KERNELS": "aot"},
    ),
    "reference-program": ArtifactPath([("targets", "reference", "program")], ["graph.mlir"], REFERENCE),
    "weights-dir": ArtifactPath([("weights", "dir")], ["weights"], REFERENCE, from_checkpoint=True),
    "tokenizer": ArtifactPath(
        [("tokenizer",)], ["tokenizer.json"], ["--target", "reference", "--prompt", "hello world"], from_checkpoint=True
    ),
}


def _move_outside(box: Box, path: Path, form: str) -> Path:
    """Copy an artifact's file (or folder) outside and remove it, or (symlink) replace it by a link there."""
    outside = box.copy_outside(path, str(path.relative_to(box.inputs)).replace("/", "_"))
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    if form == "symlink":
        path.symlink_to(outside)
    return outside


def _name_in_manifest(artifact: Path, spec: ArtifactPath, moved: dict[str, Path], form: str) -> None:
    """Point tessera.json's keys at the outside copies, and keep its `files` records consistent with that."""
    manifest = load_json(artifact / "tessera.json")
    for keys, relative in zip(spec.keys, spec.files, strict=True):
        entry = manifest
        for key in keys[:-1]:
            entry = entry[key]
        entry[keys[-1]] = hostile_path(moved[relative], artifact, form)
    records = manifest.get("files")
    if isinstance(records, dict):
        for relative, outside in moved.items():
            for name in [k for k in records if k == relative or k.startswith(relative + "/")]:
                del records[name]
            if outside.is_file():
                records[hostile_path(outside, artifact, form)] = file_record(outside)
    (artifact / "tessera.json").write_text(json.dumps(manifest, indent=1) + "\n")


@pytest.mark.parametrize("form", [*FORMS, "symlink"])
@pytest.mark.parametrize("case", list(ARTIFACT_PATHS))
def test_tessera_json_path_leading_outside(box: Box, case: str, form: str) -> None:
    spec = ARTIFACT_PATHS[case]
    if "--target" in spec.args and spec.args[spec.args.index("--target") + 1] == "x86" and not has_mlir():
        pytest.skip("the x86 target needs the MLIR 22 / llvmlite toolchain")
    artifact = box.copy_in((checkpoint_artifact() if spec.from_checkpoint else tiny_artifact()).path, "artifact")
    moved = {relative: _move_outside(box, artifact / relative, form) for relative in dict.fromkeys(spec.files)}
    if form == "symlink":
        phrase: Phrase = tuple(Path(relative).name for relative in moved)  # the link tessera-run meets
    else:
        _name_in_manifest(artifact, spec, moved, form)
        phrase = "tessera.json"
    refused(run_artifact(box, artifact, *spec.args, env=spec.env), phrase)


@pytest.mark.parametrize("form", [*FORMS, "symlink"])
@pytest.mark.parametrize("tool", ["tessera-run", "export"])
def test_weights_manifest_shard_outside(box: Box, tool: str, form: str) -> None:
    artifact = box.copy_in(checkpoint_artifact().path, "artifact")
    weights = artifact / "weights"
    manifest = load_json(weights / "manifest.json")
    shard = manifest["shards"][0]["file"]
    outside = (weights / shard).rename(box.outside / shard)
    if form == "symlink":
        (weights / shard).symlink_to(outside)
        phrase = shard
    else:
        manifest["shards"][0]["file"] = hostile_path(outside, weights, form)
        for entry in manifest["tensors"].values():
            entry["shard"] = manifest["shards"][0]["file"]
        (weights / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        rerecord(artifact, "weights/manifest.json")
        phrase = "manifest.json"
    if tool == "export":
        outcome = box.run("tessera-convert", "--export", weights, "-o", box.out(), "--no-progress")
    else:
        outcome = run_artifact(box, artifact, "--target", _x86(), "--input-ids", PROMPT_IDS)
    refused(outcome, phrase)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("entry", ["hf-file", "json-file"])
def test_export_manifest_naming_files_outside_its_output(box: Box, entry: str, form: str) -> None:
    weights = box.copy_in(checkpoint_artifact().path / "weights", "weights")
    out = box.out("exported")
    staging_like = out.parent / f".{out.name}.x"  # where a writer puts the files first
    manifest = load_json(weights / "manifest.json")
    if entry == "hf-file":
        target = box.outside / "model.safetensors"
        manifest["hf"]["files"][0]["file"] = hostile_path(target, staging_like, form)
    else:
        target = box.outside / "config.json"
        files = manifest["hf"]["json_files"]
        files[hostile_path(target, staging_like, form)] = files.pop("config.json")
    (weights / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    refused(box.run("tessera-convert", "--export", weights, "-o", out, "--no-progress"), "manifest.json")
    assert not target.exists()


# --- outputs that are, or hold, the input ----------------------------------------------------------------------


def test_convert_onto_its_own_source(box: Box) -> None:
    checkpoint = box.copy_in(hf_checkpoint(), "ckpt")
    box.allow_output(checkpoint)
    refused(box.run("tessera-convert", checkpoint, "-o", checkpoint, "--force", "--no-progress"), "ckpt")


def test_convert_onto_the_folder_holding_its_source(box: Box) -> None:
    checkpoint = box.copy_in(hf_checkpoint(), "models/ckpt")
    box.allow_output(checkpoint.parent)
    refused(box.run("tessera-convert", checkpoint, "-o", checkpoint.parent, "--force", "--no-progress"), "models")


@pytest.mark.parametrize("onto", ["itself", "its-folder"])
def test_export_onto_its_own_source(box: Box, onto: str) -> None:
    weights = box.copy_in(checkpoint_artifact().path / "weights", "models/weights")
    out = weights if onto == "itself" else weights.parent
    box.allow_output(out)
    refused(box.run("tessera-convert", "--export", weights, "-o", out, "--force", "--no-progress"), out.name)


@pytest.mark.parametrize("looks_like_an_artifact", [False, True])
def test_compile_onto_its_checkpoint(box: Box, looks_like_an_artifact: bool) -> None:
    checkpoint = box.copy_in(hf_checkpoint(), "ckpt")
    if looks_like_an_artifact:  # what tessera-compile takes as a previous build it may replace
        shutil.copyfile(tiny_artifact().path / "tessera.json", checkpoint / "tessera.json")
    box.allow_output(checkpoint)
    refused(box.run("tessera-compile", checkpoint, "--target", "reference", "-o", checkpoint, "-q"), "ckpt")


# --- model.yaml ----------------------------------------------------------------------------------------------------


def _model_yaml(box: Box, extra: Callable[[Path], str]) -> Path:
    folder = box.inputs / "model"
    folder.mkdir()
    path = folder / "model.yaml"
    path.write_text(TINY_YAML.read_text() + extra(folder))
    return path


@pytest.mark.parametrize("form", [*FORMS, "symlink"])
@pytest.mark.parametrize("field", ["weights", "tokenizer"])
def test_model_yaml_path_leading_outside(box: Box, field: str, form: str) -> None:
    source = hf_checkpoint()
    outside = box.copy_outside(source if field == "weights" else source / "tokenizer.json")

    def line(folder: Path) -> str:
        if form == "symlink":
            (folder / outside.name).symlink_to(outside)
            return f"{field}: {outside.name}\n"
        return f"{field}: {hostile_path(outside, folder, form)}\n"

    model = _model_yaml(box, line)
    refused(box.run("tessera-compile", model, "--target", "reference", "-o", box.out(), "-q"), "model.yaml", field)
