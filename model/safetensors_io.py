"""Reading and writing safetensors files with numpy alone, memory-mapped and streaming.

The `safetensors` package reads bf16 only through torch and writes only whole in-memory dicts; a
12B checkpoint must convert in bounded memory on machines without torch. The format is small
(8-byte little-endian header length, a JSON header, raw little-endian tensor bytes), so Tessera reads
tensors with np.memmap (bf16 kept as its raw uint16 bits) and copies them between files in 16 MiB
blocks, so converting a checkpoint of any size needs a few blocks of memory. The header
is written as the safetensors library writes it (compact JSON, `__metadata__` first, padded with
spaces to a multiple of 8), so files it writes are byte-identical to ones written by save_pretrained
when given the same tensors in the same order. Every malformed file is a CheckpointError naming it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tessera.errors import TesseraError
from tessera.safe_io import parse_json_text

# safetensors dtype -> numpy storage dtype (bf16 is held as its raw bits).
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit


class CheckpointError(TesseraError):
    """A checkpoint or weight file that cannot be read as what it claims to be."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offset in the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


class SafetensorsFile:
    """One .safetensors file: its header checked on open, tensors memory-mapped on demand."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with self.path.open("rb") as handle:
                prefix = handle.read(8)
                if len(prefix) < 8:
                    raise self._error(f"truncated: {size} bytes, not even a header length")
                (header_len,) = struct.unpack("<Q", prefix)
                if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                    raise self._error(f"corrupt or truncated header: claims {header_len} bytes, file has {size}")
                self.header_text = handle.read(header_len)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read: {exc.strerror}") from None
        header = parse_json_text(self.header_text, f"{self.path}: corrupt header", error=CheckpointError)
        if not isinstance(header, dict):
            raise self._error("corrupt header (not a JSON object)")
        self.metadata: dict[str, str] | None = header.pop("__metadata__", None)
        if self.metadata is not None and not (
            isinstance(self.metadata, dict) and all(isinstance(v, str) for v in self.metadata.values())
        ):
            raise self._error("corrupt header (__metadata__ is not a string-to-string map)")
        self.data_start = 8 + header_len
        data_bytes = size - self.data_start
        self.tensors: dict[str, TensorInfo] = {}
        for name, entry in header.items():
            self.tensors[name] = self._check_entry(name, entry, data_bytes)
        self._check_layout(data_bytes)
        self._map: np.memmap | None = None

    def _check_layout(self, data_bytes: int) -> None:
        # The safetensors library insists the tensors tile the data section exactly: two tensors sharing
        # bytes would each read as valid and convert into garbage, and a gap or tail would not survive export.
        position, previous = 0, None
        for info in sorted(self.tensors.values(), key=lambda t: (t.begin, t.end)):
            if info.begin < position:
                raise self._error(f"corrupt header: tensors '{previous}' and '{info.name}' overlap")
            if info.begin > position:
                raise self._error(f"corrupt header: {info.begin - position} unclaimed bytes before '{info.name}'")
            position, previous = info.end, info.name
        if position != data_bytes:
            raise self._error(f"corrupt: {data_bytes - position} bytes after the last tensor")

    def _error(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {message}")

    def _check_entry(self, name: str, entry: Any, data_bytes: int) -> TensorInfo:
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise self._error(f"tensor '{name}': malformed header entry") from None
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise self._error(f"tensor '{name}': unsupported dtype {dtype}")
        if not all(_is_count(d) for d in shape):
            raise self._error(f"tensor '{name}': malformed shape {list(shape)}")
        expected = math.prod(shape) * DTYPES[dtype].itemsize  # Python ints: a huge bogus shape cannot wrap
        if not (_is_count(begin) and _is_count(end) and begin <= end) or end - begin != expected:
            raise self._error(f"tensor '{name}': data offsets {[begin, end]} do not hold {dtype}{list(shape)}")
        if end > data_bytes:
            raise self._error(f"truncated: tensor '{name}' ends at byte {end} of a {data_bytes}-byte data section")
        return TensorInfo(name, dtype, shape, begin, end)

    def byte_range(self, name: str, index: int | None = None) -> ByteRange:
        """Where the tensor's bytes lie in the file (or those of its `index`-th slice along axis 0)."""
        info = self.tensors[name]
        begin, length = self.data_start + info.begin, info.nbytes
        if index is not None:
            length //= info.shape[0]
            begin += index * length
        return ByteRange(self.path, begin, length)

    def raw(self, name: str) -> np.ndarray:
        """The tensor in its storage dtype (bf16 as uint16 bits), memory-mapped, read-only."""
        info = self.tensors[name]
        if info.nbytes == 0:
            return np.zeros(info.shape, DTYPES[info.dtype])
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        chunk = self._map[self.data_start + info.begin : self.data_start + info.end]
        return chunk.view(DTYPES[info.dtype]).reshape(info.shape)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def to_float32(array: np.ndarray, dtype: str) -> np.ndarray:
    """Widen a stored tensor to float32 exactly (bf16's bits are the top half of a float32's)."""
    if dtype == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(array, dtype=np.float32)


@dataclass(frozen=True)
class ByteRange:
    """Bytes of a file, read in fixed-size blocks: copying through it keeps memory bounded."""

    path: Path
    offset: int
    length: int

    def blocks(self, block_bytes: int = 2**24) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            done = 0
            while done < self.length:
                block = os.pread(handle.fileno(), min(block_bytes, self.length - done), self.offset + done)
                if not block:
                    raise CheckpointError(f"{self.path}: truncated while reading")
                done += len(block)
                yield block


@dataclass(frozen=True)
class TensorToWrite:
    """A tensor to write, given as the byte ranges that follow one another (e.g. stacked experts)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    parts: Sequence[ByteRange]

    @property
    def nbytes(self) -> int:
        return sum(part.length for part in self.parts)


def header_bytes(tensors: Iterable[tuple[str, str, Sequence[int], int]], metadata: dict[str, str] | None) -> bytes:
    """The safetensors header for (name, dtype, shape, nbytes) in the given order, as the library writes it."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(
    path: Path,
    tensors: Sequence[TensorToWrite],
    metadata: dict[str, str] | None = None,
    on_bytes: Callable[[int], object] | None = None,
    header: bytes | None = None,
) -> tuple[str, int]:
    """Write tensors one at a time to a temp file beside `path`, then rename. Returns (sha256, bytes).

    The tensors are written in the order given: list wider dtypes first to keep every tensor aligned
    to its element size (the header is padded to 8 bytes). `on_bytes(n)` is told of each block written.
    `header` (length prefix included) replaces the generated one, to reproduce another writer's file
    exactly; it must describe these tensors at these offsets.
    """
    digest = hashlib.sha256()
    temporary = path.with_name(f".{path.name}.partial")
    written = 0
    try:
        with temporary.open("wb") as handle:
            for block in _blocks(tensors, metadata, header):
                handle.write(block)
                digest.update(block)
                written += len(block)
                if on_bytes is not None:
                    on_bytes(len(block))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return digest.hexdigest(), written


def _blocks(tensors: Sequence[TensorToWrite], metadata: dict[str, str] | None, header: bytes | None) -> Iterator[bytes]:
    yield (
        header
        if header is not None
        else header_bytes(((t.name, t.dtype, t.shape, t.nbytes) for t in tensors), metadata)
    )
    for tensor in tensors:
        for part in tensor.parts:
            yield from part.blocks()
