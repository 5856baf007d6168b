"""Kernels written once in dataflow Tile-IR (dialects/tile.py), for every target: each kind's builder takes
the kernel's dims and its chosen tiles and returns the body block, whose arguments (the buffers, named, in
launch order) are the kernel's signature; tessera-tile-choose-tiles checks every launch against it. `tessera-tile-choose-tiles` writes that body into the `tessera.tile.kernel`; the target lowerings
(lowering/tile_to_x86.py, lowering/tile_to_simt.py) then see tile ops only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Block

from tessera.kernels import attention, attention_decode, draw, gemm, mamba, moe, moe_decode, rows
from tessera.kernels.builder import Dims

KernelBody = Callable[[Dims, Mapping[str, int]], Block]

KERNELS: dict[str, KernelBody] = {
    **rows.KERNELS,
    **draw.KERNELS,
    **attention_decode.KERNELS,
    **moe_decode.KERNELS,
    **moe.KERNELS,
    **attention.KERNELS,
    **mamba.KERNELS,
    **gemm.KERNELS,
}
# The scalars each kind reads after its buffers (dialects/tile.py KERNEL_SCALARS).
SCALARS: dict[str, tuple[str, ...]] = {**attention.SCALARS, **attention_decode.SCALARS}
# Launch buffers (by name) that the runtime packs once at load into the layout the kernel takes, instead of
# the launch's own type: the layout as a function of the dims and tiles.
PACKED: dict[str, dict[str, Callable[[Dims, Mapping[str, int]], MemRefType]]] = {
    **gemm.PACKED,
    **moe.PACKED,
    **moe_decode.PACKED,
}
