"""GPU tiling policy: attention (kernels/attention.py, written once; one program per token walking each query
head's keys in blocks of `block_k`).

Through the SIMT lowering each of the kernel's two mma stages its operands in shared memory / LDS: the query
and a [block_k, head_dim] K block, then the probabilities and the V block, about 8 block_k head_dim bytes in
all (f32), plus a few hundred bytes for the row statistics. `block_k` is the largest power of two up to 64
that keeps that within STAGED_BYTES, below the 48 KiB of static shared memory a Hopper kernel may declare and
the 64 KiB of a CDNA workgroup's LDS with room for a second workgroup per CU. MFMA / WGMMA patterns will
keep the fragments in registers and choose larger blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice
from tessera.tiling.gpu import GpuPolicy

STAGED_BYTES = 24 * 1024


def _attention(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    head_dim = int(dims["head_dim"])
    block_k = 64
    while block_k > 1 and 8 * block_k * head_dim > STAGED_BYTES:
        block_k //= 2
    return TileChoice({"threads": arch.wave_size, "block_k": block_k})


POLICIES: dict[str, GpuPolicy] = {"attention": _attention}
