"""Hugging Face checkpoints <-> Tessera's weight layout.

    convert_checkpoint(hf_dir, out)   HF safetensors (single or sharded, backbone./model. prefix,
                                      fp32/bf16/fp16) -> out/weights-0000i-of-0000n.safetensors + manifest.json
    export_checkpoint(out, hf_out)    back to the HF files, byte for byte
    load_weights(out)                 float32 arrays by Tessera name, shard hashes checked as they stream in
    random_weights(config, seed)      weights drawn like HF's initialisation, for configs without any

Tensors keep their stored dtype and bits (the layout only renames, squeezes and stacks), input files are
memory-mapped and output written tensor by tensor, so memory stays bounded by the page cache.

OUT/manifest.json:
    format, format_version       "tessera-weights", 1
    config                       the model as HF config.json fields (hf_config_dict)
    shards                       [{file, sha256, bytes}] of OUT/weights-0000i-of-0000n.safetensors
    tensors                      {Tessera name: {shard, dtype (stored, e.g. BF16), shape}}
    hf                           what the export needs to write the source files back exactly:
        prefix                   "backbone.", "model." or ""
        files                    [{file, header}]: each HF file's safetensors header text as read, so
                                 which tensors it held, in which order, dtype, shape and __metadata__
        index_text               model.safetensors.index.json as read (null when not sharded)
        lm_head_stored           false when a tied checkpoint left lm_head.weight out
        ignored                  HF tensors left out (mtp.*, which transformers skips too)
        json_files               config.json and generation_config.json as read
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera.frontend.config import ModelConfig, config_from_dict, hf_config_dict, load_model
from tessera.frontend.safetensors_io import (
    DTYPES,
    ByteRange,
    CheckpointError,
    SafetensorsFile,
    TensorToWrite,
    sha256_file,
    to_float32,
    write_safetensors,
)
from tessera.frontend.weights_layout import HF_PREFIXES, TensorSpec, hf_shape, model_tensors
from tessera.manifest_json import read_manifest_json
from tessera.safe_io import HASH_BLOCK, MAX_JSON_BYTES, decode_text, parse_json_text, read_bytes
from tessera.staging import staged_directory

MANIFEST = "manifest.json"
FORMAT = "tessera-weights"
FORMAT_VERSION = 1
INDEX = "model.safetensors.index.json"
# Tensors transformers itself skips when loading NemotronH (multi-token-prediction heads).
IGNORED_HF_TENSORS = re.compile(r"^(backbone\.|model\.)?mtp\.")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Small JSON files of an HF checkpoint, kept verbatim in the manifest so that the export gives them back.
SIDE_FILES = ("config.json", "generation_config.json")


@dataclass
class HFCheckpoint:
    """An HF checkpoint directory, every safetensors header read and checked, no tensor read yet."""

    directory: Path
    files: dict[str, SafetensorsFile]  # file name -> file
    where: dict[str, str]  # tensor name -> file name
    prefix: str  # "backbone.", "model." or ""
    index_text: str | None  # model.safetensors.index.json as written, when sharded


def open_hf_checkpoint(directory: Path) -> HFCheckpoint:
    """Open every *.safetensors of `directory` (those of the index's weight_map when it has one)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    index_path = directory / INDEX
    index_text = None
    weight_map: dict[str, str] = {}
    if index_path.is_file():
        index_text = decode_text(read_bytes(index_path, MAX_JSON_BYTES, CheckpointError), str(index_path))
        index = parse_json_text(index_text, str(index_path), error=CheckpointError)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index_path}: not a valid safetensors index (no weight_map of file names)")
        names = sorted(set(weight_map.values()))
    else:
        names = sorted(p.name for p in directory.glob("*.safetensors"))
    if not names:
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{directory / pickles[0]}: pickle checkpoints are not read (loading one can run arbitrary code); "
                "convert it to safetensors"
            )
        raise CheckpointError(f"{directory}: no *.safetensors weights")
    files: dict[str, SafetensorsFile] = {}
    where: dict[str, str] = {}
    for name in names:
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory / name}: listed in {INDEX} but missing")
        files[name] = SafetensorsFile(directory / name)
        for tensor in files[name].tensors:
            if tensor in where:
                raise CheckpointError(f"{directory / name}: tensor '{tensor}' also in {where[tensor]}")
            where[tensor] = name
    for tensor, name in weight_map.items():
        if where.get(tensor) != name:
            raise CheckpointError(f"{index_path}: tensor '{tensor}' is listed in {name} but is not there")
    prefix = next((p for p in HF_PREFIXES if any(t.startswith(p) for t in where)), "")
    return HFCheckpoint(directory, files, where, prefix, index_text)


