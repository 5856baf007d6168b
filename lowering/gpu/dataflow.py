"""A kernel written in kernels/ as one GPU target's GPU function: convert-tessera-tile-to-simt and
tessera-expand-math on a copy of it, in a GPU module of its own (with the globals it addresses and the arch's
data layout), printed once for MLIR 22 and read back in MLIR's own form (what the target joins, the GPU
pipelines lower and the lockstep simulator reads). Its scratch buffers are workgroup attributions (its own and
those the lowering stages operands through): the kernel's LDS / static shared bytes."""

from __future__ import annotations

from xdsl.dialects import gpu
from xdsl.dialects.builtin import MemRefType, ModuleOp
from xdsl.ir import Attribute

from tessera.arch import GpuArch
from tessera.dialects import tile
from tessera.dialects.schedule import element_bytes
from tessera.dialects.upstream import upstream_text
from tessera.lowering.expand_math import expand_math
from tessera.lowering.gpu.kernel import GpuKernel, Grid
from tessera.lowering.tile_to_simt import lower_to_simt, wrap_in_gpu_module


def lower_dataflow_kernel(kernel: tile.KernelOp, arch: GpuArch, target: str) -> GpuKernel:
    from tessera.toolchain import join_modules

    module = ModuleOp([kernel.clone()])
    lower_to_simt(module, arch)
    expand_math(module, target)
    wrap_in_gpu_module(module, arch)
    (function,) = (op for op in module.walk() if isinstance(op, gpu.FuncOp))
    # Every block argument named (the workgroup attributions too, for the reader); the parameters are the ABI.
    names = [arg.name_hint or f"arg{arg.index}" for arg in function.body.block.args]
    # Not verified here: MLIR 22 verifies the module as it reads it (join_modules), a tenth of a second sooner
    # for the largest kernel.
    text = join_modules([upstream_text(module)], {kernel.sym_name.data: names})
    inputs = len(function.function_type.inputs)
    extent = int(kernel.grid.value.data)
    if kernel.token_block is not None:  # programs over the grid (x) and over blocks of the call's tokens (y)
        grid = Grid(x=(extent, 1), y=("tokens", int(kernel.token_block.value.data)))
    else:
        grid = Grid(x=("tokens", 1)) if extent == 0 else Grid(x=(extent, 1))
    shared_bytes = sum(_bytes(buffer.type) for buffer in function.body.block.args[inputs:])
    threads = tile.workgroup_threads(kernel, arch.wave_size)
    return GpuKernel(kernel.sym_name.data, text, tuple(names), inputs, threads, grid, shared_bytes)


def _bytes(type_: Attribute) -> int:
    assert isinstance(type_, MemRefType)
    count = 1
    for size in type_.get_shape():
        count *= size
    return count * element_bytes(type_.element_type)
