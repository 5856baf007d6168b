"""Calling compiled kernels from a shared library: MLIR's memref ABI through ctypes (no compiler needed).

A `memref<?x72xf32>` argument is passed, as MLIR's default LLVM lowering expands it, as
(allocated pointer, aligned pointer, offset, sizes..., strides...), sizes and strides in elements.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tessera.errors import TesseraError


class NativeError(TesseraError):
    """A compiled library or kernel that cannot be loaded or called."""


def memref_args(array: np.ndarray) -> list[Any]:
    """The expanded memref arguments for a numpy array (which must stay alive during the call)."""
    if array.strides and any(stride % array.itemsize for stride in array.strides):
        raise NativeError(f"array strides {array.strides} are not multiples of its element size")
    pointer = ctypes.c_void_p(array.ctypes.data)
    sizes = [ctypes.c_int64(dim) for dim in array.shape]
    strides = [ctypes.c_int64(stride // array.itemsize) for stride in array.strides]
    return [pointer, pointer, ctypes.c_int64(0), *sizes, *strides]


class KernelLibrary:
    """A shared library of kernels; `library.kernel(name)` calls one with numpy arrays and integers."""

    def __init__(self, path: Path) -> None:
        try:
            self._library = ctypes.CDLL(str(path))
        except OSError as exc:
            raise NativeError(f"{path}: cannot load: {exc}") from None
        self.path = path

    def kernel(self, name: str) -> Callable[..., None]:
        try:
            function = getattr(self._library, name)
        except AttributeError:
            raise NativeError(f"{self.path}: no kernel '{name}'") from None
        function.restype = None

        def call(*args: np.ndarray | int) -> None:
            expanded: list[Any] = []
            for arg in args:
                expanded += memref_args(arg) if isinstance(arg, np.ndarray) else [ctypes.c_int64(arg)]
            function(*expanded)

        return call