def _hf_name(checkpoint: HFCheckpoint, name: str) -> str:
    return name if name == "lm_head.weight" else checkpoint.prefix + name


def _gather(checkpoint: HFCheckpoint, spec: TensorSpec, config: ModelConfig) -> tuple[str, list[ByteRange]]:
    """The stored arrays that make up `spec` (several when stacked), checked for presence, dtype, shape."""
    names = [_hf_name(checkpoint, n) for n in spec.hf_names]
    if spec.name == "lm_head.weight" and names[0] not in checkpoint.where and config.tie_word_embeddings:
        names = [_hf_name(checkpoint, "embeddings.weight")]  # tied and not stored: the embedding serves
    parts, dtypes = [], set()
    for name in names:
        if name not in checkpoint.where:
            raise CheckpointError(f"{checkpoint.directory}: tensor '{name}' is missing")
        file = checkpoint.files[checkpoint.where[name]]
        info = file.tensors[name]
        if info.shape != hf_shape(spec):
            raise CheckpointError(
                f"{file.path}: tensor '{name}' has shape {list(info.shape)}, expected {list(hf_shape(spec))}"
            )
        dtypes.add(info.dtype)
        parts.append(file.byte_range(name))
    if len(dtypes) != 1:
        raise CheckpointError(f"{checkpoint.directory}: tensors of '{spec.name}' mix dtypes {sorted(dtypes)}")
    return dtypes.pop(), parts


def convert_checkpoint(
    hf_dir: Path,
    out_dir: Path,
    config: ModelConfig | None = None,
    shard_bytes: int = 2**30,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert an HF checkpoint directory into the Tessera layout at out_dir; returns the manifest.

    Every HF tensor is checked (present, shape, one dtype per stacked tensor) before anything is
    written; out_dir appears whole or not at all. Tensors transformers skips on load (mtp.*) are
    left out and listed in manifest["hf"]["ignored"]; any other tensor outside the layout is an error.
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    config = config or load_model(hf_dir).config
    checkpoint = open_hf_checkpoint(hf_dir)
    specs = model_tensors(config)
    tensors = []
    for spec in specs:
        dtype, parts = _gather(checkpoint, spec, config)
        tensors.append(TensorToWrite(spec.name, dtype, spec.shape, parts))
    used = {_hf_name(checkpoint, n) for spec in specs for n in spec.hf_names}
    unused = sorted(n for n in checkpoint.where if n not in used)
    extra = [n for n in unused if not IGNORED_HF_TENSORS.match(n)]
    if extra:
        where = checkpoint.files[checkpoint.where[extra[0]]].path
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise CheckpointError(f"{where}: tensor '{extra[0]}'{more} is not part of this model's layout")

    hf_record = {
        "prefix": checkpoint.prefix,
        "index_text": checkpoint.index_text,
        "files": [{"file": n, "header": f.header_text.decode()} for n, f in checkpoint.files.items()],
        "lm_head_stored": "lm_head.weight" in checkpoint.where,
        "ignored": unused,
        "json_files": {p.name: p.read_text() for p in (hf_dir / n for n in SIDE_FILES) if p.is_file()},
    }
    shards = _plan_shards(tensors, shard_bytes)
    with staged_directory(out_dir, _refuse_unless(overwrite)) as staging:
        manifest = _write_shards(staging, shards, config, progress)
        manifest["hf"] = hf_record
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _refuse_unless(overwrite: bool) -> Callable[[Path], str | None]:
    def refuse(out: Path) -> str | None:
        if overwrite or (out.is_dir() and not any(out.iterdir())):
            return None
        return "exists and is not empty (use --force to replace it)"

    return refuse


def _plan_shards(tensors: list[TensorToWrite], shard_bytes: int) -> list[list[TensorToWrite]]:
    shards: list[list[TensorToWrite]] = [[]]
    size = 0
    for tensor in tensors:
        if shards[-1] and size + tensor.nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    return shards


def _write_shards(
    staging: Path, shards: list[list[TensorToWrite]], config: ModelConfig, progress: bool
) -> dict[str, Any]:
    from tqdm import tqdm

    total = sum(t.nbytes for shard in shards for t in shard)
    # disable=None: tqdm stays quiet when stderr is not a terminal (logs, CI).
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="converting", disable=None if progress else True)
    manifest_tensors: dict[str, Any] = {}
    manifest_shards = []
    with bar:
        for number, shard in enumerate(shards, start=1):
            name = f"weights-{number:05d}-of-{len(shards):05d}.safetensors"
            # Widest dtypes first keeps every tensor aligned to its element size.
            ordered = sorted(shard, key=lambda t: -DTYPES[t.dtype].itemsize)
            digest, size = write_safetensors(staging / name, ordered, {"format": "tessera"}, bar.update)
            manifest_shards.append({"file": name, "sha256": digest, "bytes": size})
            for tensor in shard:
                manifest_tensors[tensor.name] = {"shard": name, "dtype": tensor.dtype, "shape": list(tensor.shape)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": hf_config_dict(config),
        "shards": manifest_shards,
        "tensors": manifest_tensors,
    }


