"""Writing all or nothing: a directory built in a hidden sibling and moved into place on success, a file
written to a temporary sibling and renamed over its name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tessera.errors import TesseraError


@contextmanager
def staged_directory(out: Path, refuse: Callable[[Path], str | None]) -> Iterator[Path]:
    """Yield an empty staging directory next to `out`; on success it replaces `out`, on failure it vanishes.

    `refuse(out)` is asked first, when `out` exists: a message means `out` must not be replaced (so a
    typo in -o never deletes a user's directory), None means it may be.
    """
    out = Path(out).resolve()
    if out.exists():
        reason = refuse(out)
        if reason is not None:
            raise TesseraError(f"{out}: {reason}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    # mkdtemp makes it private (0700); the finished directory gets the mode mkdir would give it.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    try:
        yield staging
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            out.rename(backup)
            staging.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_atomically(path: Path, data: bytes) -> None:
    """`path` holds either its old content or all of `data`, never a torn write, even across a crash (the
    bytes reach the disk before the rename); concurrent writers of the same bytes, as cache entries are,
    may race harmlessly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
