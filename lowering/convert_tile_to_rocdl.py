"""convert-tessera-tile-to-rocdl: Tile-IR tiled for a CDNA GPU (target gfx942 | gfx90a) -> one `gpu.module`
of ROCDL kernels and the program the runtime launches.

    emit_kernels(module) -> [GpuKernel]   one GPU function per `tessera.tile.kernel` (each written in kernels/)
                                          through convert-tessera-tile-to-simt, its mmas on MFMA where they
                                          are whole 16x16 blocks
    lower_kernels(module) -> str          their gpu.module (what `tessera-opt -t rocdl-mlir` prints)
    lower_programs(module, kernels)       program.json: launches with their workgroup grid, block size, LDS

The ABI every kernel follows is in lowering/gpu/kernel.py (pointers in launch order, then the token count
and the sequence position).
"""

from __future__ import annotations

from typing import Any

from xdsl.dialects.builtin import ModuleOp

from tessera.arch import GPU_ARCHS
from tessera.dialects import parse_kernel, tile
from tessera.errors import TesseraError
from tessera.lowering.gpu.kernel import GpuKernel, KernelInfo, kernels_module
from tessera.lowering.gpu.kernel_info import gpu_kernel_info, record_weight_packing, tile_kernels
from tessera.lowering.programs import describe_programs

# The launch fields a kernel is compiled for (program.json records them per kernel; runtime/program_check.py).
KERNEL_FIELDS = ("grid", "threads", "lds_bytes")
PROGRAM_FORMAT = "tessera-rocdl-program"
ROCDL_ARCHS = tuple(name for name, arch in GPU_ARCHS.items() if arch.vendor == "amd")


class RocdlLoweringError(TesseraError):
    """A Tile-IR module the ROCDL target cannot lower (another target's tiles, an unknown kind, ...)."""


def kernel_info(kernel: tile.KernelOp) -> KernelInfo:
    """What the lowering reads of a kernel beside its body; refuses one not tiled for a ROCDL arch."""
    return gpu_kernel_info(kernel, ROCDL_ARCHS, RocdlLoweringError, "gfx942")


def emit_kernel(kernel: tile.KernelOp) -> GpuKernel:
    """A kernel of kernels/ through the SIMT lowering; its LDS must be what Tile-IR planned."""
    info = kernel_info(kernel)
    if not kernel.is_dataflow():
        raise RocdlLoweringError(f"{kernel.name} @{info.name}: kind '{info.kind}' has no ROCDL lowering")
    from tessera.lowering.gpu.dataflow import lower_dataflow_kernel

    emitted = lower_dataflow_kernel(kernel, info.arch, info.arch.name)
    footprint = 0 if kernel.footprint is None else int(kernel.footprint.value.data)
    if emitted.lds_bytes != footprint:
        raise RocdlLoweringError(
            f"{kernel.name} @{info.name}: the kernel allocates {emitted.lds_bytes} LDS bytes, Tile-IR planned {footprint}"
        )
    return emitted


def emit_kernels(module: ModuleOp) -> list[GpuKernel]:
    return [emit_kernel(kernel) for kernel in tile_kernels(module)]


def emit_printed_kernel(text: str) -> GpuKernel:
    """emit_kernel of a kernel as Tessera printed it: what a compile worker is given (targets/backend.py
    in_workers), since IR objects do not cross processes."""
    kernel = parse_kernel(text)
    assert isinstance(kernel, tile.KernelOp)
    return emit_kernel(kernel)


def lower_kernels(module: ModuleOp) -> str:
    """The gpu.module holding every kernel of `module`."""
    return kernels_module(emit_kernels(module))


def lower_programs(module: ModuleOp, emitted: list[GpuKernel]) -> dict[str, Any]:
    """The launch lists of every program: arguments in launch order, workgroup grid, block size, LDS bytes."""
    by_name = {kernel.name: kernel for kernel in emitted}

    def launch_fields(kernel: tile.KernelOp, args: list[dict[str, Any]], program: str,
                      weights: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        gpu = by_name[kernel.sym_name.data]
        record_weight_packing(kernel_info(kernel), args, weights, RocdlLoweringError)
        return {
            "args": [*args, {"tokens": True}, {"position": True}],
            "grid": gpu.grid.plain(),
            "threads": gpu.threads,
            "lds_bytes": gpu.lds_bytes,
        }

    return describe_programs(module, PROGRAM_FORMAT, launch_fields, KERNEL_FIELDS)
