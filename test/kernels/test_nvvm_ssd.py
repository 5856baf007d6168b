"""Hopper's bf16 chunked SSD scan on WGMMA: kernels/ssd_blocks.py in its warpgroup form (tiling/gpu_ssd.py
chooses it under bf16: one warpgroup, row and state blocks of 64, the head's channels as WGMMA's N), whose four
products lowering/nvvm/warpgroup_mma.py turns into wgmma.mma_async on operands the lanes stage. No GPU is
here: the policy and the shared-memory plan are checked in Python, the numbers in the lockstep simulator
against the float64 reference that rounds where the kernel rounds (test_rocdl_kernels' scan_reference_bf16)
and against plain float64 loosely, with the simulator's count of multiply-adds on WGMMA, and the 12B shape
through ptxas (HGMMA in the SASS).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import NEEDS_MLIR
from test_rocdl_kernels import (
    BF16_FLOAT64_TOLERANCE,
    BF16_INTERMEDIATE_TOLERANCE,
    SCAN_KEYS,
    Mamba,
    bf16_bits,
    bf16_to_f32,
    built_kernel,
    check,
    draw_mamba,
    f32,
    launch,
    nan,
    scan_reference,
    scan_reference_bf16,
)
from tile_kernels import tile_kernel

from tessera.arch import GPU_ARCHS, warpgroup_staged_bytes
from tessera.lowering.convert_tile_to_nvvm import emit_kernel
from tessera.tiling.gpu_ssd import POLICIES

pytestmark = NEEDS_MLIR
LOG = logging.getLogger(__name__)
ARCH = "sm_90a"
# Nemotron-Nano-12B's mixer: 128 heads of 80 channels, N = 128 in 8 groups, chunks of 128.
NANO_12B = {"num_heads": 128, "head_dim": 80, "n_groups": 8, "state_size": 128, "chunk_size": 128,
            "time_step_min": 1e-3, "state_dtype": "f32"}  # fmt: skip
# The 12B's head shape (two heads in one group, two channel blocks a head) with an f32 state, and with a bf16
# state a head of channels not a multiple of 8, N not of 64 and a chunk shorter than a row block
# (test_rocdl_kernels' ssd_scan cases run this form too: chunks of 16, 32, 64 and 128, both states).
CASES = {
    "p80_n128_l128": (Mamba(2, 80, 1, 128, chunk=128), "f32"),
    "p20_n40_l32": (Mamba(4, 20, 2, 40, chunk=32), "bf16"),
}


def test_the_policy_takes_the_warpgroup_form_under_bf16() -> None:
    arch, policy = GPU_ARCHS[ARCH], POLICIES["ssd_scan"]
    choice = policy(NANO_12B, "bf16", arch)
    assert choice.tiles == {"chunk": 128, "padded_chunk": 128, "block_rows": 64, "block_p": 40, "block_state": 64,
                            "padded_state": 128, "threads": 128, "operand_bf16": 1}  # fmt: skip
    assert choice.grid == 2 * 128  # two blocks of 40 channels a head (at most 64: the registers)
    assert policy({**NANO_12B, "head_dim": 64}, "bf16", arch).tiles["block_p"] == 64
    wide = policy({**NANO_12B, "head_dim": 300}, "bf16", arch)  # five blocks of 60, rounded up to WGMMA's 8
    assert wide.tiles["block_p"] == 64 and wide.grid == 5 * 128
    # Nemotron-H 47B / 56B: N = 256, so the state of 64 channels (64 KiB) would not fit static shared memory.
    big_state = policy({**NANO_12B, "head_dim": 64, "state_size": 256}, "bf16", arch)
    assert big_state.tiles["block_p"] == 32 and big_state.tiles["padded_state"] == 256
    # fp32 keeps the one-wave lane form; so does CDNA under bf16 (its matrix instruction is a wave's).
    assert policy(NANO_12B, "fp32", arch).tiles["threads"] == 32
    assert policy(NANO_12B, "bf16", GPU_ARCHS["gfx942"]).tiles["threads"] == 64


def test_shared_memory_is_the_staged_operands_and_the_state() -> None:
    """Dynamic: each product's two operands in 128-byte rows — C·Sᵀ, C·Bᵀ, scores·(dt x) and Bᵀ·(x w),
    [64, 64] on the left, the state's and x's [K = 64, N = 40] stored transposed (40 is not whole rows);
    static: the state Sᵀ [128, 40] f32, dt, hi, lo [128] f32, and the key block's hi and lo [64] f32 that the
    scores broadcast along their columns (the lanes pass them through shared memory; the rows' values each
    thread reads itself), under Hopper's 48 KiB; Tile-IR's footprint is their sum. Two programs fit an SM."""
    kernel = tile_kernel("ssd_scan", NANO_12B, ARCH, "bf16")
    emitted = emit_kernel(kernel)
    left, channels = warpgroup_staged_bytes(64, 64), warpgroup_staged_bytes(40, 64)
    staged = 5 * left + 3 * channels  # the four left operands and C·Bᵀ's Bᵀ [64, 64]
    assert emitted.dynamic_shared_bytes == staged == 55 * 1024
    assert emitted.kernel.lds_bytes == 128 * 40 * 4 + 3 * 128 * 4 + 2 * 64 * 4 < 48 * 1024
    assert 2 * (staged + emitted.kernel.lds_bytes) <= GPU_ARCHS[ARCH].scratch_limit
    assert kernel.footprint is not None and int(kernel.footprint.value.data) == staged + emitted.kernel.lds_bytes
    assert emitted.uses_wgmma and not emitted.tensor_maps and emitted.kernel.threads == 128


@pytest.mark.parametrize("case", CASES)
def test_the_scan_matches_float64_in_the_simulator(rng: np.random.Generator, case: str) -> None:
    """Two calls (2 chunks + 5 tokens, cut 3 rows into the second chunk), each against the reference from the
    state the kernel holds; at least 90% of the multiply-adds on WGMMA (the rest: dt, the decays' exponentials
    and the scaling of x)."""
    m, state_dtype = CASES[case]
    dims = m.dims(*SCAN_KEYS, state_dtype=state_dtype)
    assert built_kernel("ssd_scan", dims, "bf16", ARCH).kernel.threads == 128
    tokens, cut = 2 * m.chunk + 5, m.chunk + 3
    inputs = draw_mamba(m, tokens, rng)
    state0 = f32(rng.standard_normal((m.heads, m.head_dim, m.state)))
    bf16_state = state_dtype == "bf16"
    state = bf16_bits(state0) if bf16_state else state0.copy()
    y = nan(tokens, m.inner)
    for start, stop in ((0, cut), (cut, tokens)):
        entering, piece = bf16_to_f32(state) if bf16_state else state.copy(), inputs.rows(start, stop)
        want_y, want_state = scan_reference_bf16(m, piece, entering)
        report = launch(ARCH, "ssd_scan", dims, "bf16", piece.buffers(state, y[start:stop]), stop - start)
        what = f"ssd_scan {case} {state_dtype} rows {start}..{stop}"
        check(f"{what} y", y[start:stop], want_y, BF16_INTERMEDIATE_TOLERANCE)
        check(f"{what} state", state, want_state, BF16_INTERMEDIATE_TOLERANCE)
        float64_y, float64_state = scan_reference(m, piece, entering)
        check(f"{what} y, float64", y[start:stop], float64_y, BF16_FLOAT64_TOLERANCE)
        check(f"{what} state, float64", state, float64_state, BF16_FLOAT64_TOLERANCE)
        share = report.matrix_macs / (report.matrix_macs + report.lane_macs)
        LOG.info("%s: %.1f%% of the multiply-adds on WGMMA", what, 100 * share)
        assert share >= 0.9, f"{what}: {share:.1%} of the multiply-adds on WGMMA"


def test_the_12b_shape_assembles_with_hgmma_and_no_spills() -> None:
    """Per row block: C·Bᵀ m64n64k16 and scores·(dt x) m64n40k16 per key block, C·Sᵀ m64n40k16 per state
    block; per state block the update's m64n40k16 — 4 K steps each, one copy of each loop body in the SASS.
    Registers low enough for two programs an SM (64K registers, 128 threads each)."""
    from tessera.lowering.nvvm import pipeline

    if pipeline.find_ptxas() is None or pipeline.find_disassembler() is None:
        pytest.skip("ptxas / nvdisasm are not installed (pip install nvidia-cuda-nvdisasm; CUDA's ptxas)")
    kernel = emit_kernel(tile_kernel("ssd_scan", NANO_12B, ARCH, "bf16"))
    cubin = pipeline.assemble(pipeline.to_ptx(pipeline.to_llvm_ir(kernel.text)), kernel.name)
    report = cubin.kernels[kernel.name]
    LOG.info("ssd_scan 12B: %s", report)
    assert report.spill_stores == report.spill_loads == report.stack_frame == 0, cubin.log
    assert report.registers * 128 * 2 <= 64 * 1024, report
    sass = pipeline.disassemble(cubin.data, kernel.name)
    counts = pipeline.sass_opcodes(sass)
    assert counts["HGMMA"] == 16, counts
    shapes = [line for line in sass.splitlines() if "HGMMA" in line]
    assert sum("HGMMA.64x64x16.F32.BF16" in line for line in shapes) == 4, shapes
    assert sum("HGMMA.64x40x16.F32.BF16" in line for line in shapes) == 12, shapes
