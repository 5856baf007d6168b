"""Tessera's weight directories, read: what every consumer of weights needs, the compiler and the runtime alike
(frontend/checkpoint.py writes them from Hugging Face checkpoints and exports them back).

    load_weights(out)                 arrays by Tessera name, shard sizes checked at open and hashes as they
                                      stream in
    read_manifest(out)                OUT/manifest.json, its fields checked before any is used

OUT/manifest.json's format is frontend/checkpoint.py's docstring.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera.manifest_json import read_manifest_json
from tessera.model.config import config_from_dict
from tessera.model.safetensors_io import DTYPES, CheckpointError, SafetensorsFile, to_float32
from tessera.model.weights_layout import model_tensors
from tessera.safe_io import HASH_BLOCK, MAX_WEIGHTS_MANIFEST_BYTES, contained_path, sha256_file

MANIFEST = "manifest.json"
FORMAT = "tessera-weights"
FORMAT_VERSION = 1
# Weights are floats: an integer tensor of the right byte count (a float relabelled I32) would read as
# garbage. These are the dtypes to_float32 reads (F64 narrowed, the others widened exactly).
WEIGHT_DTYPES = ("F32", "BF16", "F16", "F64")


def check_weight_dtype(path: Path, tensor: str, dtype: str) -> None:
    if dtype not in WEIGHT_DTYPES:
        raise CheckpointError(
            f"{path}: tensor '{tensor}' has dtype {dtype}, not a float dtype of the weight layout "
            f"({', '.join(WEIGHT_DTYPES)})"
        )


def read_manifest(directory: Path) -> dict[str, Any]:
    missing = f"not a Tessera weight directory (no {MANIFEST})"
    manifest = read_manifest_json(
        Path(directory) / MANIFEST,
        FORMAT,
        FORMAT_VERSION,
        CheckpointError,
        missing,
        max_bytes=MAX_WEIGHTS_MANIFEST_BYTES,
    )
    _check_manifest(Path(directory), manifest)
    return manifest


def _check_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """The fields every reader relies on, before any is used: the config a map, every shard a relative file
    inside the directory (symlinks followed) with its sha256 and size, every tensor in one of those shards —
    a manifest can make a reader neither open a file elsewhere nor fail on a missing field."""
    source = directory / MANIFEST
    if not isinstance(manifest.get("config"), dict):
        raise CheckpointError(f"{source}: field 'config': expected a map of HF config fields")
    shards, tensors = manifest.get("shards"), manifest.get("tensors")
    if not isinstance(shards, list) or not all(isinstance(shard, dict) for shard in shards):
        raise CheckpointError(f"{source}: field 'shards': expected a list of {{file, sha256, bytes}}")
    for i, shard in enumerate(shards):
        contained_path(directory, shard.get("file"), f"{source}: field 'shards[{i}].file'", error=CheckpointError)
        digest, size = shard.get("sha256"), shard.get("bytes")
        if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CheckpointError(f"{source}: field 'shards[{i}]': expected a sha256 string and a byte count")
    if not isinstance(tensors, dict) or not all(isinstance(entry, dict) for entry in tensors.values()):
        raise CheckpointError(f"{source}: field 'tensors': expected a map of {{shard, dtype, shape}}")
    files = {shard["file"] for shard in shards}
    for name, entry in tensors.items():
        if not isinstance(entry.get("shard"), str) or entry["shard"] not in files:
            raise CheckpointError(
                f"{source}: field 'tensors.{name}.shard': {entry.get('shard')!r} is not a listed shard"
            )


def open_shards(directory: Path, manifest: dict[str, Any], hash_now: bool) -> dict[str, SafetensorsFile]:
    """Every shard, its size checked against the manifest and its header parsed (cheap: a truncated shard
    is refused before anything is mapped); hash_now: its sha256 too, reading every byte once first."""
    shards = {}
    for shard in manifest["shards"]:
        path = Path(directory) / shard["file"]
        if not path.is_file():
            raise CheckpointError(f"{path}: shard missing")
        size = path.stat().st_size
        if size != shard.get("bytes"):
            raise CheckpointError(
                f"{path}: {size} bytes, {MANIFEST} records {shard.get('bytes')} (truncated or modified shard)"
            )
        if hash_now and sha256_file(path) != shard["sha256"]:
            raise CheckpointError(f"{path}: sha256 does not match the manifest (corrupt or modified shard)")
        shards[shard["file"]] = SafetensorsFile(path)
    return shards


def load_weights(
    directory: Path, dtype: npt.DTypeLike | None = np.float32, verify: bool = True
) -> dict[str, np.ndarray]:
    """Every tensor of a converted checkpoint by Tessera name, in model order.

    dtype: float32 (the default; bf16 and fp16 widen exactly) or another float dtype to cast to;
    None keeps the stored dtype (bf16 as its raw uint16 bits), memory-mapped.
    verify: check each shard's sha256 against the manifest. Each shard's size and header are checked at open
    either way; with a dtype, each shard is read once, in file order, its blocks feeding both the hash and
    the arrays, and a mismatch fails here, before any array is returned (with None, the shards are hashed
    first, since their tensors are mapped, not read).
    """
    manifest = read_manifest(directory)
    shards = open_shards(directory, manifest, hash_now=verify and dtype is None)
    config = config_from_dict(manifest["config"], str(Path(directory) / MANIFEST), strict=False)
    specs = model_tensors(config)
    for spec in specs:
        entry = manifest["tensors"].get(spec.name)
        if entry is None or entry.get("shard") not in shards:
            raise CheckpointError(f"{directory}: tensor '{spec.name}' missing from {MANIFEST}")
        file = shards[entry["shard"]]
        if spec.name not in file.tensors or file.tensors[spec.name].shape != spec.shape:
            raise CheckpointError(f"{file.path}: tensor '{spec.name}' missing or not of shape {list(spec.shape)}")
        stored = file.tensors[spec.name].dtype
        check_weight_dtype(file.path, spec.name, stored)
        if entry.get("dtype") != stored:  # the manifest and the shard it names must tell the same story
            raise CheckpointError(
                f"{Path(directory) / MANIFEST}: field 'tensors.{spec.name}.dtype' is {entry.get('dtype')!r}, "
                f"the shard holds {stored}"
            )
    if dtype is None:
        return {spec.name: shards[manifest["tensors"][spec.name]["shard"]].raw(spec.name) for spec in specs}
    arrays: dict[str, np.ndarray] = {}
    for shard in manifest["shards"]:  # read_manifest checked each has its sha256
        arrays |= _stream_shard(shards[shard["file"]], np.dtype(dtype), shard["sha256"] if verify else None)
    return {spec.name: arrays[spec.name] for spec in specs}


def _stream_shard(file: SafetensorsFile, dtype: np.dtype, sha256: str | None) -> dict[str, np.ndarray]:
    """Every tensor of `file` as `dtype`, read once in file order; with `sha256`, every byte read is hashed
    on the way and the shard refused, in one line, unless the digest is the manifest's."""
    digest = hashlib.sha256()
    arrays: dict[str, np.ndarray] = {}
    with file.path.open("rb") as handle:
        head = handle.read(file.data_start)  # length prefix and header: part of what the manifest hashed
        if head[8:] != file.header_text:  # the tensors are sliced by the header read at open
            raise CheckpointError(f"{file.path}: changed while being read")
        digest.update(head)
        for info in sorted(file.tensors.values(), key=lambda t: t.begin):
            arrays[info.name] = _read_tensor(handle, file.path, info.dtype, info.shape, dtype, digest)
        while tail := handle.read(HASH_BLOCK):  # bytes appended since the size check: in the hash too
            digest.update(tail)
    if sha256 is not None and digest.hexdigest() != sha256:
        raise CheckpointError(f"{file.path}: sha256 does not match the manifest (corrupt or modified shard)")
    return arrays


def _read_tensor(
    handle: io.BufferedIOBase, path: Path, stored: str, shape: tuple[int, ...], dtype: np.dtype, digest: Any
) -> np.ndarray:
    """The next tensor of an open shard as `dtype`, read and converted block by block (memory: the array
    and one block); every block read also feeds `digest`."""
    storage = DTYPES[stored]
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    per_block = max(1, HASH_BLOCK // storage.itemsize)
    direct = storage == dtype  # stored as wanted (float32 weights): read straight into the array
    scratch = None if direct else np.empty(min(flat.size, per_block), storage)
    for begin in range(0, flat.size, per_block):
        count = min(per_block, flat.size - begin)
        target = flat[begin : begin + count] if scratch is None else scratch[:count]
        buffer = target.view(np.uint8).data
        if handle.readinto(buffer) != buffer.nbytes:
            raise CheckpointError(f"{path}: truncated while reading")
        digest.update(buffer)
        if scratch is not None:
            flat[begin : begin + count] = to_float32(target, stored)
    return out
