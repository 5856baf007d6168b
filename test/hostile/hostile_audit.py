"""Run a Tessera CLI with every file it opens, lists, removes, renames or loads written to an audit log.

    python hostile_audit.py LOG tessera.tools.tessera_run ARGS...

The hostile-input suite (hostile_run.py) runs each tool through this wrapper so that a case can prove the
tool read and wrote nothing outside the folders it was given. Python's audit hooks see every file access
made through Python (open, os.*, shutil.*, ctypes.dlopen, subprocesses); native code that opens files
by itself (llvmlite, the tokenizers library) is not seen, which is why the suite also fingerprints the
"outside" folder before and after each run.

Each event is written to LOG as one JSON line as it happens, through a file descriptor opened before the
hook is installed, so the log survives a crash or os._exit; paths are made absolute and resolved
(symlinks followed) at the moment of the event, when the file still has the name the tool used.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Sequence

# Events whose path arguments are written to (or removed); every other logged event only reads.
WRITES = {
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod", "os.chown",
    "os.truncate", "os.utime", "shutil.rmtree", "shutil.copytree", "shutil.move", "os.setxattr",
    "os.removexattr",
}  # fmt: skip
READS = {"open", "os.listdir", "os.scandir", "ctypes.dlopen", "shutil.copyfile", "os.chdir", "os.getxattr"}
EXECS = {"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return _text(os.fspath(value))
    return None


def _resolve(path: str, dir_fd: object = None) -> str:
    if dir_fd is not None and isinstance(dir_fd, int) and not os.path.isabs(path):
        # shutil.rmtree and friends name entries relative to an open directory
        base = os.readlink(f"/proc/self/fd/{dir_fd}")
        path = os.path.join(base, path)
    return os.path.realpath(os.path.abspath(path))


class Recorder:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.busy = False  # realpath and json run inside the hook: never log our own work

    def __call__(self, event: str, args: tuple) -> None:  # type: ignore[type-arg]
        if self.busy or not (event in WRITES or event in READS or event in EXECS):
            return
        self.busy = True
        try:
            self.record(event, args)
        except Exception as exc:  # a hook that raises would change the tool's behaviour
            self.write({"event": event, "hook_error": repr(exc)})
        finally:
            self.busy = False

    def record(self, event: str, args: tuple) -> None:  # type: ignore[type-arg]
        if event in EXECS:
            self.write({"event": event, "argv": [str(a) for a in _flatten(args)]})
            return
        if event == "open":
            path, mode, flags = [*args, None, None, None][:3]
            if _text(path) is None:
                return  # an already open file descriptor
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            )
            self.log(event, [_text(path)], writes)
            return
        if event in ("os.listdir", "os.scandir") and not args:
            return
        dir_fd = None
        if event in ("os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.utime", "shutil.rmtree"):
            dir_fd = args[-1] if len(args) > 1 else None
        paths = [p for p in (_text(a) for a in args[:2]) if p is not None]
        if event in ("os.mkdir", "os.chmod", "os.remove", "os.rmdir", "os.truncate", "os.utime", "os.chown"):
            paths = paths[:1]
        if event == "os.listdir" and isinstance(args[0], int):
            paths = [os.readlink(f"/proc/self/fd/{args[0]}")]
        self.log(event, paths, event in WRITES, dir_fd)

    def log(self, event: str, paths: Sequence[str | None], writes: bool, dir_fd: object = None) -> None:
        for path in paths:
            if path is None or path == "":
                continue
            self.write({"event": event, "path": path, "resolved": _resolve(path, dir_fd), "write": writes})

    def write(self, entry: dict) -> None:  # type: ignore[type-arg]
        os.write(self.fd, (json.dumps(entry) + "\n").encode("utf-8", "surrogateescape"))


def _flatten(value: object) -> list[object]:
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value] if value is not None else []


def main() -> None:
    log_path, module, *arguments = sys.argv[1:]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    import json as _json  # noqa: F401  (imported before the hook: the hook's own imports are not the tool's)

    sys.addaudithook(Recorder(fd))
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
