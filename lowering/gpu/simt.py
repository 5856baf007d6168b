"""The SIMT kernels every GPU target shares (the row kernels of simt_rows.py and the Mamba pieces of
simt_mamba.py): one emitter per kind, written against GpuKernelBuilder and the wave size it reports
(64 lanes on CDNA, a warp of 32 on Hopper), so that ROCDL and NVVM differ only in the builder they get here:
the kernel ABI, the function attributes and the module each target's pipeline lowers.
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.lowering.rocdl.kernel_text import WAVE_SIZE, GpuKernel, GpuKernelBuilder, KernelInfo


def simt_builder(info: KernelInfo, operands: list[str]) -> GpuKernelBuilder:
    """The gpu.func builder of `info`'s arch: pointers for `operands`, the LDS tiles of its Tile-IR body."""
    threads = info.tile("threads")
    if info.arch.vendor == "nvidia":
        from tessera.lowering.nvvm.kernel_text import NvvmKernelBuilder

        return NvvmKernelBuilder(info.name, operands, [], threads, shared=info.lds)
    assert info.arch.wave_size == WAVE_SIZE, info.arch
    return GpuKernelBuilder(info.name, operands, info.lds, threads)


def emitters() -> dict[str, Callable[[KernelInfo], GpuKernel]]:
    from tessera.lowering.gpu import simt_rows

    return dict(simt_rows.EMITTERS)
