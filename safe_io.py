"""The one way Tessera reads a file it did not write just now: JSON, YAML, and paths named inside them.

Every reader bounds what an input can cost before it is trusted: its size (read no further than the
limit), its text (UTF-8 or a one-line error), its nesting depth, the size of its integers, and — for YAML —
aliases, which are refused outright (a 1 KB alias bomb expands to gigabytes). A path read from a file must be
relative and resolve, symlinks included, inside the folder it belongs to. Each failure is one line naming the
file, raised as the caller's TesseraError subclass.

Only the standard library and PyYAML (imported when a YAML file is read) are used: the runtime reads its
artifacts with this module too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera.errors import TesseraError

# A manifest, program.json or config.json is at most a few MB (Nano-12B's program.json: ~1.5 MB); a bound keeps a
# file of tiny nodes (`[{},{},...]`, ~50 bytes of memory per input byte) within a second and a gigabyte.
MAX_JSON_BYTES = 16 * 2**20
# A weights manifest keeps every HF safetensors header verbatim, as strings: cheap to parse per byte.
MAX_WEIGHTS_MANIFEST_BYTES = 64 * 2**20
MAX_YAML_BYTES = 2**20  # model.yaml files are a few KB
MAX_DEPTH = 64  # Tessera's own files nest 6 deep; HF configs a few more
MAX_INT_DIGITS = 19  # everything Tessera counts fits in an int64
HASH_BLOCK = 16 * 2**20

ErrorType = type[TesseraError]


def check_regular_file(path: Path, error: ErrorType = TesseraError) -> None:
    """Refuse, without opening it, a path that is not a regular file (a FIFO, a device, a directory)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise error(f"{path}: not a regular file")


