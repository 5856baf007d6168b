"""What the two GPU lowerings (convert-tessera-tile-to-rocdl, convert-tessera-tile-to-nvvm) read of Tile-IR
the same way: a kernel's KernelInfo, the module's kernels, and the weight packing their matrix kernels ask
the runtime for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xdsl.dialects.builtin import BFloat16Type, MemRefType, ModuleOp

from tessera.arch import GPU_ARCHS
from tessera.dialects import tile
from tessera.dialects.tile import plain_dict
from tessera.errors import TesseraError
from tessera.lowering.gpu.kernel import KernelInfo


def tile_kernels(module: ModuleOp) -> list[tile.KernelOp]:
    return [op for op in module.ops if isinstance(op, tile.KernelOp)]


def gpu_kernel_info(kernel: tile.KernelOp, archs: tuple[str, ...], error: type[TesseraError],
                    example_arch: str) -> KernelInfo:  # fmt: skip
    """A GPU kernel's KernelInfo (its dims, tiles and arch, the element its mmas read the weight in); `error`
    for one not tiled, or tiled for another arch."""
    name = kernel.sym_name.data
    if kernel.target is None or kernel.tiles is None:
        raise error(f"{kernel.name} @{name}: no tiles chosen (run tessera-tile-choose-tiles{{target={example_arch}}})")
    if kernel.target.data not in archs:
        raise error(
            f"{kernel.name} @{name}: tiled for '{kernel.target.data}', not an arch of this target ({', '.join(archs)})"
        )
    return KernelInfo(
        name=name,
        kind=kernel.kind.data,
        dims=dict(plain_dict(kernel.dims)),
        tiles=dict(plain_dict(kernel.tiles)),
        arch=GPU_ARCHS[kernel.target.data],
        weight_element=weight_element(kernel),
    )


# The launch arguments (by index) that a matrix kernel reads as weights in its matrix element type.
WEIGHT_READERS: Mapping[str, tuple[int, ...]] = {
    "matmul": (1,),
    "moe_experts": (2, 3),
    "moe_experts_up": (2,),  # the decode step's expert GEMVs (kernels/moe_decode.py)
    "moe_experts_down": (2,),
}


def weight_element(kernel: tile.KernelOp) -> str | None:
    """The element a matrix kernel reads its weights in — its body's weight buffers' ("bf16" where the
    runtime converts them at load, else "f32") — or None for a kind that reads none."""
    readers = WEIGHT_READERS.get(kernel.kind.data, ())
    if not readers or not kernel.is_dataflow():
        return None
    buffer = kernel.buffers()[readers[0]].type
    assert isinstance(buffer, MemRefType)
    return "bf16" if isinstance(buffer.element_type, BFloat16Type) else "f32"


def record_weight_packing(info: KernelInfo, args: list[dict[str, Any]], weights: dict[str, dict[str, Any]],
                          error: type[TesseraError]) -> None:  # fmt: skip
    """Mark the weights a matrix kernel reads (launch argument indices WEIGHT_READERS[kind]) to be converted
    once at load to its matrix element type, in their own row-major layout; one weight read two ways is
    refused."""
    for reader in WEIGHT_READERS.get(info.kind, ()):
        packing = {"layout": "rows", "dtype": info.weight_element or "f32"}
        name = args[reader]["weight"]
        previous = weights[name].get("packing")
        if previous is not None and previous != packing:
            raise error(f"weight '{name}': read by kernels with packings {previous} and {packing}")
        weights[name]["packing"] = packing
