"""Every file a Tessera command parses, and how a case reaches it: the sites the reader cases (class 3) and
the bomb cases (class 4) corrupt.

A site makes its input in a box and returns the file to corrupt and how to run the command that reads it.
Files an artifact records a hash of are re-recorded after the corruption (rerecord), so that the corrupt
text reaches the reader instead of being refused by the hash check first; the hash check has its own cases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostile_run import (
    BIG_INT,
    HUGE_BYTES,
    NEEDS_X86,
    NEW_TOKENS,
    PROMPT_IDS,
    ROOT,
    TINY_YAML,
    Box,
    Outcome,
    checkpoint_artifact,
    deep_json,
    hf_checkpoint,
    hf_sharded,
    rerecord,
    safetensors_header,
    tiny_artifact,
    write_safetensors_header,
)

BAD_UTF8 = b"\xff\xfe\xc3("  # not UTF-8 anywhere in a file


@dataclass(frozen=True)
class Site:
    """A file a command reads: its kind (json, yaml, mlir, safetensors), the phrase a refusal must name, an
    integer field (a JSON path, for the 5000-digit case), and how to make it and run the command that reads it.
    `mutations`: the corruptions that must be refused — all three where the command parses the file; only
    non-UTF-8 where it keeps the text verbatim (generation_config.json, carried for the export); none where it
    copies the bytes (a checkpoint's tokenizer.json). Every site must survive a huge file."""

    kind: str
    phrase: str
    int_path: tuple[str | int, ...]
    make: Callable[[Box], tuple[Path, Callable[[], Outcome]]]
    needs_x86: bool = False
    recorded: str | None = None  # the artifact-relative path tessera.json records a hash of
    mutations: tuple[str, ...] = ("non-utf8", "deep", "big-int")


def _run(box: Box, artifact: Path, *args: str) -> Outcome:
    return box.run("tessera-run", artifact, *args, "--max-new-tokens", NEW_TOKENS, "--json")


def _checkpoint(name: str, tool: str = "tessera-convert", sharded: bool = False) -> Callable[[Box], Any]:
    def make(box: Box) -> tuple[Path, Callable[[], Outcome]]:
        checkpoint = box.copy_in(hf_sharded() if sharded else hf_checkpoint(), "ckpt")
        if tool == "tessera-convert":
            return checkpoint / name, lambda: box.run(tool, checkpoint, "-o", box.out(), "--no-progress")
        return checkpoint / name, lambda: box.run(tool, checkpoint, "--target", "reference", "-o", box.out(), "-q")

    return make


def _artifact(name: str, *args: str, from_checkpoint: bool = False) -> Callable[[Box], Any]:
    def make(box: Box) -> tuple[Path, Callable[[], Outcome]]:
        artifact = box.copy_in((checkpoint_artifact() if from_checkpoint else tiny_artifact()).path, "artifact")
        return artifact / name, lambda: _run(box, artifact, *args)

    return make


def _export(box: Box) -> tuple[Path, Callable[[], Outcome]]:
    weights = box.copy_in(checkpoint_artifact().path / "weights", "weights")
    return weights / "manifest.json", lambda: box.run(
        "tessera-convert", "--export", weights, "-o", box.out(), "--no-progress"
    )


def _model_yaml(box: Box) -> tuple[Path, Callable[[], Outcome]]:
    model = box.copy_in(TINY_YAML, "model.yaml")
    return model, lambda: box.run("tessera-compile", model, "--target", "reference", "-o", box.out(), "-q")


def _opt_input(box: Box) -> tuple[Path, Callable[[], Outcome]]:
    source = box.copy_in(ROOT / "graph_examples" / "hybrid.mlir", "hybrid.mlir")
    return source, lambda: box.run("tessera-opt", source, "-p", "tessera-graph-annotate-costs")


REFERENCE = ("--target", "reference", "--input-ids", PROMPT_IDS)
SITES: dict[str, Site] = {
    "hf-config.json": Site("json", "config.json", ("vocab_size",), _checkpoint("config.json")),
    "hf-generation_config.json": Site("json", "generation_config.json", ("bos_token_id",), _checkpoint("generation_config.json"), mutations=("non-utf8",)),
    "hf-index.json": Site(
        "json", "model.safetensors.index.json", ("metadata", "total_size"), _checkpoint("model.safetensors.index.json", sharded=True)
    ),
    "hf-safetensors-header": Site("safetensors", "model.safetensors", (), _checkpoint("model.safetensors")),
    "hf-tokenizer.json": Site("json", "tokenizer.json", ("model", "vocab", "hello"), _checkpoint("tokenizer.json", "tessera-compile"), mutations=()),
    "model.yaml": Site("yaml", "model.yaml", ("vocab_size",), _model_yaml),
    "tessera.json": Site("json", "tessera.json", ("config", "vocab_size"), _artifact("tessera.json", *REFERENCE)),
    "x86-program.json": Site(
        "json", "program.json", ("programs", "prefill", "launches", 0, "grid"),
        _artifact("x86/program.json", "--target", "x86", "--input-ids", PROMPT_IDS), needs_x86=True, recorded="x86/program.json",
    ),
    "weights-manifest.json": Site(
        "json", "manifest.json", ("shards", 0, "bytes"), _artifact("weights/manifest.json", *REFERENCE, from_checkpoint=True),
        recorded="weights/manifest.json",
    ),
    "export-manifest.json": Site("json", "manifest.json", ("shards", 0, "bytes"), _export),
    "artifact-tokenizer.json": Site(
        "json", "tokenizer.json", ("model", "vocab", "hello"),
        _artifact("tokenizer.json", "--target", "reference", "--prompt", "hello world", from_checkpoint=True),
        recorded="tokenizer.json",
    ),
    "graph.mlir": Site("mlir", "graph.mlir", (), _artifact("graph.mlir", *REFERENCE), recorded="graph.mlir"),
    "tessera-opt-input.mlir": Site("mlir", "hybrid.mlir", (), _opt_input),
}  # fmt: skip


def artifact_root(path: Path, relative: str) -> Path:
    """The artifact folder holding `path`, which it records as `relative`."""
    return Path(str(path)[: -len(relative)].rstrip("/"))


# --- corruptions of a file's text ----------------------------------------------------------------------------


def _set_path(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _json_with(text: str, mutation: str, int_path: tuple[str | int, ...]) -> bytes:
    start = text.index("{") + 1
    if mutation == "non-utf8":
        return text[:start].encode() + b'"hostile": "' + BAD_UTF8 + b'", ' + text[start:].encode()
    if mutation == "deep":
        return (text[:start] + f'"hostile": {deep_json()}, ' + text[start:]).encode()
    data = json.loads(text)
    _set_path(data, int_path, "@BIG@")
    return json.dumps(data, indent=1).replace('"@BIG@"', BIG_INT).encode()


def _yaml_with(text: str, mutation: str) -> bytes:
    if mutation == "non-utf8":
        return text.encode() + b'\ntokenizer_class: "' + BAD_UTF8 + b'"\n'
    if mutation == "deep":  # tokenizer_class: an HF field the loader ignores, so only the reader can refuse it
        return (text + f"\ntokenizer_class: {deep_json()}\n").encode()
    return text.replace("vocab_size: 301", f"vocab_size: {BIG_INT}").encode()


def _mlir_with(text: str, mutation: str) -> bytes:
    if mutation == "non-utf8":
        return b"// " + BAD_UTF8 + b"\n" + text.encode()
    if mutation == "deep":
        return (f"#hostile = {deep_json()}\n" + text).encode()
    return (f"#hostile = {BIG_INT} : i64\n" + text).encode()


def corrupt(site: Site, path: Path, mutation: str) -> None:
    """Apply `mutation` (non-utf8, deep, big-int) to the file `site` parses."""
    if site.kind == "safetensors":
        header, body = safetensors_header(path)
        if mutation == "big-int":
            first = min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
            header[first]["data_offsets"][1] = "@BIG@"
        text = json.dumps(header, separators=(",", ":"))
        data = _json_with(text, mutation, ()) if mutation != "big-int" else text.replace('"@BIG@"', BIG_INT).encode()
        write_safetensors_header(path, data, body)
        return
    text = path.read_text()
    writers = {"json": lambda: _json_with(text, mutation, site.int_path), "yaml": lambda: _yaml_with(text, mutation)}
    path.write_bytes(writers.get(site.kind, lambda: _mlir_with(text, mutation))())


def make_huge_in_place(site: Site, path: Path) -> None:
    """Replace the file by a sparse one of HUGE_BYTES that starts as the real file does."""
    if site.kind == "safetensors":
        header, _ = safetensors_header(path)
        text = json.dumps(header).encode()
        prefix = len(text).to_bytes(8, "little") + text
    else:
        prefix = path.read_bytes()[: 1 << 12]
    with path.open("wb") as handle:
        handle.write(prefix)
        handle.truncate(HUGE_BYTES)


def after_corruption(site: Site, path: Path) -> None:
    if site.recorded is not None:
        rerecord(artifact_root(path, site.recorded), site.recorded)


def site_param(site: str, *values: object) -> Any:
    """A parametrize entry for a case at `site`, skipped (saying why) where the site needs the x86 target."""
    return pytest.param(site, *values, marks=[NEEDS_X86] if SITES[site].needs_x86 else [])
