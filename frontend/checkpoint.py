"""Hugging Face checkpoints <-> Tessera's weight layout.

    convert_checkpoint(hf_dir, out)   HF safetensors (single or sharded, backbone./model. prefix,
                                      fp32/bf16/fp16) -> out/weights-0000i-of-0000n.safetensors + manifest.json
    export_checkpoint(out, hf_out)    back to the HF files, byte for byte

(Reading a converted checkpoint, or drawing weights for a config without any, is model/checkpoint.py's: the
runtime needs it too.)

Tensors keep their stored dtype and bits (the layout only renames, squeezes and stacks), input files are
memory-mapped and output written tensor by tensor, so memory stays bounded by the page cache.

OUT/manifest.json (every file name in it relative, resolving inside OUT or the export's output; else refused):
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

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.frontend.config import checkpoint_file, checkpoint_root, load_model
from tessera.model.checkpoint import FORMAT, FORMAT_VERSION, MANIFEST, check_weight_dtype, open_shards, read_manifest
from tessera.model.config import ModelConfig, config_from_dict, hf_config_dict
from tessera.model.safetensors_io import (
    DTYPES,
    ByteRange,
    CheckpointError,
    SafetensorsFile,
    TensorToWrite,
    write_safetensors,
)
from tessera.model.weights_layout import HF_PREFIXES, TensorSpec, hf_shape, model_tensors
from tessera.safe_io import (
    MAX_JSON_BYTES,
    contained_path,
    decode_text,
    parse_json_text,
    read_bytes,
)
from tessera.staging import check_apart, staged_directory

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


def open_hf_checkpoint(directory: Path, root: Path | None = None) -> HFCheckpoint:
    """Open every *.safetensors of `directory` (those of the index's weight_map when it has one).

    Every file read must resolve, symlinks followed, inside `root` (default: checkpoint_root(directory),
    the directory itself or a Hub snapshot's repo folder): an index naming ../elsewhere, or a link out of
    the folder, is refused.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    root = checkpoint_root(directory) if root is None else Path(root)
    index_path = directory / INDEX
    index_text = None
    weight_map: dict[str, str] = {}
    if index_path.is_file():
        checkpoint_file(root, directory, INDEX, str(index_path), error=CheckpointError)
        index_text = decode_text(read_bytes(index_path, MAX_JSON_BYTES, CheckpointError), str(index_path))
        index = parse_json_text(index_text, str(index_path), error=CheckpointError)
        listed = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
            raise CheckpointError(f"{index_path}: not a valid safetensors index (no weight_map of file names)")
        weight_map = listed
        checked: set[str] = set()
        for tensor, name in weight_map.items():
            if name not in checked:  # each file once: an index lists thousands of tensors in a few files
                checkpoint_file(root, directory, name, f"{index_path}: weight_map['{tensor}']", error=CheckpointError)
                checked.add(name)
        names = sorted(checked)
    else:
        names = sorted(p.name for p in directory.glob("*.safetensors"))
        for name in names:
            checkpoint_file(root, directory, name, str(directory / name), error=CheckpointError)
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
        check_weight_dtype(file.path, name, info.dtype)
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
    root: Path | None = None,
) -> dict[str, Any]:
    """Convert an HF checkpoint directory into the Tessera layout at out_dir; returns the manifest.

    Every HF tensor is checked (present, shape, one dtype per stacked tensor) before anything is
    written; out_dir appears whole or not at all, and never where it could replace or sit in the
    checkpoint. Tensors transformers skips on load (mtp.*) are left out and listed in
    manifest["hf"]["ignored"]; any other tensor outside the layout is an error. root: the folder the
    checkpoint's files must resolve inside (ModelSpec.root; default: checkpoint_root(hf_dir)).
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    root = checkpoint_root(hf_dir) if root is None else Path(root)
    check_apart(out_dir, [hf_dir, root], error=CheckpointError)
    config = config or load_model(hf_dir).config
    checkpoint = open_hf_checkpoint(hf_dir, root)
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
        "json_files": {n: _side_file(hf_dir, root, n) for n in SIDE_FILES if (hf_dir / n).is_file()},
    }
    shards = _plan_shards(tensors, shard_bytes)
    with staged_directory(out_dir, _refuse_unless(overwrite), inputs=[hf_dir, root]) as staging:
        manifest = _write_shards(staging, shards, config, progress)
        manifest["hf"] = hf_record
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _side_file(hf_dir: Path, root: Path, name: str) -> str:
    """The text of a small JSON file of the checkpoint, kept for the export (inside root, size-bounded)."""
    path = checkpoint_file(root, hf_dir, name, str(hf_dir / name), error=CheckpointError)
    return decode_text(read_bytes(path, MAX_JSON_BYTES, CheckpointError), str(path), CheckpointError)


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


def export_checkpoint(directory: Path, hf_out: Path, overwrite: bool = False) -> None:
    """Write the HF files the checkpoint was converted from: same names, headers, bytes and index.

    Tensors left out at conversion (manifest["hf"]["ignored"], e.g. mtp.*) stay out: their files
    lose them, a file left empty is not written, and the index is rewritten to match. Every name the
    manifest gives a file must stay inside hf_out, and every stored header must describe the tensors
    the shards hold, or nothing is written.
    """
    directory, hf_out = Path(directory), Path(hf_out)
    check_apart(hf_out, [directory], error=CheckpointError)
    manifest = read_manifest(directory)
    source_name = str(directory / MANIFEST)
    hf = _hf_record(manifest, source_name)
    shards = open_shards(directory, manifest, hash_now=True)
    config = config_from_dict(manifest["config"], source_name, strict=False)
    source: dict[str, tuple[TensorSpec, int | None]] = {}  # HF name -> (Tessera tensor, stack index)
    for spec in model_tensors(config):
        for i, name in enumerate(spec.hf_names):
            hf_name = name if name == "lm_head.weight" else hf["prefix"] + name
            source[hf_name] = (spec, i if spec.transform == "stack" else None)
    weight_map: dict[str, str] = {}
    written: dict[str, int] = {}  # HF name -> bytes
    with staged_directory(hf_out, _refuse_unless(overwrite), inputs=[directory]) as staging:
        for i, entry in enumerate(hf["files"]):
            where = f"{source_name}: field 'hf.files[{i}]"
            path = _export_path(staging, entry["file"], f"{where}.file'")
            header = parse_json_text(entry["header"], f"{where}.header'", error=CheckpointError)
            metadata = _header_metadata(header, f"{where}.header'")
            tensors = []
            for hf_name, info in sorted(header.items(), key=lambda item: _offsets(item, where)[0]):
                if hf_name not in source:
                    continue  # left out at conversion: not part of the model
                spec, index = source[hf_name]
                file = _stored_file(manifest, shards, spec, source_name)
                _check_header_entry(hf_name, info, file.tensors[spec.name].dtype, hf_shape(spec), where)
                part = file.byte_range(spec.name, index)
                tensors.append(TensorToWrite(hf_name, info["dtype"], hf_shape(spec), [part]))
                weight_map[hf_name], written[hf_name] = entry["file"], part.length
            if tensors:
                write_safetensors(path, tensors, metadata, header=_verbatim_header(entry["header"], header, tensors))
        if hf["index_text"] is not None:
            index_source = f"{source_name}: field 'hf.index_text'"
            (staging / INDEX).write_text(_index_text(hf["index_text"], index_source, weight_map, written, source))
        for name, text in hf["json_files"].items():
            _export_path(staging, name, f"{source_name}: field 'hf.json_files' key {name!r}").write_text(text)
        if "config.json" not in hf["json_files"]:
            (staging / "config.json").write_text(json.dumps(manifest["config"], indent=2) + "\n")


def _hf_record(manifest: dict[str, Any], source: str) -> dict[str, Any]:
    """manifest["hf"], checked for the shape the export reads, one line naming the field otherwise."""
    hf = manifest.get("hf")
    if not isinstance(hf, dict):
        raise CheckpointError(f"{source}: field 'hf' missing (what the export writes back; convert again)")

    def fail(field_name: str, message: str) -> CheckpointError:
        return CheckpointError(f"{source}: field 'hf.{field_name}': {message}")

    if hf.get("prefix") not in ("", *HF_PREFIXES):
        raise fail("prefix", f"expected one of {['', *HF_PREFIXES]}, got {hf.get('prefix')!r}")
    files = hf.get("files")
    if not isinstance(files, list):
        raise fail("files", f"expected a list, got {type(files).__name__}")
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise fail(f"files[{i}]", "expected {file: name, header: text}")
        if not isinstance(entry.get("header"), str):
            raise fail(f"files[{i}].header", "expected the header's JSON text")
    if hf.get("index_text") is not None and not isinstance(hf["index_text"], str):
        raise fail("index_text", "expected the index's JSON text or null")
    json_files = hf.get("json_files")
    if not isinstance(json_files, dict) or not all(isinstance(t, str) for t in json_files.values()):
        raise fail("json_files", "expected a map from file name to JSON text")
    return {**hf, "index_text": hf.get("index_text")}


def _export_path(staging: Path, name: object, source: str) -> Path:
    """Where the export writes a file the manifest names: inside the output directory, and a file."""
    path = contained_path(staging, name, source, error=CheckpointError)
    if path == staging.resolve() or Path(str(name)).name in ("", ".", ".."):
        raise CheckpointError(f"{source}: {name!r} is not a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _header_metadata(header: Any, source: str) -> dict[str, str] | None:
    """Pop and return a stored header's __metadata__, checking that the rest is a header's shape."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{source}: not a safetensors header (a JSON object)")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise CheckpointError(f"{source}: __metadata__ is not a string-to-string map")
    return metadata


