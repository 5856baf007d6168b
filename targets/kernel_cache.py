"""The on-disk cache of compiled kernels: identical kernels (same IR, options and CPU) compile once.

Location: $TESSERA_CACHE_DIR, else $XDG_CACHE_HOME/tessera, else ~/.cache/tessera. Entries are keyed by
a SHA-256 of everything that decides the bytes (kernel IR, pass pipeline, CPU name and features, the
toolchain versions) and are written atomically (fsync, then a temporary file renamed into place), so
concurrent compiles and interrupted ones never leave a torn entry. Each entry carries the SHA-256 of its
payload (runtime/integrity.py): one that is empty, truncated or corrupt — a full disk, a crash before the
fsync on another filesystem, a stray edit — is rebuilt and rewritten, never compiled into an artifact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from tessera.runtime.integrity import read_cache_entry, write_cache_entry
from tessera.runtime.kernels import cache_root


def cache_key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class KernelCache:
    """get_or_build(kind, key, build) -> bytes (or get, then put what was built), counting hits and misses for
    the compile report."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self.hits = 0
        self.misses = 0

    def get_or_build(self, kind: str, key: str, build: Callable[[], bytes]) -> bytes:
        data = self.get(kind, key)
        if data is None:
            data = build()
            self.put(kind, key, data)
        return data

    def get(self, kind: str, key: str) -> bytes | None:
        """The entry's bytes (a hit), or None where it is missing or unreadable."""
        data = read_cache_entry(self._path(kind, key))
        if data is not None:
            self.hits += 1
        return data

    def put(self, kind: str, key: str, data: bytes) -> None:
        """A freshly built entry (a miss)."""
        self.misses += 1
        write_cache_entry(self._path(kind, key), data)

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key
