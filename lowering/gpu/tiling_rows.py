"""GPU tiling policies: rows kernels (written with their ROCDL emitters)."""

from __future__ import annotations

from tessera.lowering.gpu.tiling import GpuPolicy

POLICIES: dict[str, GpuPolicy] = {}
