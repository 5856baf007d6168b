"""ROCDL kernels: rows (see lowering/gpu/tiling_rows.py for their tiles)."""

from __future__ import annotations

from collections.abc import Callable

from tessera.lowering.rocdl.kernel_text import GpuKernel, KernelInfo

EMITTERS: dict[str, Callable[[KernelInfo], GpuKernel]] = {}