def read_manifest(directory: Path) -> dict[str, Any]:
    missing = f"not a Tessera weight directory (no {MANIFEST})"
    return read_manifest_json(Path(directory) / MANIFEST, FORMAT, FORMAT_VERSION, CheckpointError, missing)


def _open_shards(directory: Path, manifest: dict[str, Any], hash_now: bool) -> dict[str, SafetensorsFile]:
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
    shards = _open_shards(directory, manifest, hash_now=verify and dtype is None)
    config = config_from_dict(manifest["config"], str(Path(directory) / MANIFEST), strict=False)
    specs = model_tensors(config)
    for spec in specs:
        entry = manifest["tensors"].get(spec.name)
        if entry is None or entry.get("shard") not in shards:
            raise CheckpointError(f"{directory}: tensor '{spec.name}' missing from {MANIFEST}")
        file = shards[entry["shard"]]
        if spec.name not in file.tensors or file.tensors[spec.name].shape != spec.shape:
            raise CheckpointError(f"{file.path}: tensor '{spec.name}' missing or not of shape {list(spec.shape)}")
    if dtype is None:
        return {spec.name: shards[manifest["tensors"][spec.name]["shard"]].raw(spec.name) for spec in specs}
    arrays: dict[str, np.ndarray] = {}
    for shard in manifest["shards"]:
        expected = shard.get("sha256")
        if verify and not isinstance(expected, str):
            raise CheckpointError(f"{Path(directory) / MANIFEST}: shard '{shard['file']}' has no sha256")
        arrays |= _stream_shard(shards[shard["file"]], np.dtype(dtype), expected if verify else None)
    return {spec.name: arrays[spec.name] for spec in specs}


def _stream_shard(file: SafetensorsFile, dtype: np.dtype, sha256: str | None) -> dict[str, np.ndarray]:
    """Every tensor of `file` as `dtype`, read once in file order; with `sha256`, every byte read is hashed
    on the way and the shard refused, in one line, unless the digest is the manifest's."""
    digest = hashlib.sha256()
    arrays: dict[str, np.ndarray] = {}
    with file.path.open("rb") as handle:
        head = handle.read(file.data_start)  # length prefix and header: part of what the manifest hashed
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


