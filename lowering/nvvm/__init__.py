"""The NVVM target's own lowering (Hopper, sm_90a), beside the SIMT lowering it shares with ROCDL
(lowering/tile_to_simt.py): typed IR of MLIR 22's nvvm dialect (dialects/nvvm.py), lowered by MLIR 22 and LLVM
22's NVPTX back end, assembled by CUDA's ptxas. The backend is targets/nvvm.py; convert_tile_to_nvvm.py
lowers every kernel of kernels/ and describes its launch.

    wgmma.py       the WGMMA + TMA pattern: a software-pipelined K loop of tessera.tile.mma whose operands a
                   copy engine stages (the bf16 GEMM of kernels/gemm_blocks.py) becomes a TMA producer
                   warpgroup and WGMMA consumer warpgroups around a ring of mbarrier-guarded shared-memory
                   stages (its docstring has the layout, the phase logic, the register split and the
                   descriptor encoding); the GEMM's ring at 128 x 256 is 196608 operand bytes + 64 bytes of
                   mbarriers = 196672 bytes of dynamic shared memory
    warpgroup_mma.py  tile.mma on WGMMA where the workgroup's lanes stage both operands (bf16 attention and
                   chunked SSD scan):
                   each stored in the 128-byte-swizzle layout its descriptor reads (K-major, or MN-major for
                   a B given [K, N]: a transposed descriptor), fenced for the async proxy between barriers;
                   the softmax's row reductions of its accumulator stay in registers (simt_lanes.WarpgroupRows)
    pipeline.py    the GPU module -> LLVM IR -> PTX (llvmlite, sm_90a, +ptx80) -> cubin (ptxas -v, with
                   registers / spills parsed) -> SASS (nvdisasm or cuobjdump, from PyPI's
                   nvidia-cuda-nvdisasm / nvidia-cuda-cuobjdump 13.5.37)

Proven here without a GPU (test/kernels/test_nvvm_gemm.py): the GEMM goes through MLIR 22, LLVM and ptxas
for sm_90a for the shapes and epilogues tested; the PTX has wgmma.mma_async, cp.async.bulk.tensor, mbarrier
and the tensor maps as `.param .align 64 .b8 [128]`; ptxas reports no spills and no stack, and injects no
warpgroup.arrive / wait of its own (so the WGMMAs are not serialized); the SASS has HGMMA and UTMALDG; the
descriptor addresses agree with the TMA 128-byte swizzle (a model of both), every accumulator element has
one owner, and a randomized model of the mbarrier protocol neither deadlocks nor lets a stage be
overwritten before every consumer warp has released it; and y matches float64 in the lockstep simulator
(test/kernels/rocdl_sim.py models TMA boxes, mbarrier phases, WGMMA descriptors and fragments, and the
producer and consumer warps taking turns at their waits) for ragged M, N and K, a wrapping ring and every
epilogue.

What a GPU run must verify (benchmarks/h100_gemm.py and the nvvm HF contract; the text emitter this pattern
replaced passed both on an H200, with the producer as warpgroup 0 — here it is the last warpgroup, so that
the consumers' thread ids are the accumulator layout's):

1. Numerics on the hardware: y against a float64 reference for M not a multiple of 128 (and M < 128),
   N = 200, K = 64 and K = 5120, every epilogue and y dtype, with and without bias / row_scale (the
   simulator follows the PTX ISA as documented; the chip is the judge).
2. The launch: the tensor maps program.json lists (bf16, dims {K, rows}, boxes {64, 128} for x and
   {64, 256} for W, SWIZZLE_128B, OOB fill zeros) passed by value as the first two parameters, 196672 bytes
   of dynamic shared memory, 384 threads, grid (ceil(N/256), ceil(tokens/128)); setmaxnreg's register
   hand-over (40 / 232) accepted at launch.
3. No hang or fault on a tail box (rows or K past the tensor's end complete the transaction count).
4. Speed against cuBLAS (TOOLCHAIN.md's 8192x5120x20480: 2.16 ms). Known gaps: one tile per CTA (no
   persistent scheduler: the epilogue does not overlap the next tile's loads), an epilogue straight from
   registers (no shared-memory staging or TMA store), no clusters (TMA multicast). One WGMMA group stays in
   flight across k-blocks (wait_group 1) since 2026-12-07.
"""
