"""The OpenMP runtime the x86 native programs fork on, and how many threads they may use.

The program entries (lowering/x86/native_program.py) are MLIR's OpenMP lowering: calls of the LLVM OpenMP
runtime's `__kmpc_*` ABI, which Intel's libiomp5 implements (PyPI `intel-openmp`, a dependency of Tessera
on Linux x86-64). It is loaded here with RTLD_LOCAL, before any kernel library: the ahead-of-time libraries
name it as a needed library (soname libiomp5.so), which the loader then finds already loaded, and the JIT binds
the `__kmpc_*` symbols it lacks to its addresses. Kept out of the global symbol scope, it cannot take over the
GOMP_* calls of another OpenMP runtime in the process (torch's libgomp).

    library_path()   $TESSERA_OPENMP_LIB, else <sys.prefix>/lib/libiomp5.so (where pip puts it), else the
                     system's (ctypes.util.find_library)
    threads()        $TESSERA_THREADS, else the CPUs this process may run on (its affinity mask)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from pathlib import Path

from tessera.errors import TesseraError

LIBRARY = "libiomp5.so"


class OpenMPError(TesseraError):
    """No OpenMP runtime to run the native programs on, or a bad thread count."""


def library_path() -> Path:
    explicit = os.environ.get("TESSERA_OPENMP_LIB")
    if explicit:
        if not Path(explicit).is_file():
            raise OpenMPError(f"TESSERA_OPENMP_LIB={explicit}: no such file")
        return Path(explicit)
    beside = Path(sys.prefix) / "lib" / LIBRARY
    if beside.is_file():
        return beside
    found = ctypes.util.find_library("iomp5")
    if found:
        return Path(found)
    raise OpenMPError(
        f"{LIBRARY} not found in {beside.parent} or the system's libraries: pip install intel-openmp "
        "(a dependency of tessera on Linux x86-64), or set TESSERA_OPENMP_LIB"
    )


@functools.cache
def load() -> ctypes.CDLL:
    """libiomp5, loaded once, outside the global symbol scope."""
    path = library_path()
    try:
        return ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
    except OSError as exc:
        raise OpenMPError(f"{path}: cannot load: {exc}") from None


def symbol_address(name: str) -> int:
    """The address of one of libiomp5's functions (for the JIT's unresolved `__kmpc_*` calls)."""
    try:
        function = getattr(load(), name)
    except AttributeError:
        raise OpenMPError(f"{library_path()}: no symbol '{name}'") from None
    address = ctypes.cast(function, ctypes.c_void_p).value
    assert address is not None
    return address


def threads() -> int:
    """The threads a native program may use: $TESSERA_THREADS, else the CPUs in this process's affinity."""
    explicit = os.environ.get("TESSERA_THREADS")
    if explicit:
        if not explicit.isdigit() or not 1 <= int(explicit) <= 4096:
            raise OpenMPError(f"TESSERA_THREADS must be a whole number from 1 to 4096, got '{explicit}'")
        return int(explicit)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
