"""The compiled-artifact directory that `tessera-compile -o OUT` writes and `tessera-run OUT` reads.

    OUT/
      tessera.json     this manifest: model name and config (HF fields), compile options, targets built,
                       where the weights come from, tokenizer
      graph.mlir       Graph-IR (tessera.graph + nemotron): the program every target starts from
      weights/         the Tessera weight layout (tessera-convert's output), when compiled from a checkpoint;
                       absent when weights are drawn from a seed at run time
      tokenizer.json   the checkpoint's tokenizer, when it has one
      <target>/        what each target adds (machine code, launch metadata, ...)

OUT is self-contained: nothing outside it is read at run time. tessera.json records, under `files`, the
size and SHA-256 of every other file except the weight shards (whose hashes the recorded weights manifest
holds); each is checked when a session is about to use it (runtime/integrity.py). tessera.json itself is
checked whole when it is read: every path it names, the weights' kind and seed, the model config. Nothing
here needs the compiler (numpy, the standard library, and model/'s config checks), so the runtime stays light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.errors import TesseraError
from tessera.manifest_json import read_manifest_json
from tessera.runtime.cpu_features import MATRIX_VARIANTS
from tessera.runtime.integrity import check_bytes, check_file, check_records, record_files, record_for
from tessera.safe_io import contained_path, read_bytes, read_json
from tessera.staging import check_apart, staged_directory

MANIFEST_NAME = "tessera.json"
# What an artifact's small files (IR, programs, code objects, tokenizer) may weigh when read whole.
MAX_SMALL_FILE_BYTES = 256 * 2**20
FORMAT = "tessera-artifact"
# 2: tessera.json records its files' hashes, program.json its kernels' compiled signatures.
FORMAT_VERSION = 2


class ArtifactError(TesseraError):
    """A compiled-artifact directory that cannot be used."""


@dataclass
class Artifact:
    path: Path
    name: str
    config: dict[str, Any]  # HF config.json fields
    compile: dict[str, Any]
    targets: dict[str, dict[str, Any]]
    weights: dict[str, Any]  # {"kind": "checkpoint", "dir": "weights"} or {"kind": "random", "seed": N}
    tokenizer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)  # relative path -> {sha256, bytes}

    def file(self, relative: object, field: str = "path") -> Path:
        """OUT/relative for a path tessera.json names in `field`: refused unless it is relative and
        resolves inside OUT, symlinks followed (OUT is self-contained: a run reads nothing outside it)."""
        source = f"{self.path / MANIFEST_NAME}: field '{field}'"
        contained_path(self.path, relative, source, error=ArtifactError)
        return self.path / str(relative)

    def checked(self, relative: str, field: str = "path") -> Path:
        """The path of `relative` (named in `field`), once its size and SHA-256 are those tessera.json records."""
        path = self.file(relative, field)
        check_file(path, self.files, relative, self.path / MANIFEST_NAME)
        return path

    def checked_bytes(self, relative: str, field: str = "path", max_bytes: int = MAX_SMALL_FILE_BYTES) -> bytes:
        """The bytes of `relative` (named in `field`), checked against tessera.json's record (hashed as read,
        used as hashed); a file larger than `max_bytes` is refused before it is read."""
        path = self.file(relative, field)
        manifest = self.path / MANIFEST_NAME
        record = record_for(self.files, relative, manifest)
        data = read_bytes(path, max_bytes, ArtifactError)
        check_bytes(data, record, path, str(manifest))
        return data

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "config": self.config,
            "compile": self.compile,
            "targets": self.targets,
            "weights": self.weights,
            "tokenizer": self.tokenizer,
            **self.extra,
            "files": self.files,
        }


def read_artifact(path: str | os.PathLike[str]) -> Artifact:
    root = Path(path)
    if not root.exists():
        raise ArtifactError(f"{root}: no such directory")
    manifest = root / MANIFEST_NAME
    missing = f"not a Tessera artifact (no {MANIFEST_NAME}; build it with tessera-compile)"
    stale = "built by an older Tessera: rebuild it with tessera-compile"
    data = read_manifest_json(manifest, FORMAT, FORMAT_VERSION, ArtifactError, missing, stale=stale)
    _check_manifest(root, manifest, data)
    known = {"format", "format_version", "name", "config", "compile", "targets", "weights", "tokenizer", "files"}
    return Artifact(
        path=root,
        name=data["name"],
        config=data["config"],
        compile=data["compile"],
        targets=data["targets"],
        weights=data["weights"],
        tokenizer=data.get("tokenizer"),
        extra={k: v for k, v in data.items() if k not in known},
        files=check_records(data["files"], manifest),
    )


# Fields of a target's entry that name files of the artifact (libraries: a map of them, by ISA level), and
# those each target's session needs.
PATH_FIELDS = ("program", "llvm_ir", "library", "ptx", "code_object")
REQUIRED_FIELDS = {"x86": ("program", "llvm_ir"), "rocdl": ("program",), "nvvm": ("program",)}
SEED_LIMIT = 2**63  # numpy's generators take any non-negative seed; the manifest reader's integers are int64


def _check_manifest(root: Path, manifest: Path, data: dict[str, Any]) -> None:
    """tessera.json's fields, before anything they name is opened: each present and of its type, every path
    relative and inside OUT, the weights' kind and seed, the model config as a config loader checks it."""
    from tessera.model.config import compile_options_from_dict, config_from_dict

    kinds = {"name": str, "config": dict, "compile": dict, "targets": dict, "weights": dict, "files": dict}
    for key, kind in kinds.items():
        if not isinstance(data.get(key), kind):
            found = "missing" if key not in data else f"expected a {kind.__name__}, got {data[key]!r:.60}"
            raise ArtifactError(f"{manifest}: field '{key}' {found}")

    def path(relative: object, field: str) -> None:
        contained_path(root, relative, f"{manifest}: field '{field}'", error=ArtifactError)

    for target, entry in data["targets"].items():
        if not isinstance(entry, dict):
            raise ArtifactError(f"{manifest}: field 'targets.{target}': expected a map, got {entry!r:.60}")
        for name in REQUIRED_FIELDS.get(target, ()):
            if name not in entry:
                raise ArtifactError(f"{manifest}: field 'targets.{target}.{name}' missing")
        for name in PATH_FIELDS:
            if entry.get(name) is not None:
                path(entry[name], f"targets.{target}.{name}")
        libraries = entry.get("libraries") or {}
        if not isinstance(libraries, dict):
            raise ArtifactError(f"{manifest}: field 'targets.{target}.libraries': expected a map of paths")
        for isa, library in libraries.items():
            path(library, f"targets.{target}.libraries.{isa}")
        # The runtime falls back to the baseline library, and runs matrix variants from their own.
        variants = [(isa, entry.get(f"{isa}_kernels")) for isa in MATRIX_VARIANTS]
        needed = [isa for isa, wanted in (("generic", libraries), *variants) if wanted]
        if target == "x86" and not libraries and "library" not in entry:
            raise ArtifactError(f"{manifest}: field 'targets.x86.libraries' missing")
        for isa in needed:
            if isa not in libraries:
                raise ArtifactError(f"{manifest}: field 'targets.{target}.libraries.{isa}' missing")
    weights = data["weights"]
    if weights.get("kind") == "checkpoint":
        path(weights.get("dir"), "weights.dir")
    elif weights.get("kind") == "random":
        seed = weights.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
            raise ArtifactError(f"{manifest}: field 'weights.seed': expected an integer in [0, 2^63), got {seed!r}")
    else:
        raise ArtifactError(
            f"{manifest}: field 'weights.kind': expected 'checkpoint' or 'random', got {weights.get('kind')!r:.60}"
        )
    if data.get("tokenizer") is not None:
        path(data["tokenizer"], "tokenizer")
    config = config_from_dict(data["config"], f"{manifest}: config", strict=False)
    compile_options_from_dict(data["compile"], f"{manifest}: compile", config)  # as a model.yaml's are


