"""The NVVM target's kernel emitters (Hopper, sm_90a): gpu.func text with TMA, mbarrier and WGMMA ops of the
upstream nvvm dialect, lowered by MLIR 22 and LLVM 22's NVPTX back end, assembled by CUDA's ptxas.

What is here (the backend is targets/nvvm.py; convert_tile_to_nvvm.py picks an emitter per kind, the
SIMT ones shared with ROCDL living in lowering/gpu/simt*.py):

    kernel_text.py   NvvmKernelBuilder: the ROCDL gpu.func builder with the NVVM ABI (CUtensorMap grid
                     constants, one 1024-aligned dynamic shared allocation, the NVPTX data layout) and
                     kernels_module() to wrap kernels in a gpu.module
    gemm.py          emit_gemm_sm90 / gemm_sm90_kernel: y (op)= row_scale * (x @ W^T) + bias with a TMA
                     producer warpgroup, two WGMMA consumer warpgroups, a 3-stage mbarrier ring (its
                     docstring has the layout, the phase logic, the descriptor and fragment encodings);
                     the plan's 98304 operand bytes + 48 bytes of mbarriers = 98352 bytes of dynamic
                     shared memory
    math.py          f32 exp / log / sqrt / rsqrt written out in the kernel (no libdevice in the PTX)
    pipeline.py      gpu.module -> LLVM IR -> PTX (llvmlite, sm_90a, +ptx80) -> cubin (ptxas -v, with
                     registers / spills parsed) -> SASS (nvdisasm or cuobjdump, from PyPI's
                     nvidia-cuda-nvdisasm / nvidia-cuda-cuobjdump 13.5.37)

Proven here without a GPU (test/test_nvvm_gemm.py): the kernels go through MLIR 22, LLVM and ptxas for
sm_90a for the shapes and epilogues tested; the PTX has wgmma.mma_async, cp.async.bulk.tensor, mbarrier
and the tensor maps as `.param .align 64 .b8 [128]`; ptxas reports no spills and no stack, and injects
no warpgroup.arrive / wait of its own (so the WGMMAs are not serialized); the SASS has HGMMA and
UTMALDG; the descriptor addresses agree with the TMA 128-byte swizzle (a model of both), every
accumulator element has one owner, and a randomized model of the mbarrier protocol neither deadlocks
nor lets a stage be overwritten before every consumer warp has released it.

What a GPU run must still verify (none of it can be observed without one):

1. Numerics: y against a float64 reference for M not a multiple of 128 (and M < 128), N = 200, K = 64
   and K = 5120, every epilogue and y dtype, with and without bias / row_scale (this checks the
   descriptor encoding, the swizzle match, the fragment layout and the bf16 rounding together).
2. The host side the runtime must add: cuTensorMapEncodeTiled for x and W exactly as gemm.py's
   docstring says (bf16, dims {K, rows}, box {64, 128}, SWIZZLE_128B, OOB fill zeros), the maps passed
   by value as the first two kernel parameters, cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES,
   98352) before a launch with 98352 bytes of dynamic shared memory, 384 threads, grid
   (ceil(N/128), ceil(tokens/128)). Loaded through cuModuleLoadData from the cubin or the PTX.
3. That the kernel neither hangs nor faults on a tail box (rows or K past the tensor's end: the full
   box's bytes must still complete the transaction count, as the PTX ISA says they do), and that the
   wait loop of MLIR's `nvvm.mbarrier.try_wait.parity` (inline PTX with `bra.uni`, which asserts the
   warp agrees: every lane tests the same barrier in one instruction) behaves under contention.
4. Speed against cuBLAS (TOOLCHAIN.md's 8192x5120x20480: 2.16 ms). Known gaps: one tile per CTA (no
   persistent scheduler), wgmma.wait_group 0 every k-block (no WGMMA / release overlap), a scalar,
   branchy epilogue straight from registers (no shared-memory staging or TMA store), no setmaxnreg,
   no clusters / multicast, and the plan's mma_n = 64 (two m64n64k16 per K-step re-read A from shared
   memory; mma_n = 128 is one m64n128k16 and is supported: a tiles override).
"""
