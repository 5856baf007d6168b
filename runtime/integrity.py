"""What the runtime checks before it trusts a file: the records an artifact keeps of its small files, the
weights it streams in, and the entries of the on-disk code caches.

An artifact's tessera.json holds `files`: {relative path: {sha256, bytes}} for every file the compiler wrote
except the weight shards (the weights manifest, itself recorded, holds their hashes; they are checked while
they stream in, model/checkpoint.load_weights). A session checks each file it is about to use —
program.json, the LLVM IR or kernel library, the code object, the weights manifest, the tokenizer — before
reading or loading it, so a truncated library is refused in one line instead of dying in ctypes with SIGBUS.

A cache entry (targets/kernel_cache.py, the JIT object cache in runtime/kernels.py) is sealed: a magic line,
the SHA-256 of the payload, then the payload. An entry that is empty, truncated, of another format or whose
digest does not match is treated as absent: rebuilt and rewritten, never used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tessera.errors import TesseraError
from tessera.safe_io import check_file_record, file_record
from tessera.staging import write_atomically

if TYPE_CHECKING:
    from tessera.model.weight_init import SeededWeights
    from tessera.runtime.artifact import Artifact

FILES_FIELD = "files"
VERIFY_WEIGHTS_ENV = "TESSERA_VERIFY_WEIGHTS"


class IntegrityError(TesseraError):
    """A file of an artifact that is missing, modified or truncated since it was compiled."""


# --- artifact records ----------------------------------------------------------------------------------


def record_files(root: Path, skip: Collection[str]) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} of every regular file under `root`, except the relative paths in
    `skip` (tessera.json itself, the weight shards)."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(root).rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and relative not in skip:
            records[relative] = file_record(path)
    return records


def check_records(records: object, source: Path) -> dict[str, Any]:
    """The `files` map of a manifest, checked for its shape (each record is checked when its file is used)."""
    if not isinstance(records, dict) or not all(isinstance(name, str) for name in records):
        raise IntegrityError(f"{source}: field '{FILES_FIELD}' is not a map of relative paths to file records")
    return records


def record_for(records: Mapping[str, Any], relative: str, source: Path) -> Any:
    if relative not in records:
        raise IntegrityError(f"{source}: no sha256 recorded for '{relative}' (rebuild it with tessera-compile)")
    return records[relative]


def check_file(path: Path, records: Mapping[str, Any], relative: str, source: Path) -> None:
    """Refuse `path` (the artifact's `relative`) unless its size and SHA-256 are those `source` records."""
    check_file_record(path, record_for(records, relative, source), str(source), error=IntegrityError)


def check_bytes(data: bytes, record: object, path: Path, source: str) -> None:
    """check_file_record for bytes already read: what is hashed is exactly what is then used."""
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise IntegrityError(f"{source}: no sha256 / bytes record for {path.name}")
    if len(data) != record.get("bytes"):
        raise IntegrityError(
            f"{path}: {len(data)} bytes, {source} records {record.get('bytes')} (truncated or modified)"
        )
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise IntegrityError(f"{path}: sha256 does not match {source} (corrupt or modified)")


def verify_weights_default() -> bool:
    """Whether sessions hash weight shards as they load: yes unless TESSERA_VERIFY_WEIGHTS=0."""
    value = os.environ.get(VERIFY_WEIGHTS_ENV, "1")
    if value not in ("0", "1"):
        raise TesseraError(f"{VERIFY_WEIGHTS_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def seeded_weights(artifact: Artifact) -> SeededWeights | None:
    """The artifact's weights as their seed, where it has no checkpoint (a GPU session draws them on the
    device); None where it has one."""
    from tessera.model.config import config_from_dict
    from tessera.model.weight_init import SeededWeights

    if artifact.weights.get("kind") == "checkpoint":
        return None
    config = config_from_dict(artifact.config, str(artifact.file("tessera.json")), strict=False)
    return SeededWeights(config, int(artifact.weights.get("seed", 0)))


def artifact_weights(artifact: Artifact, verify: bool | None = None) -> dict[str, np.ndarray]:
    """The artifact's weights as float32 arrays: its checkpoint (manifest checked against tessera.json,
    shards size- and header-checked at open and hashed as they stream in, unless `verify` is False or
    TESSERA_VERIFY_WEIGHTS=0), or weights drawn from its seed."""
    from tessera.model.checkpoint import MANIFEST, load_weights

    if artifact.weights.get("kind") == "checkpoint":
        directory = str(artifact.weights["dir"])
        artifact.checked(f"{directory}/{MANIFEST}", "weights.dir")
        return load_weights(
            artifact.file(directory, "weights.dir"), verify=verify_weights_default() if verify is None else verify
        )
    seeded = seeded_weights(artifact)
    assert seeded is not None
    return seeded.arrays()


# --- cache entries -------------------------------------------------------------------------------------

CACHE_MAGIC = b"tessera-cache-entry 1\n"
_DIGEST_BYTES = 32


def seal(payload: bytes) -> bytes:
    return CACHE_MAGIC + hashlib.sha256(payload).digest() + payload


def unseal(entry: bytes) -> bytes | None:
    """The payload of a sealed entry, or None for one that is empty, truncated, foreign or corrupt."""
    start = len(CACHE_MAGIC) + _DIGEST_BYTES
    if len(entry) <= start or not entry.startswith(CACHE_MAGIC):
        return None
    payload = entry[start:]
    if hashlib.sha256(payload).digest() != entry[len(CACHE_MAGIC) : start]:
        return None
    return payload


def read_cache_entry(path: Path) -> bytes | None:
    """The payload cached at `path`, or None when there is none or it does not check (then rebuild it)."""
    try:
        return unseal(path.read_bytes())
    except OSError:
        return None


def write_cache_entry(path: Path, payload: bytes) -> None:
    """Seal and write `payload` atomically (fsync + rename); a read-only or full cache only costs the next
    build its time, so the error is swallowed."""
    try:
        write_atomically(path, seal(payload))
    except OSError:
        pass
