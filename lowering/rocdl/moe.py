"""ROCDL kernels: moe (see lowering/gpu/tiling_moe.py for their tiles)."""

from __future__ import annotations

from collections.abc import Callable

from tessera.lowering.rocdl.kernel_text import GpuKernel, KernelInfo

EMITTERS: dict[str, Callable[[KernelInfo], GpuKernel]] = {}
