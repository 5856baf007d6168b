"""Cases an outside check and a review found after the suite was first written, one per rule they broke:
special files (FIFOs) where a file is read, an output that is the input, fields every reader relies on,
what a weights manifest says against what its shards hold, and numbers that only look finite."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hostile_run import (
    NEEDS_X86,
    NEW_TOKENS,
    PROMPT_IDS,
    TINY_YAML,
    Box,
    Outcome,
    checkpoint_artifact,
    edit_json,
    refused,
    rerecord,
    tiny_artifact,
)


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def run(box: Box, artifact: Path, *extra: object) -> Outcome:
    return box.run(
        "tessera-run", artifact, "--target", "reference", "--input-ids", PROMPT_IDS, "--max-new-tokens", NEW_TOKENS,
        *extra,
    )  # fmt: skip


def graph_text() -> str:
    return (tiny_artifact().path / "graph.mlir").read_text()


@pytest.mark.parametrize("how", ["same-path", "symlink"])
def test_tessera_opt_output_onto_its_input(box: Box, how: str) -> None:
    source = box.inputs / "g.mlir"
    source.write_text(graph_text())
    output = source
    if how == "symlink":
        output = box.allow_output(box.root / "link.mlir")
        output.symlink_to(source)
    outcome = box.run("tessera-opt", source, "-p", "tessera-graph-annotate-costs", "-o", output)
    refused(outcome, "g.mlir")  # and the input unchanged, as every case checks


def test_tessera_opt_fifo_input(box: Box) -> None:
    fifo = box.inputs / "f.mlir"
    os.mkfifo(fifo)  # no writer: a reader that opens it blocks for ever
    refused(box.run("tessera-opt", fifo, "-p", "tessera-graph-annotate-costs", timeout=60), "f.mlir", "regular file")


def test_fifo_inside_an_artifact(box: Box) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    (artifact / "graph.mlir").unlink()
    os.mkfifo(artifact / "graph.mlir")
    refused(run(box, artifact), "graph.mlir", "regular file")


@pytest.mark.parametrize("text", ["name: a\x01b\n", 'name: "a\x00b"\n'], ids=["control", "nul"])
def test_yaml_with_a_character_yaml_does_not_allow(box: Box, text: str) -> None:
    model = box.inputs / "model.yaml"
    model.write_text(TINY_YAML.read_text() + text)
    refused(box.run("tessera-compile", model, "--target", "reference", "-o", box.out(), "-q"), "model.yaml")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["targets"]["reference"].clear() or m["targets"].update(x86={"program": "x86/program.json"}),
         "targets.x86.llvm_ir"),
        (lambda m: m["compile"].update(max_seq_len="abc"), "max_seq_len"),
        (lambda m: m["compile"].update(max_seq_len=-5), "max_seq_len"),
    ],
    ids=["x86-without-llvm-ir", "max-seq-len-string", "max-seq-len-negative"],
)  # fmt: skip
def test_tessera_json_field_every_reader_relies_on(box: Box, change: object, field: str) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    edit_json(artifact / "tessera.json", change)  # type: ignore[arg-type]
    refused(run(box, artifact), "tessera.json", field)


def test_a_number_that_overflows_to_infinity(box: Box) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    manifest = artifact / "tessera.json"
    text, count = re.subn(r'"layer_norm_epsilon": [^,\n]+', '"layer_norm_epsilon": 1e400', manifest.read_text())
    assert count
    manifest.write_text(text)
    refused(run(box, artifact), "tessera.json", "not finite")


def test_weights_manifest_dtype_against_its_shard(box: Box) -> None:
    artifact = box.copy_in(checkpoint_artifact().path, "artifact")
    manifest = artifact / "weights" / "manifest.json"
    edit_json(manifest, lambda m: m["tensors"]["embedding.weight"].update(dtype="I32"))
    rerecord(artifact, "weights/manifest.json")
    refused(run(box, artifact), "manifest.json", "embedding.weight")


def test_weights_manifest_without_its_config(box: Box) -> None:
    artifact = box.copy_in(checkpoint_artifact().path, "artifact")
    edit_json(artifact / "weights" / "manifest.json", lambda m: m.__delitem__("config"))
    rerecord(artifact, "weights/manifest.json")
    refused(run(box, artifact), "manifest.json", "config")


def test_logits_written_into_the_artifact(box: Box) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    refused(run(box, artifact, "--logits-out", artifact / "graph.mlir"), "--logits-out")


@NEEDS_X86
@pytest.mark.parametrize("program", ["prefill", "decode"])
def test_a_program_that_never_writes_its_logits(box: Box, program: str) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    edit_json(artifact / "x86" / "program.json", lambda p: p["programs"][program].update(launches=[]))
    rerecord(artifact, "x86/program.json")
    outcome = box.run(
        "tessera-run", artifact, "--target", "x86", "--input-ids", PROMPT_IDS, "--max-new-tokens", NEW_TOKENS
    )
    refused(outcome, "program.json", f"programs.{program}.launches")
