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


# The native programs' ABI (lowering/x86/native_program.py builds it, runtime/x86_session.py calls it).
LAUNCH_SUFFIX = "__launch"  # void <kernel>__launch(const uint64_t *words, int64_t begin, int64_t end)
PROFILE_SUFFIX = "__profile"  # the instrumented entry of a program


def entry_symbol(program: str, profile: bool = False) -> str:
    """void tessera_<program>(const uint64_t *launches, int64_t tokens, int64_t threads[, uint64_t *ticks])"""
    return f"tessera_{program}{PROFILE_SUFFIX if profile else ''}"


def memref_words(array: np.ndarray) -> list[int]:
    """A numpy array as MLIR's expanded memref arguments, as 64-bit words: allocated and aligned pointer,
    offset, sizes, strides (in elements). The array must stay alive while the words are used."""
    if array.strides and any(stride % array.itemsize for stride in array.strides):
        raise NativeError(f"array strides {array.strides} are not multiples of its element size")
    pointer = array.ctypes.data
    return [pointer, pointer, 0, *array.shape, *(stride // array.itemsize for stride in array.strides)]


def memref_args(array: np.ndarray) -> list[Any]:
    """The expanded memref arguments for a numpy array, as ctypes values (the array must stay alive)."""
    pointer, _, *rest = memref_words(array)
    return [ctypes.c_void_p(pointer), ctypes.c_void_p(pointer), *(ctypes.c_int64(word) for word in rest)]


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