def _offsets(item: tuple[str, Any], where: str) -> list[int]:
    name, info = item
    offsets = info.get("data_offsets") if isinstance(info, dict) else None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise CheckpointError(f"{where}.header': tensor '{name}': malformed data_offsets")
    return offsets


def _verbatim_header(text: str, header: dict[str, Any], tensors: list[TensorToWrite]) -> bytes | None:
    """The header as the source's writer wrote it (key order, spacing, padding), when every tensor is kept
    and it places them where they are written; else None (a header is generated)."""
    position = 0
    for tensor in tensors:
        if header[tensor.name]["data_offsets"] != [position, position + tensor.nbytes]:
            return None
        position += tensor.nbytes
    if len(tensors) != len(header):
        return None
    original = text.encode()
    return struct.pack("<Q", len(original)) + original


def _check_header_entry(name: str, info: Any, dtype: str, shape: tuple[int, ...], where: str) -> None:
    """A stored header entry must describe the tensor the shard holds: same dtype, same shape."""
    if info.get("dtype") != dtype or info.get("shape") != list(shape):
        raise CheckpointError(
            f"{where}.header': tensor '{name}' is {info.get('dtype')}{info.get('shape')}, "
            f"but the shard holds {dtype}{list(shape)}"
        )


def _stored_file(
    manifest: dict[str, Any], shards: dict[str, SafetensorsFile], spec: TensorSpec, source: str
) -> SafetensorsFile:
    """The shard that holds `spec`, checked to hold it in the layout's shape."""
    entry = manifest["tensors"].get(spec.name)
    if not isinstance(entry, dict) or entry.get("shard") not in shards:
        raise CheckpointError(f"{source}: tensor '{spec.name}' missing from field 'tensors'")
    file = shards[entry["shard"]]
    if spec.name not in file.tensors or file.tensors[spec.name].shape != spec.shape:
        raise CheckpointError(f"{file.path}: tensor '{spec.name}' missing or not of shape {list(spec.shape)}")
    return file


def _index_text(
    original: str,
    source: str,
    weight_map: dict[str, str],
    written: dict[str, int],
    specs_by_name: dict[str, tuple[TensorSpec, int | None]],
) -> str:
    index = parse_json_text(original, source, error=CheckpointError)
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise CheckpointError(f"{source}: not a safetensors index (no weight_map)")
    if weight_map == index["weight_map"]:
        return original
    # Some tensors were left out: list only those written, and total them as transformers does
    # (total_size: bytes of every tensor; total_parameters: elements of parameters, not buffers).
    index["weight_map"] = weight_map
    metadata = index.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{source}: metadata is not an object")
    metadata["total_size"] = sum(written[hf_name] for hf_name in weight_map)
    if "total_parameters" in metadata:
        specs = [specs_by_name[hf_name][0] for hf_name in weight_map]
        metadata["total_parameters"] = sum(math.prod(hf_shape(spec)) for spec in specs if spec.parameter)
    return json.dumps(index, indent=2, sort_keys=True) + "\n"
