"""convert-tessera-tile-to-nvvm: Tile-IR tiled for Hopper (target sm_90a) -> one `gpu.module` of NVVM kernels
and the program the CUDA runtime launches.

    emit_kernels(module) -> [NvvmKernel]   one `gpu.func` per `tessera.tile.kernel`, from the tiles chosen in
                                           Tile-IR: bf16 projections on WGMMA with TMA-staged operands
                                           (lowering/nvvm/gemm.py), the rest kernels of kernels/ through
                                           the SIMT lowering shared with the other GPU targets
    lower_kernels(module) -> str           their gpu.module (what `tessera-opt -t nvvm-mlir` prints)
    lower_programs(module, kernels)        program.json: launches with grid, block size, dynamic shared
                                           bytes, and the tensor maps the runtime encodes for TMA operands

Shared memory is checked against Tile-IR: a SIMT kernel's static shared tiles (workgroup attributions) are
exactly the body's `shared` loads, and a TMA kernel's dynamic allocation holds exactly the body's async
`shared` operand tiles plus its mbarriers. Not yet lowered here: the MoE experts (kind moe_experts), and
WGMMA versions of attention and the chunked scan (their Hopper plans are SIMT for now; lowering/gpu/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from tessera.arch import GPU_ARCHS
from tessera.dialects import parse_kernel, tile
from tessera.errors import TesseraError
from tessera.lowering.gpu.kernel_info import gpu_kernel_info, record_weight_packing, tile_kernels
from tessera.lowering.programs import describe_programs
from tessera.lowering.rocdl.kernel_text import GpuKernel, KernelInfo

# The launch fields a kernel is compiled for (program.json records them per kernel; runtime/program_check.py).
KERNEL_FIELDS = ("grid", "threads", "shared_bytes", "tensor_maps")
PROGRAM_FORMAT = "tessera-nvvm-program"
NVVM_ARCHS = tuple(name for name, arch in GPU_ARCHS.items() if arch.vendor == "nvidia")
# The weight operands (launch argument indices) that matrix kernels read, converted once at load.
_WEIGHT_READERS = {"matmul": (1,)}


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
    """What the emitters read of a kernel; refuses one not tiled for sm_90a. `lds` holds the body's shared
    tiles (a SIMT kernel's workgroup attributions, or the TMA operand tiles of the GEMM's dynamic allocation)."""
    return gpu_kernel_info(kernel, NVVM_ARCHS, "shared", NvvmLoweringError, "sm_90a")


def _emit_matmul(info: KernelInfo) -> NvvmKernel:
    """The bf16 GEMM on WGMMA (an f32 one has no matrix instruction: kernels/gemm.py's GPU blocks, SIMT)."""
    from tessera.lowering.nvvm.gemm import Sm90GemmPlan, gemm_sm90_kernel

    n, k = info.dim("n"), info.dim("k")
    x_dtype = str(info.dims.get("x_dtype", "f32"))
    if x_dtype != "bf16":
        raise NvvmLoweringError(
            f"tessera.tile.kernel @{info.name}: the WGMMA GEMM reads bf16 activations, this projection's are {x_dtype}"
        )
    emitted = gemm_sm90_kernel(
        info.name, n, k, bool(info.dims.get("bias", 0)), bool(info.dims.get("row_scale", 0)),
        str(info.dims["epilogue"]), str(info.dims.get("y_dtype", "f32")), info.tiles,
    )  # fmt: skip
    plan = Sm90GemmPlan.from_tiles(info.tiles)
    maps = [
        TensorMap(0, "bf16", k, "tokens", plan.block_m, plan.block_k),
        TensorMap(1, "bf16", k, n, plan.block_n, plan.block_k),
    ]
    static = GpuKernel(emitted.name, emitted.text, emitted.threads, emitted.grid, 0)
    return NvvmKernel(static, plan.shared_bytes, maps, uses_wgmma=True, operand_shared_bytes=plan.operand_bytes)


def _emitters() -> dict[str, Callable[[KernelInfo], NvvmKernel]]:
    return {"matmul": _emit_matmul}


def emit_kernel(kernel: tile.KernelOp) -> NvvmKernel:
    info = kernel_info(kernel)
    if kernel.is_dataflow():
        from tessera.lowering.gpu.dataflow import lower_dataflow_kernel

        return NvvmKernel(lower_dataflow_kernel(kernel, info.arch, kernel.target.data))  # type: ignore[union-attr]
    emitter = _emitters().get(info.kind)
    if emitter is None:
        raise NvvmLoweringError(f"{kernel.name} @{info.name}: kind '{info.kind}' has no NVVM lowering yet")
    emitted = emitter(info)
    footprint = 0 if kernel.footprint is None else int(kernel.footprint.value.data)
    if emitted.planned_shared_bytes != footprint:
        raise NvvmLoweringError(
            f"{kernel.name} @{info.name}: the kernel allocates {emitted.planned_shared_bytes} shared bytes, "
            f"Tile-IR planned {footprint}"
        )
    return emitted


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
    from tessera.lowering.nvvm.kernel_text import kernels_module

    return kernels_module([kernel.text for kernel in emit_kernels(module)])


def lower_programs(module: ModuleOp, emitted: list[NvvmKernel]) -> dict[str, Any]:
    """The launch lists of every program: arguments in launch order, grid, block size, dynamic shared bytes,
    tensor maps."""
    by_name = {kernel.name: kernel for kernel in emitted}

    def launch_fields(kernel: tile.KernelOp, launch: tile.LaunchOp, args: list[dict[str, Any]], program: str,
                      weights: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        nvvm = by_name[kernel.sym_name.data]
        record_weight_packing(kernel_info(kernel), args, weights, _WEIGHT_READERS, NvvmLoweringError)
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
