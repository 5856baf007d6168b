"""convert-tessera-tile-to-rocdl: Tile-IR tiled for a CDNA GPU (target gfx942 | gfx90a) -> one `gpu.module`
of ROCDL kernels and the program the runtime launches.

    emit_kernels(module) -> [GpuKernel]   one `gpu.func` per `tessera.tile.kernel`, written by the kernel
                                          family's emitter (lowering/rocdl/*.py) from the tiles and the LDS
                                          tiles chosen in Tile-IR; matrix work on MFMA, the rest SIMT
    lower_kernels(module) -> str          their gpu.module (what `tessera-opt -t rocdl-mlir` prints)
    lower_programs(module, kernels)       program.json: launches with their workgroup grid, block size, LDS

The ABI every kernel follows is in lowering/rocdl/kernel_text.py (pointers in launch order, then the
token count and the sequence position).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from tessera.dialects import tile
from tessera.dialects.tile import plain_dict
from tessera.errors import TesseraError
from tessera.lowering.gpu.arch import GPU_ARCHS
from tessera.lowering.programs import describe_programs
from tessera.lowering.rocdl.kernel_text import GpuKernel, KernelInfo, LdsTile, kernels_module

PROGRAM_FORMAT = "tessera-rocdl-program"
ROCDL_ARCHS = tuple(name for name, arch in GPU_ARCHS.items() if arch.vendor == "amd")
# The weight operands (launch argument indices) that matrix instructions read, per kind: converted once at
# load to the MFMA element type.
_WEIGHT_READERS = {"matmul": (1,), "moe_experts": (2, 3)}


class RocdlLoweringError(TesseraError):
    """A Tile-IR module the ROCDL target cannot lower (another target's tiles, an unknown kind, ...)."""


def _emitters() -> dict[str, Callable[[KernelInfo], GpuKernel]]:
    from tessera.lowering.gpu import simt
    from tessera.lowering.rocdl import attention, gemm, moe, ssd

    table: dict[str, Callable[[KernelInfo], GpuKernel]] = {"matmul": gemm.emit_gemm, **simt.emitters()}
    for family in (attention, ssd, moe):
        table |= family.EMITTERS
    return table


def kernel_info(kernel: tile.KernelOp) -> KernelInfo:
    """What the emitters read of a kernel; refuses one not tiled for a ROCDL arch."""
    return gpu_kernel_info(kernel, ROCDL_ARCHS, "lds", RocdlLoweringError, "gfx942")


def gpu_kernel_info(kernel: tile.KernelOp, archs: tuple[str, ...], space: str, error: type[TesseraError],
                    example_arch: str) -> KernelInfo:  # fmt: skip
    """A GPU kernel's KernelInfo: its dims and tiles, and as `lds` the body's loads into the scratchpad
    `space` (so the code allocates exactly what Tile-IR planned); `error` for one tiled for another arch."""
    name = kernel.sym_name.data
    if kernel.target is None or kernel.tiles is None:
        raise error(f"{kernel.name} @{name}: no tiles chosen (run tessera-tile-choose-tiles{{target={example_arch}}})")
    if kernel.target.data not in archs:
        raise error(
            f"{kernel.name} @{name}: tiled for '{kernel.target.data}', not an arch of this target ({', '.join(archs)})"
        )
    lds: list[LdsTile] = []
    mma_element: str | None = None
    for op in kernel.body.block.ops:
        if isinstance(op, tile.LoadOp) and op.space.data == space:
            pad = 0 if op.pad is None else int(op.pad.value.data)
            shape = tuple(int(d) for d in op.shape.get_values())
            lds.append(LdsTile(op.operand.data, shape, str(op.element), pad))
        elif isinstance(op, tile.MmaOp) and mma_element is None:
            mma_element = str(op.lhs)
    return KernelInfo(
        name=name,
        kind=kernel.kind.data,
        dims=dict(plain_dict(kernel.dims)),
        tiles=dict(plain_dict(kernel.tiles)),
        lds=lds,
        arch=GPU_ARCHS[kernel.target.data],
        mma_element=mma_element,
    )


def emit_kernel(kernel: tile.KernelOp) -> GpuKernel:
    info = kernel_info(kernel)
    emitter = _emitters().get(info.kind)
    if emitter is None:
        raise RocdlLoweringError(f"{kernel.name} @{info.name}: kind '{info.kind}' has no ROCDL lowering")
    emitted = emitter(info)
    footprint = 0 if kernel.footprint is None else int(kernel.footprint.value.data)
    if emitted.lds_bytes != footprint:
        raise RocdlLoweringError(
            f"{kernel.name} @{info.name}: the kernel allocates {emitted.lds_bytes} LDS bytes, Tile-IR planned {footprint}"
        )
    return emitted


def kernels(module: ModuleOp) -> list[tile.KernelOp]:
    return [op for op in module.ops if isinstance(op, tile.KernelOp)]


def emit_kernels(module: ModuleOp) -> list[GpuKernel]:
    return [emit_kernel(kernel) for kernel in kernels(module)]


def lower_kernels(module: ModuleOp) -> str:
    """The gpu.module holding every kernel of `module`."""
    return kernels_module([kernel.text for kernel in emit_kernels(module)])


def lower_programs(module: ModuleOp, emitted: list[GpuKernel]) -> dict[str, Any]:
    """The launch lists of every program: arguments in launch order, workgroup grid, block size, LDS bytes."""
    by_name = {kernel.name: kernel for kernel in emitted}

    def launch_fields(kernel: tile.KernelOp, launch: tile.LaunchOp, args: list[dict[str, Any]], program: str,
                      weights: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        gpu = by_name[kernel.sym_name.data]
        for reader in _WEIGHT_READERS.get(kernel.kind.data, ()):
            packing = {"layout": "rows", "dtype": kernel_info(kernel).mma_element or "f32"}
            name = args[reader]["weight"]
            previous = weights[name].get("packing")
            if previous is not None and previous != packing:
                raise RocdlLoweringError(f"weight '{name}': read by kernels with packings {previous} and {packing}")
            weights[name]["packing"] = packing
        return {
            "args": [*args, {"tokens": True}, {"position": True}],
            "grid": gpu.grid.plain(),
            "threads": gpu.threads,
            "lds_bytes": gpu.lds_bytes,
        }

    return describe_programs(module, PROGRAM_FORMAT, launch_fields)