def export_checkpoint(directory: Path, hf_out: Path, overwrite: bool = False) -> None:
    """Write the HF files the checkpoint was converted from: same names, headers, bytes and index.

    Tensors left out at conversion (manifest["hf"]["ignored"], e.g. mtp.*) stay out: their files
    lose them, a file left empty is not written, and the index is rewritten to match.
    """
    directory, hf_out = Path(directory), Path(hf_out)
    manifest = read_manifest(directory)
    shards = _open_shards(directory, manifest, hash_now=True)
    config = config_from_dict(manifest["config"], str(directory / MANIFEST), strict=False)
    hf = manifest["hf"]
    source: dict[str, tuple[TensorSpec, int | None]] = {}  # HF name -> (Tessera tensor, stack index)
    for spec in model_tensors(config):
        for i, name in enumerate(spec.hf_names):
            hf_name = name if name == "lm_head.weight" else hf["prefix"] + name
            source[hf_name] = (spec, i if spec.transform == "stack" else None)
    weight_map: dict[str, str] = {}
    with staged_directory(hf_out, _refuse_unless(overwrite)) as staging:
        for entry in hf["files"]:
            header = json.loads(entry["header"])
            metadata = header.pop("__metadata__", None)
            tensors = []
            for hf_name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
                if hf_name not in source:
                    continue  # left out at conversion: not part of the model
                spec, index = source[hf_name]
                file = shards[manifest["tensors"][spec.name]["shard"]]
                part = file.byte_range(spec.name, index)
                tensors.append(TensorToWrite(hf_name, info["dtype"], tuple(info["shape"]), [part]))
                weight_map[hf_name] = entry["file"]
            # The header as the source's writer wrote it (key order, spacing, padding) when every tensor
            # is kept: the conversion checked that its tensors tile the data section, so it still holds.
            original = entry["header"].encode()
            verbatim = struct.pack("<Q", len(original)) + original if len(tensors) == len(header) else None
            if tensors:
                write_safetensors(staging / entry["file"], tensors, metadata, header=verbatim)
        if hf["index_text"] is not None:
            (staging / INDEX).write_text(_index_text(hf["index_text"], weight_map, manifest, source))
        for name, text in hf["json_files"].items():
            (staging / name).write_text(text)
        if "config.json" not in hf["json_files"]:
            (staging / "config.json").write_text(json.dumps(manifest["config"], indent=2) + "\n")


def _index_text(
    original: str,
    weight_map: dict[str, str],
    manifest: dict[str, Any],
    source: dict[str, tuple[TensorSpec, int | None]],
) -> str:
    index = json.loads(original)
    if weight_map == index["weight_map"]:
        return original
    # Some tensors were left out: list only those written, and total them as transformers does
    # (total_size: bytes of every tensor; total_parameters: elements of parameters, not buffers).
    index["weight_map"] = weight_map
    metadata = index.setdefault("metadata", {})
    specs = [source[hf_name][0] for hf_name in weight_map]
    numels = [int(np.prod(hf_shape(spec), dtype=np.int64)) for spec in specs]
    itemsizes = [DTYPES[manifest["tensors"][spec.name]["dtype"]].itemsize for spec in specs]
    metadata["total_size"] = sum(n * size for n, size in zip(numels, itemsizes, strict=True))
    if "total_parameters" in metadata:
        metadata["total_parameters"] = sum(n for n, spec in zip(numels, specs, strict=True) if spec.parameter)
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def random_weights(config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Float32 weights drawn from `seed` like HF's _init_weights, so a config without weights runs sensibly."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for spec in model_tensors(config):
        leaf = spec.name.rsplit(".", 1)[-1]
        if spec.name.endswith("norm.weight"):
            value = np.ones(spec.shape, np.float32)
        elif leaf == "A_log":
            value = np.log(np.arange(1, spec.shape[0] + 1, dtype=np.float32))
        elif leaf == "D":
            value = np.ones(spec.shape, np.float32)
        elif leaf == "dt_bias":
            low, high = np.log(config.time_step_min), np.log(config.time_step_max)
            dt = np.maximum(np.exp(rng.uniform(low, high, spec.shape)), config.time_step_floor)
            value = (dt + np.log(-np.expm1(-dt))).astype(np.float32)  # inverse softplus
        elif leaf == "bias" or leaf == "e_score_correction_bias":
            value = np.zeros(spec.shape, np.float32)
        elif spec.name.endswith("mamba2_mixer.out_proj.weight"):
            # rescale_prenorm_residual (HF default True): kaiming-uniform, divided by sqrt(layers).
            bound = 1.0 / np.sqrt(spec.shape[1]) / np.sqrt(config.num_hidden_layers)
            value = rng.uniform(-bound, bound, spec.shape).astype(np.float32)
        else:
            # Linears, embedding, router, experts and conv1d: normal(0, 0.02) in transformers 5.23.
            value = rng.standard_normal(spec.shape, dtype=np.float32)
            value *= 0.02
        weights[spec.name] = value
    return weights
