"""Matrix tiles through convert-tessera-tile-to-simt (lowering/simt_lanes.py, simt_matrix.py), run in the
lockstep simulator with waves of 64 (gfx942) and 32 (sm_90a) against float64: tessera.tile.mma in f32 and
bf16, its right operand given as is or transposed (tile_kernels.py's test GEMM, its last row block cut short
by the token count: loads and stores masked along their rows), reductions along either axis and broadcasts
(its row softmax), and inclusive scans of rank-1 tiles. The shapes
take every way a tile spreads over a wave: several elements per lane, fewer elements than lanes
(replicated), and counts that are neither (the last slot padded). The same kernels go through each target's
toolchain to machine code, with no spills.

Bounds are test_x86_mma.py's: each of the K products is added to its sum by a multiply-add (one rounding where
the back end fuses it, two where not), so an element's error is at most (K + 1) u sum_k |x_k w_k|, u = 2^-24;
bf16 operands widen exactly. The softmax adds exp's error on the GPUs (at most 2.43 ulp: lowering/math/exp.py)."""

from __future__ import annotations

import numpy as np
import pytest
from rocdl_sim import Simulator
from tile_kernels import gemm_test_kernel, gemm_test_operands, row_scan_test_kernel, softmax_test_kernel
from xdsl.dialects.builtin import bf16, f32

from tessera.arch import gpu_arch, staged_shape
from tessera.lowering.gpu.dataflow import lower_dataflow_kernel
from tessera.lowering.gpu.kernel import kernels_module

UNIT = 2.0**-24
ARCHS = ("gfx942", "sm_90a")
# rows, cols, depth, step: [4, 8] x tiles (32 elements: replicated over 64 lanes), [6, 5] ones (30: padded),
# [16, 16] (256: four or eight per lane), a row of one.
SHAPES = {
    "r4_c32_k24_s8": (4, 32, 24, 8),
    "r1_c16_k4_s4": (1, 16, 4, 4),
    "r6_c64_k40_s5": (6, 64, 40, 5),
    "r16_c32_k64_s16": (16, 32, 64, 16),
}


def _simulated(kernel, arch: str) -> tuple[Simulator, int]:  # type: ignore[no-untyped-def]
    lowered = lower_dataflow_kernel(kernel, gpu_arch(arch), arch)
    return Simulator.of(lowered, wave_size=gpu_arch(arch).wave_size), lowered.lds_bytes


@pytest.mark.parametrize("transposed", [False, True], ids=["w", "w_transposed"])
@pytest.mark.parametrize("element", ["f32", "bf16"])
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("arch", ARCHS)
def test_mma_matches_float64(rng: np.random.Generator, arch: str, name: str, element: str, transposed: bool) -> None:
    rows, cols, depth, step = SHAPES[name]
    programs = 3
    kernel = gemm_test_kernel(rows, cols, depth, step, bf16 if element == "bf16" else f32, target=arch,
                              programs=programs, transposed=transposed)  # fmt: skip
    simulator, lds_bytes = _simulated(kernel, arch)
    # The two staged operands, [rows, step] and [step, cols] (or [cols, step]), in their storage type; the
    # rows read down a column (x's, w's given transposed) padded to a conflict-free length.
    size = 2 if element == "bf16" else 4
    x_staged = staged_shape((rows, step), size)
    w_staged = staged_shape((cols, step), size) if transposed else (step, cols)
    assert lds_bytes == (int(np.prod(x_staged)) + int(np.prod(w_staged))) * size
    tokens = programs * rows - (rows > 1)  # the last block one row short where blocks have several
    x_arg, w_arg, x, w = gemm_test_operands(rng, tokens, depth, cols, element, transposed)
    y = np.full((tokens, cols), np.nan, np.float32)
    simulator.run((programs, 1), {"x": x_arg, "w": w_arg, "y": y}, {"tokens": tokens, "position": 0})
    want = x.astype(np.float64) @ w.astype(np.float64)
    bound = (depth + 1) * UNIT * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64))
    assert not np.isnan(y).any(), "an element left unwritten"
    assert (np.abs(y - want) <= bound).all(), f"error {np.abs(y - want).max():.2e} above the bound"


# rows, cols, depth: a [2, 16] score tile (replicated over 64 lanes, one per lane of 32), [4, 40] (160: padded),
# [8, 64] (eight or sixteen per lane).
SOFTMAX_SHAPES = {"r2_c16_k4": (2, 16, 4), "r4_c40_k12": (4, 40, 12), "r8_c64_k16": (8, 64, 16)}


