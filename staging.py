"""Writing all or nothing: a directory built in a hidden sibling and moved into place on success, a file
written to a temporary sibling and renamed over its name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tessera.errors import TesseraError


def check_apart(
    out: Path, inputs: Iterable[Path | None], *, error: type[TesseraError] = TesseraError, option: str = "-o"
) -> None:
    """Refuse an output that is one of a command's inputs, holds one, or lies inside one (paths resolved,
    symlinks followed): replacing it would delete the input, or the output would be written into it."""
    target = Path(out).resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source:
            raise error(f"{option} {out}: is the input {given}; refusing to write over it")
        if source.is_relative_to(target):
            raise error(f"{option} {out}: holds the input {given}; refusing to write over it")
        if target.is_relative_to(source):
            raise error(f"{option} {out}: lies inside the input {given}; write it elsewhere")


@contextmanager
def staged_directory(
    out: Path, refuse: Callable[[Path], str | None], inputs: Iterable[Path | None] = ()
) -> Iterator[Path]:
    """Yield an empty staging directory next to `out`; on success it replaces `out`, on failure it vanishes.

    `inputs`, the paths the command reads, must lie apart from `out` (check_apart), so that replacing
    `out` can never delete one of them. `refuse(out)` is asked next, when `out` exists: a message means
    `out` must not be replaced (so a typo in -o never deletes a user's directory), None means it may be.
    """
    check_apart(out, inputs)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise TesseraError(f"{out}: exists and is not a directory; refusing to replace it")
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
            # A fresh name, never a fixed one: removing a leftover `.OUT.old` could remove someone's files.
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(backup)  # POSIX rename replaces the empty directory mkdtemp made
            staging.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """`path` holds either its old content or all of `data`, never a torn write, even across a crash (the
    bytes reach the disk before the rename); concurrent writers of the same bytes, as cache entries are,
    may race harmlessly. mode: the file's permissions (default: mkstemp's private 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if mode is not None:
            os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
