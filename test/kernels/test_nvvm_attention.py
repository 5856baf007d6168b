"""Hopper's bf16 attention on WGMMA: kernels/attention.py's `bf16_operands` form (tiling/gpu_attention.py chooses
it under bf16), whose two products lowering/nvvm/warpgroup_mma.py turns into wgmma.mma_async
on operands the lanes stage in swizzled shared memory. No GPU is here: the policy and the shared-memory plan
are checked in Python, the numbers in the lockstep simulator (rocdl_sim.py: its WGMMA reads the bytes the lanes
stored, and refuses them without the proxy fence and the barrier that make them visible) against a float64
reference that rounds the scaled queries to bf16 as the kernel does (the probabilities, rounded per key block
of the online softmax, are left to the tolerance), and the 12B shape through ptxas: HGMMA in the SASS, no
spills.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
from conftest import NEEDS_MLIR
from rocdl_sim import KernelModule, SimulationError, Simulator
from test_rocdl_kernels import (
    BF16_INTERMEDIATE_TOLERANCE,
    Attention,
    attention_reference,
    bf16_bits,
    bf16_to_f32,
    built_kernel,
    check,
    check_bf16,
    f32,
    launch,
    nan,
    workgroups,
)
from tile_kernels import tile_kernel

from tessera.arch import GPU_ARCHS, warpgroup_staged_bytes
from tessera.lowering.convert_tile_to_nvvm import emit_kernel
from tessera.lowering.nvvm.warpgroup_mma import operand_placements
from tessera.lowering.nvvm.wgmma import operand_byte_address, smem_descriptor
from tessera.tiling.gpu_attention import POLICIES

pytestmark = NEEDS_MLIR
LOG = logging.getLogger(__name__)
ARCH = "sm_90a"
# GQA with a ragged token block (T = 70: the second warpgroup's rows partly past the tokens) and ragged key
# blocks; D of one K atom, of a partial second one (80: N of
# P·V not a power of two), and the models' 128.
CASES = {
    "gqa2_d64": Attention(4, 2, 64, 160),
    "gqa3_d80": Attention(3, 1, 80, 160),
    "mha_d128": Attention(2, 2, 128, 160),
}
# Nemotron-Nano-12B's attention (40 query heads, 8 KV heads, head dim 128) at an 8K cache.
NANO_12B = {"num_heads": 40, "num_kv_heads": 8, "head_dim": 128, "max_seq_len": 8192}


def _dims(a: Attention, out_dtype: str = "f32") -> dict[str, int | float | str]:
    return {"num_heads": a.heads, "num_kv_heads": a.kv_heads, "head_dim": a.head_dim, "max_seq_len": a.capacity,
            "cache_dtype": "bf16", "out_dtype": out_dtype}  # fmt: skip


def test_the_policy_takes_the_wgmma_form_under_bf16() -> None:
    arch, policy = GPU_ARCHS[ARCH], POLICIES["attention"]
    bf16 = policy({**NANO_12B, "cache_dtype": "bf16"}, "bf16", arch)
    assert bf16.tiles == {"threads": 256, "query_rows": 128, "block_k": 64, "bf16_operands": 1}
    assert bf16.token_block == 128
    assert policy({**NANO_12B, "cache_dtype": "f32"}, "bf16", arch).tiles == bf16.tiles  # K, V rounded as read
    for dims, precision in (({**NANO_12B}, "fp32"), ({**NANO_12B, "cache_dtype": "bf16", "head_dim": 24}, "bf16")):
        assert "bf16_operands" not in policy(dims, precision, arch).tiles, (dims, precision)
    # CDNA keeps its f32 MFMA form under bf16 too (its matrix instruction is a wave's, not a warpgroup's).
    assert "bf16_operands" not in policy({**NANO_12B, "cache_dtype": "bf16"}, "bf16", GPU_ARCHS["gfx942"]).tiles


@pytest.mark.parametrize("head_dim", [64, 80, 128])
def test_shared_memory_is_the_staged_operands(head_dim: int) -> None:
    """Dynamic: the queries [128, D], a K block [64, D], the probabilities [128, 64] in 128-byte rows, and a V
    block [64, D] as it is (MN-major) where D is whole rows, else as [D, 64]; no static shared memory (the
    softmax's reductions stay in registers), so Tile-IR's footprint is the staged bytes."""
    kernel = tile_kernel("attention", {**NANO_12B, "head_dim": head_dim, "cache_dtype": "bf16"}, ARCH, "bf16")
    emitted = emit_kernel(kernel)
    v_block = 64 * head_dim * 2 if head_dim % 64 == 0 else warpgroup_staged_bytes(head_dim, 64)  # MN-major or not
    staged = warpgroup_staged_bytes(128, head_dim) + warpgroup_staged_bytes(64, head_dim)
    staged += warpgroup_staged_bytes(128, 64) + v_block
    assert emitted.dynamic_shared_bytes == staged and emitted.kernel.lds_bytes == 0
    assert kernel.footprint is not None and int(kernel.footprint.value.data) == staged
    if head_dim == 128:
        assert staged == 80 * 1024
    assert emitted.uses_wgmma and not emitted.tensor_maps and emitted.kernel.threads == 256


def test_the_staged_layout_is_what_the_descriptors_read() -> None:
    """Where the lanes store element (s, c) of an operand (Placement.offset) is where a WGMMA descriptor reads
    it: K-major, at each K step's descriptor (wgmma.operand_byte_address), for every row and K of a [128, 128]
    operand; MN-major, the PTX ISA's canonical 128-byte-swizzle layout ((T, 8, m), (8, k)) : ((1, T, LBO),
    (8 T, SBO)) in elements of 2 bytes, T = 8, LBO the atom stride and SBO 1024 bytes, for a [K = 64, N =
    128] V block."""
    a, _ = operand_placements(True, (0, 0), 128, 64, 128)
    for row in range(128):
        for k in range(128):
            atom, within = divmod(k, 64)
            descriptor = smem_descriptor(atom * 128 * 128 + (within // 16) * 32)
            assert operand_byte_address(descriptor, row, k % 16) == a.offset(row, k), (row, k)
    _, v = operand_placements(False, (0, 16384), 128, 128, 64)
    assert v.mn_major and v.atom_bytes == 64 * 128
    for k in range(64):
        for n in range(128):
            (i0, i1, i2), (j0, j1) = (n % 8, n // 8 % 8, n // 64), (k % 8, k // 8)
            element = i0 + 8 * i1 + i2 * (v.atom_bytes // 2) + j0 * 64 + j1 * (1024 // 2)
            address = 2 * element
            assert v.offset(k, n) == 16384 + (address ^ (((address >> 7) & 7) << 4)), (k, n)


@pytest.mark.parametrize("out_dtype", ["f32", "bf16"])
@pytest.mark.parametrize("case", CASES)
def test_attention_matches_float64_in_the_simulator(rng: np.random.Generator, case: str, out_dtype: str) -> None:
    """Calls of 70, 1 and 5 tokens over one cache (rows past the last key NaN: never read), every product on
    WGMMA: the simulator's count of multiply-adds puts at least 90% on the matrix instruction (the rest are
    the exponentials' polynomials)."""
    a = CASES[case]
    dims = _dims(a, out_dtype)
    assert built_kernel("attention", dims, "bf16", ARCH).tiles.get("bf16_operands") == 1
    caches = [bf16_bits(nan(a.capacity, a.kv_heads, a.head_dim)) for _ in range(2)]
    position = 0
    for tokens in (70, 1, 5):
        qkv = f32(rng.standard_normal((tokens, a.width)) * 1.5)
        new = qkv[:, a.heads * a.head_dim :].reshape(tokens, 2, a.kv_heads, a.head_dim)
        for cache, rows in zip(caches, (new[:, 0], new[:, 1]), strict=True):  # kv_append's part, done here
            cache[position : position + tokens] = bf16_bits(rows)
        out = nan(tokens, a.heads * a.head_dim)
        out = bf16_bits(out) if out_dtype == "bf16" else out
        buffers = {"qkv": qkv, "k_cache": caches[0], "v_cache": caches[1], "out": out}
        report = launch(ARCH, "attention", dims, "bf16", buffers, tokens, position)
        keys, values = (bf16_to_f32(cache) for cache in caches)
        want = attention_reference(a, qkv, keys, values, position, bf16_queries=True)
        what = f"attention {case} T={tokens} position={position}"
        if out_dtype == "bf16":
            check_bf16(what, out, want, BF16_INTERMEDIATE_TOLERANCE)
        else:
            check(what, out, want, BF16_INTERMEDIATE_TOLERANCE)
        share = report.matrix_macs / (report.matrix_macs + report.lane_macs)
        LOG.info("%s: %.1f%% of the multiply-adds on WGMMA", what, 100 * share)
        assert share >= 0.9, f"{what}: {share:.1%} of the multiply-adds on WGMMA"
        position += tokens


