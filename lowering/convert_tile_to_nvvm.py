"""convert-tessera-tile-to-nvvm: Tile-IR tiled for Hopper (target sm_90a) -> one `gpu.module` of NVVM kernels
and the program the CUDA runtime launches.

    emit_kernels(module) -> [NvvmKernel]   one `gpu.func` per `tessera.tile.kernel`, from the tiles chosen in
                                           Tile-IR: bf16 projections on WGMMA with TMA-staged operands
                                           (lowering/nvvm/wgmma.py), bf16 attention and SSD scan on WGMMA with operands
                                           the lanes stage (lowering/nvvm/warpgroup_mma.py), the rest
                                           kernels of kernels/ through the SIMT lowering shared with the
                                           other GPU targets
    lower_kernels(module) -> str           their gpu.module (what `tessera-opt -t nvvm-mlir` prints)
    lower_programs(module, kernels)        program.json: launches with grid, block size, dynamic shared
                                           bytes, and the tensor maps the runtime encodes for TMA operands

Shared memory is checked against Tile-IR: a SIMT kernel's static shared tiles (workgroup attributions) are
exactly the body's `shared` loads, and a TMA kernel's dynamic allocation holds exactly the body's async
`shared` operand tiles plus its mbarriers, a kernel with lane-staged WGMMA operands one dynamic allocation of
them (beside its static tiles). The MoE experts are SIMT kernels here for now, and so are attention and the
chunked scan in fp32 (Hopper's only f32 tensor-core path is tf32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects.builtin import MemRefType, ModuleOp

from tessera.arch import GPU_ARCHS
from tessera.dialects import parse_kernel, tile
from tessera.errors import TesseraError
from tessera.lowering.gpu.kernel import GpuKernel, KernelInfo
from tessera.lowering.gpu.kernel_info import gpu_kernel_info, record_weight_packing, tile_kernels
from tessera.lowering.programs import describe_programs

# The launch fields a kernel is compiled for (program.json records them per kernel; runtime/program_check.py).
KERNEL_FIELDS = ("grid", "threads", "shared_bytes", "tensor_maps")
PROGRAM_FORMAT = "tessera-nvvm-program"
NVVM_ARCHS = tuple(name for name, arch in GPU_ARCHS.items() if arch.vendor == "nvidia")


class NvvmLoweringError(TesseraError):
    """A Tile-IR module the NVVM target cannot lower (another target's tiles, a kind without a lowering)."""


@dataclass(frozen=True)
class TensorMap:
    """A TMA operand: launch argument `arg` (a row-major [rows, cols] tensor of `dtype`) is passed as the
    CUtensorMap of boxes [box_rows, box_cols] with `swizzle`; rows "tokens" = the call's token count."""

    arg: int
    dtype: str
    cols: int
    rows: int | str
    box_rows: int
    box_cols: int
    swizzle: str = "128B"

    def plain(self) -> dict[str, Any]:
        return {
            "arg": self.arg, "dtype": self.dtype, "rows": self.rows, "cols": self.cols,
            "box_rows": self.box_rows, "box_cols": self.box_cols, "swizzle": self.swizzle,
        }  # fmt: skip


@dataclass(frozen=True)
class NvvmKernel:
    """An emitted kernel: the gpu.func and its geometry (kernel.lds_bytes: static shared bytes), the dynamic
    shared bytes of a launch and the tensor maps it takes."""

    kernel: GpuKernel
    dynamic_shared_bytes: int = 0
    tensor_maps: list[TensorMap] = field(default_factory=list)
    uses_wgmma: bool = False
    operand_shared_bytes: int | None = None  # the operand tiles of the dynamic allocation (TMA kernels)

    @property
    def planned_shared_bytes(self) -> int:
        """The shared bytes that must equal Tile-IR's footprint: the static tiles, or the TMA operand tiles
        (the mbarriers beside them are the kernel's own)."""
        return self.kernel.lds_bytes if self.operand_shared_bytes is None else self.operand_shared_bytes

    @property
    def name(self) -> str:
        return self.kernel.name

    @property
    def text(self) -> str:
        return self.kernel.text


def kernel_info(kernel: tile.KernelOp) -> KernelInfo:
    """What the lowering reads of a kernel beside its body; refuses one not tiled for sm_90a."""
    return gpu_kernel_info(kernel, NVVM_ARCHS, NvvmLoweringError, "sm_90a")


def emit_kernel(kernel: tile.KernelOp) -> NvvmKernel:
    """A kernel of kernels/ through the SIMT lowering (its pipelined loops through the WGMMA + TMA pattern,
    lowering/nvvm/wgmma.py), with the dynamic shared memory and tensor maps its launch needs."""
    info = kernel_info(kernel)
    if not kernel.is_dataflow():
        raise NvvmLoweringError(f"{kernel.name} @{info.name}: kind '{info.kind}' has no NVVM lowering yet")
    from tessera.lowering.gpu.dataflow import lower_dataflow_kernel
    from tessera.lowering.nvvm.wgmma import pipeline_ring

    lowered = lower_dataflow_kernel(kernel, info.arch, info.arch.name)
    ring = pipeline_ring(kernel)
    _, staged_bytes = tile.warpgroup_staging(kernel, info.arch)
    emitted = NvvmKernel(lowered)
    if ring is not None and staged_bytes:
        raise NvvmLoweringError(
            f"{kernel.name} @{info.name}: a pipelined loop and lane-staged WGMMA operands in one kernel"
        )
    if ring is not None:
        operand_bytes = lowered.lds_bytes + ring.operand_bytes
        emitted = NvvmKernel(lowered, ring.shared_bytes, tensor_maps(kernel), True, operand_bytes)
    elif staged_bytes:
        emitted = NvvmKernel(lowered, staged_bytes, [], True, lowered.lds_bytes + staged_bytes)
    footprint = 0 if kernel.footprint is None else int(kernel.footprint.value.data)
    if emitted.planned_shared_bytes != footprint:
        raise NvvmLoweringError(
            f"{kernel.name} @{info.name}: the kernel allocates {emitted.planned_shared_bytes} shared bytes, "
            f"Tile-IR planned {footprint}"
        )
    return emitted


def tensor_maps(kernel: tile.KernelOp) -> list[TensorMap]:
    """The CUtensorMap of each launch operand that async loads read: its rows (the call's tokens where
    dynamic) and columns, the box a load brings (its tile), 128-byte swizzle."""
    maps: dict[int, TensorMap] = {}
    buffers = kernel.buffers()
    for op in kernel.body.walk():
        if not isinstance(op, tile.LoadOp) or op.is_async is None:
            continue
        buffer, box = op.memref.type, op.result.type
        assert isinstance(buffer, MemRefType) and isinstance(box, tile.TileType)
        rows, cols = buffer.get_shape()
        index = buffers.index(op.memref)
        swizzle = "none" if op.swizzle is None else f"{int(op.swizzle.value.data)}B"
        box_rows, box_cols = box.get_shape()
        extent = "tokens" if rows < 0 else rows
        found = TensorMap(index, str(buffer.element_type), cols, extent, box_rows, box_cols, swizzle)
        if maps.setdefault(index, found) != found:
            raise NvvmLoweringError(f"{kernel.name} @{kernel.sym_name.data}: operand {index} is copied as two boxes")
    return [maps[index] for index in sorted(maps)]


def emit_kernels(module: ModuleOp) -> list[NvvmKernel]:
    return [emit_kernel(kernel) for kernel in tile_kernels(module)]


def emit_printed_kernel(text: str) -> NvvmKernel:
    """emit_kernel of a kernel as Tessera printed it: what a compile worker is given (targets/backend.py
    in_workers), since IR objects do not cross processes."""
    kernel = parse_kernel(text)
    assert isinstance(kernel, tile.KernelOp)
    return emit_kernel(kernel)


def lower_kernels(module: ModuleOp) -> str:
    """The gpu.module holding every kernel of `module`."""
    from tessera.lowering.gpu.kernel import kernels_module

    return kernels_module([kernel.kernel for kernel in emit_kernels(module)])


def lower_programs(module: ModuleOp, emitted: list[NvvmKernel]) -> dict[str, Any]:
    """The launch lists of every program: arguments in launch order, grid, block size, dynamic shared bytes,
    tensor maps."""
    by_name = {kernel.name: kernel for kernel in emitted}

    def launch_fields(kernel: tile.KernelOp, args: list[dict[str, Any]], program: str,
                      weights: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        nvvm = by_name[kernel.sym_name.data]
        record_weight_packing(kernel_info(kernel), args, weights, NvvmLoweringError)
        fields: dict[str, Any] = {
            "args": [*args, {"tokens": True}, {"position": True}],
            "grid": nvvm.kernel.grid.plain(),
            "threads": nvvm.kernel.threads,
            "shared_bytes": nvvm.dynamic_shared_bytes,
        }
        if nvvm.tensor_maps:
            fields["tensor_maps"] = [tensor_map.plain() for tensor_map in nvvm.tensor_maps]
        return fields

    return describe_programs(module, PROGRAM_FORMAT, launch_fields, KERNEL_FIELDS)
