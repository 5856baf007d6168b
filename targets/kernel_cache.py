"""The on-disk cache of compiled kernels: identical kernels (same IR, options and CPU) compile once.

Location: $TESSERA_CACHE_DIR, else $XDG_CACHE_HOME/tessera, else ~/.cache/tessera. Entries are keyed by
a SHA-256 of everything that decides the bytes (kernel IR, pass pipeline, CPU name and features, the
toolchain versions) and are written atomically (a temporary file renamed into place), so concurrent
compiles and interrupted ones never leave a torn entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from tessera.runtime.kernels import cache_root
from tessera.staging import write_atomically


def cache_key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class KernelCache:
    """get_or_build(kind, key, build) -> bytes, counting hits and misses for the compile report."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self.hits = 0
        self.misses = 0

    def get_or_build(self, kind: str, key: str, build: Callable[[], bytes]) -> bytes:
        path = self.root / kind / key[:2] / key
        try:
            data = path.read_bytes()
            self.hits += 1
            return data
        except OSError:
            pass
        data = build()
        self.misses += 1
        try:
            write_atomically(path, data)
        except OSError:
            pass  # a read-only or full cache directory only costs the next compile its time
        return data