@functools.cache
def _text() -> tuple[str, str, tuple[str, ...], int]:
    kernel = emit_kernel(tile_kernel("attention", _dims(CASES["gqa2_d64"]), ARCH, "bf16"))
    return kernel.text, kernel.name, kernel.kernel.params, kernel.dynamic_shared_bytes


@pytest.mark.parametrize(
    ("dropped", "error"),
    [("fence", "without a fence.proxy.async"), ("barrier", "since the last barrier")],
)
def test_the_simulator_refuses_staging_without_fence_or_barrier(rng: np.random.Generator, dropped: str,
                                                                 error: str) -> None:  # fmt: skip
    """The kernel with each proxy fence (or the barrier after it) taken out: the WGMMA's read of what the
    lanes stored is refused."""
    text, name, params, shared_bytes = _text()
    lines = text.splitlines()
    fences = [i for i, line in enumerate(lines) if "nvvm.fence.proxy" in line]
    assert fences and all(lines[i + 1].strip() == "gpu.barrier" for i in fences)
    drop = {i if dropped == "fence" else i + 1 for i in fences}
    broken = "\n".join(line for i, line in enumerate(lines) if i not in drop)
    simulator = Simulator(KernelModule(broken), name, 32, params)
    a, tokens = CASES["gqa2_d64"], 5
    caches = [bf16_bits(f32(rng.standard_normal((a.capacity, a.kv_heads, a.head_dim)))) for _ in range(2)]
    buffers = {"qkv": f32(rng.standard_normal((tokens, a.width))), "k_cache": caches[0], "v_cache": caches[1],
               "out": nan(tokens, a.heads * a.head_dim)}  # fmt: skip
    kernel = built_kernel("attention", _dims(a), "bf16", ARCH).kernel
    with pytest.raises(SimulationError, match=error):
        simulator.run(workgroups(kernel, tokens), buffers, {"tokens": tokens, "position": 0}, shared_bytes=shared_bytes)