def write_manifest(artifact: Artifact) -> None:
    """Write tessera.json, recording first every file of the artifact but the weight shards."""
    artifact.files = record_files(artifact.path, {MANIFEST_NAME, *_weight_shards(artifact)})
    text = json.dumps(artifact.to_json(), indent=2, sort_keys=False, default=_json_default) + "\n"
    (artifact.path / MANIFEST_NAME).write_text(text)


def _weight_shards(artifact: Artifact) -> list[str]:
    """The shards the weights manifest records (and checks as they stream in): not recorded again."""
    if artifact.weights.get("kind") != "checkpoint":
        return []
    directory = str(artifact.weights["dir"])
    manifest = read_json(artifact.path / directory / "manifest.json", error=ArtifactError)
    return [f"{directory}/{shard['file']}" for shard in manifest["shards"]]


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {value!r}")


def _refuse_non_artifact(out: Path) -> str | None:
    if (out / MANIFEST_NAME).is_file() or (out.is_dir() and not any(out.iterdir())):
        return None
    return "exists and is not a Tessera artifact; refusing to overwrite it"


def check_output_directory(out: Path, inputs: Iterable[Path | None] = ()) -> None:
    """Refuse an -o that is, holds or lies inside one of the `inputs` (the model's files), or holds
    something other than a Tessera artifact (checked before any work)."""
    check_apart(out, inputs, error=ArtifactError)
    reason = _refuse_non_artifact(out) if out.exists() else None
    if reason is not None:
        raise ArtifactError(f"{out}: {reason}")


def staged_artifact(out: Path, inputs: Iterable[Path | None] = ()) -> AbstractContextManager[Path]:
    """Build an artifact all or nothing; an existing OUT is replaced only if it is an artifact (a rebuild),
    and never if it is, holds or lies inside one of the `inputs`."""
    return staged_directory(out, _refuse_non_artifact, inputs=inputs)