def read_bytes(path: Path, max_bytes: int, error: ErrorType = TesseraError) -> bytes:
    """The bytes of the regular file `path`, refusing one larger than `max_bytes` before reading it, and
    anything that is not a regular file (a FIFO would block the reader forever, a device never end)."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once, so the type check below can refuse it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    status = os.fstat(descriptor)
    problem = (
        "is a directory, not a file" if stat.S_ISDIR(status.st_mode)
        else "not a regular file" if not stat.S_ISREG(status.st_mode)
        else f"larger than the {max_bytes} bytes such a file may have" if status.st_size > max_bytes
        else None
    )  # fmt: skip
    if problem is not None:
        os.close(descriptor)
        raise error(f"{path}: {problem}")
    with os.fdopen(descriptor, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # grew while being read
        raise error(f"{path}: larger than the {max_bytes} bytes such a file may have")
    return data


def decode_text(data: bytes, source: str, error: ErrorType = TesseraError) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{source}: not UTF-8 text (byte {exc.start})") from None


def read_json(
    path: Path,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    error: ErrorType = TesseraError,
    allow_constants: bool = False,
    object_hook: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """The JSON value in `path`. allow_constants: accept NaN / Infinity / -Infinity (as HF configs write them)."""
    text = decode_text(read_bytes(path, max_bytes, error), str(path), error)
    return parse_json_text(text, str(path), error=error, allow_constants=allow_constants, object_hook=object_hook)


def parse_json_text(
    text: str | bytes,
    source: str,
    *,
    error: ErrorType = TesseraError,
    allow_constants: bool = False,
    object_hook: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """JSON text from inside another file (a safetensors header, a manifest field), with read_json's limits."""
    if isinstance(text, bytes):
        text = decode_text(text, source, error)

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise error(f"{source}: integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
        value = int(digits)
        if not -(2**63) <= value < 2**63:
            raise error(f"{source}: integer {digits} does not fit in 64 bits")
        return value

    def parse_float(digits: str) -> float:
        value = float(digits)
        if not allow_constants and not math.isfinite(value):  # 1e400 reads as inf
            raise error(f"{source}: number {digits[:40]} is not finite")
        return value

    def parse_constant(name: str) -> float:
        if not allow_constants:
            raise error(f"{source}: {name} is not JSON")
        return float(name)

    try:
        value = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant, object_hook=object_hook
        )
    except json.JSONDecodeError as exc:
        raise error(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise error(f"{source}: nested more than {MAX_DEPTH} deep") from None
    check_tree(value, source, error)
    return value


def read_yaml(path: Path, *, max_bytes: int = MAX_YAML_BYTES, error: ErrorType = TesseraError) -> Any:
    """The YAML document in `path` (safe types only; aliases refused; one document)."""
    import yaml

    text = decode_text(read_bytes(path, max_bytes, error), str(path), error)
    loader = None
    try:
        loader = _BoundedLoader(text, str(path), error)  # its reader refuses control characters at once
        value = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise error(f"{path}{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except (ValueError, OverflowError) as exc:  # a scalar that resolves to a type but does not convert
        raise error(f"{path}: invalid YAML value: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise error(f"{path}: nested more than {MAX_DEPTH} deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    check_tree(value, str(path), error)
    return value


def _make_bounded_loader() -> type:
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader without aliases and with a nesting limit: time and memory stay linear in the file."""

        def __init__(self, text: str, source: str, error: ErrorType) -> None:
            super().__init__(text)
            self._source, self._error, self._depth = source, error, 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise self._error(f"{self._source}:{mark.line + 1}:{mark.column + 1}: YAML aliases are not accepted")
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise self._error(f"{self._source}: nested more than {MAX_DEPTH} deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_yaml_int(self, node: Any) -> Any:
            digits = str(node.value).replace("_", "").lstrip("+-")
            if len(digits) > MAX_INT_DIGITS + 2:  # room for a 0x / 0o prefix
                raise self._error(f"{self._source}: integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
            return super().construct_yaml_int(node)

    BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
    return BoundedLoader


class _LazyLoader:
    """Builds the loader class on first use, so importing this module does not import PyYAML."""

    cls: type | None = None

    def __call__(self, text: str, source: str, error: ErrorType) -> Any:
        if self.cls is None:
            self.cls = _make_bounded_loader()
        return self.cls(text, source, error)


_BoundedLoader = _LazyLoader()


def check_tree(value: Any, source: str, error: ErrorType = TesseraError) -> None:
    """Refuse a parsed value nested deeper than MAX_DEPTH or holding an integer wider than an int64 (YAML's
    integers; JSON's are checked as they are parsed). Only containers are visited one by one."""
    if not isinstance(value, dict | list | tuple):
        value = [value]
    level: list[Any] = [value]
    for depth in range(1, MAX_DEPTH + 1):
        containers: list[Any] = []
        for item in level:
            children = (*item.keys(), *item.values()) if isinstance(item, dict) else item
            for child in children:
                if isinstance(child, dict | list | tuple):
                    containers.append(child)
                elif type(child) is int and not -(2**63) <= child < 2**63:
                    raise error(f"{source}: integer {str(child)[:24]}... does not fit in 64 bits")
        if not containers:
            return
        if depth == MAX_DEPTH:  # the containers found are one level deeper
            raise error(f"{source}: nested more than {MAX_DEPTH} deep")
        level = containers


def contained_path(root: Path, relative: object, source: str, *, error: ErrorType = TesseraError) -> Path:
    """`root / relative`, resolved, if `relative` is a relative path that stays inside `root` (symlinks
    followed); else error naming `source` (the file, and field, that named the path)."""
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise error(f"{source}: expected a relative path, got {relative!r}")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise error(f"{source}: path {relative!r} is absolute; paths in this file are relative to {root}")
    base = Path(root).resolve()
    try:
        resolved = (base / relative).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise error(f"{source}: path {relative!r} cannot be resolved: {exc}") from None
    if not resolved.is_relative_to(base):
        raise error(f"{source}: path {relative!r} leads outside {base}")
    return resolved


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """What an artifact records of one of its small files, and checks at open: size and SHA-256."""
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def check_file_record(path: Path, record: object, source: str, *, error: ErrorType = TesseraError) -> None:
    """Refuse `path` unless its size and SHA-256 are those `record` (from `source`) gives."""
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("sha256"), str)
        or not isinstance(record.get("bytes"), int)
    ):
        raise error(f"{source}: no sha256 / bytes record for {path.name}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size != record["bytes"]:
        raise error(f"{path}: {size} bytes, {source} records {record['bytes']} (truncated or modified)")
    if sha256_file(path) != record["sha256"]:
        raise error(f"{path}: sha256 does not match {source} (corrupt or modified)")
