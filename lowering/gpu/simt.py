"""The builder of the hand-written SIMT kernel the GPU targets still share (simt_gemm.py), written against
GpuKernelBuilder and the wave size it reports (64 lanes on CDNA, a warp of 32 on Hopper), so that ROCDL and
NVVM differ only in the builder they get here: the kernel ABI, the function attributes and the module each
target's pipeline lowers.
"""

from __future__ import annotations

from tessera.lowering.rocdl.kernel_text import WAVE_SIZE, GpuKernelBuilder, KernelInfo


def simt_builder(info: KernelInfo, operands: list[str]) -> GpuKernelBuilder:
    """The gpu.func builder of `info`'s arch: pointers for `operands`, the LDS tiles of its Tile-IR body."""
    threads = info.tile("threads")
    if info.arch.vendor == "nvidia":
        from tessera.lowering.nvvm.kernel_text import NvvmKernelBuilder

        return NvvmKernelBuilder(info.name, operands, [], threads, shared=info.lds)
    assert info.arch.wave_size == WAVE_SIZE, info.arch
    return GpuKernelBuilder(info.name, operands, info.lds, threads)