@pytest.mark.parametrize("name", SOFTMAX_SHAPES)
@pytest.mark.parametrize("arch", ARCHS)
def test_row_softmax_of_matrix_tiles(rng: np.random.Generator, arch: str, name: str) -> None:
    """p = softmax over rows of s = x w, colmax = column maxima of s (test_x86_mma.py's bounds, exp's larger
    error on the GPUs: (cols + 16) u)."""
    rows, cols, depth = SOFTMAX_SHAPES[name]
    programs = 3
    simulator, _ = _simulated(softmax_test_kernel(rows, cols, depth, target=arch, programs=programs), arch)
    x = rng.standard_normal((programs * rows, depth)).astype(np.float32)
    w = rng.standard_normal((depth, cols)).astype(np.float32)
    p, colmax = np.full((programs * rows, cols), np.nan, np.float32), np.full((programs, cols), np.nan, np.float32)
    buffers = {"x": x, "w": w, "p": p, "colmax": colmax}
    simulator.run((programs, 1), buffers, {"tokens": programs * rows, "position": 0})
    s = x.astype(np.float64) @ w.astype(np.float64)
    s_error = ((depth + 1) * UNIT * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64))).max()
    want = np.exp(s - s.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    assert np.isfinite(p).all() and np.isfinite(colmax).all(), "an element left unwritten"
    assert (np.abs(p - want) <= (4 * s_error + (cols + 16) * UNIT) * want).all()
    assert (np.abs(colmax - s.reshape(programs, rows, cols).max(axis=1)) <= s_error).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_matrix_kernels_build_without_spills(arch: str) -> None:
    """The SIMT output of the same kernels through the target's toolchain: MLIR 22, LLVM, then ptxas (sm_90a,
    where installed) or the AMDGPU back end (gfx942)."""
    pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
    target = gpu_arch(arch)
    kernels = [
        lower_dataflow_kernel(
            gemm_test_kernel(6, 64, 40, 5, element, name=f"gemm_{element}", target=arch), target, arch
        )
        for element in (f32, bf16)
    ]
    kernels.append(lower_dataflow_kernel(softmax_test_kernel(8, 64, 16, target=arch), target, arch))
    if arch == "sm_90a":
        from tessera.lowering.nvvm import pipeline as nvvm

        ptx = nvvm.to_ptx(nvvm.to_llvm_ir(kernels_module(kernels)))
        if nvvm.find_ptxas() is None:
            pytest.skip(reason="ptxas is not installed: the PTX was built, not assembled")
        reports = nvvm.assemble(ptx).kernels
        assert set(reports) == {"gemm_f32", "gemm_bf16", "softmax"}
        assert all(r.spill_stores == r.spill_loads == 0 for r in reports.values()), reports
        assert [reports[k.name].shared_bytes for k in kernels] == [k.lds_bytes for k in kernels]
    else:
        from tessera.lowering.rocdl import pipeline as rocdl

        llvm_ir = rocdl.to_llvm_ir(kernels_module(kernels), arch)
        usage = rocdl.register_usage(rocdl.to_machine_code(llvm_ir, arch).assembly)
        assert set(usage) == {"gemm_f32", "gemm_bf16", "softmax"}
        assert all(u.vgpr_spills == 0 and u.sgpr_spills == 0 for u in usage.values()), usage


@pytest.mark.parametrize("cols", [16, 24, 100], ids=["replicated", "padded", "slots"])
@pytest.mark.parametrize("arch", ARCHS)
def test_row_scans(rng: np.random.Generator, arch: str, cols: int) -> None:
    """Prefix sums (log2 shuffle steps within a slot, then the slots before it: each sum rounded at most
    ceil(log2 W) + slots times), running maxima and integer prefix counts (exact), for a row that the wave
    replicates (16 lanes' worth), pads (24) or spreads over several slots (100)."""
    programs = 3
    simulator, _ = _simulated(row_scan_test_kernel(cols, arch, programs), arch)
    x = rng.standard_normal((programs, cols)).astype(np.float32)
    sums, peaks = (np.full(x.shape, np.nan, np.float32) for _ in range(2))
    counts = np.full(x.shape, -1, np.int32)
    buffers = {"x": x, "sums": sums, "peaks": peaks, "counts": counts}
    simulator.run((programs, 1), buffers, {"tokens": programs, "position": 0})
    lanes = gpu_arch(arch).wave_size
    roundings = int(np.ceil(np.log2(lanes))) + -(-cols // lanes)
    wide = x.astype(np.float64)
    bound = roundings * UNIT * np.cumsum(np.abs(wide), axis=1)
    assert (np.abs(sums - np.cumsum(wide, axis=1)) <= bound).all()
    assert np.array_equal(peaks, np.maximum.accumulate(x, axis=1))
    assert np.array_equal(counts, np.cumsum(x > 0, axis=1))