def test_the_12b_shape_assembles_with_hgmma_and_no_spills() -> None:
    from tessera.lowering.nvvm import pipeline

    if pipeline.find_ptxas() is None or pipeline.find_disassembler() is None:
        pytest.skip("ptxas / nvdisasm are not installed (pip install nvidia-cuda-nvdisasm; CUDA's ptxas)")
    kernel = emit_kernel(tile_kernel("attention", {**NANO_12B, "cache_dtype": "bf16"}, ARCH, "bf16"))
    cubin = pipeline.assemble(pipeline.to_ptx(pipeline.to_llvm_ir(kernel.text)), kernel.name)
    report = cubin.kernels[kernel.name]
    assert report.spill_stores == report.spill_loads == report.stack_frame == 0, cubin.log
    assert "injected" not in cubin.log and "serialized" not in cubin.log, cubin.log
    sass = pipeline.disassemble(cubin.data, kernel.name)
    counts = pipeline.sass_opcodes(sass)
    # Per key block and warpgroup: Q·Kᵀ is 8 K steps of m64n64k16, P·V 4 of m64n128k16.
    assert counts["HGMMA"] == 12, counts
    assert "HGMMA.64x64x16.F32.BF16" in sass and "HGMMA.64x128x16.F32.BF16" in sass
    # V is read as staged, through the transposed (MN-major) descriptor; K and the queries K-major.
    transposed = [line for line in sass.splitlines() if "HGMMA" in line and ".tnspB" in line]
    assert len(transposed) == 4 and all("64x128x16" in line for line in transposed), transposed
