"""Matrix tiles through convert-tessera-tile-to-x86, built for this CPU and run against float64: tessera.tile.mma
(vector FMAs, unrolled or, for a large product, a loop over k; dot products where the right operand is given
transposed) in f32 and bf16 (a test GEMM of
tile_kernels.py), with a last row block cut short by the token count
(loads and stores masked along their rows: bounded along axis 0), reductions along either axis with broadcasts (a
row softmax of scores, attention's inner step), and inclusive scans along either axis (f32 and i32).

Bound: each of the K products is added to its row's sum by a multiply-add (fused on this CPU: one rounding;
two where it is not), so an element's error is at most (K + 1) u sum_k |x_k w_k| (u = 2^-24), whichever;
bf16 operands widen exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tile_kernels import (
    gemm_test_kernel,
    gemm_test_operands,
    row_scan_test_kernel,
    scan_test_kernel,
    softmax_test_kernel,
)
from xdsl.dialects.builtin import bf16, f32

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from tessera.interpreters import run_kernel
from tessera.lowering.convert_tile_to_x86 import emit_kernel
from tessera.lowering.x86.pipeline import build_library
from tessera.runtime.native import KernelLibrary

UNIT = 2.0**-24
# rows, cols, depth, step: one K step or several, a row of one, widths of a vector and more, and a product
# large enough (32 rows x 16 steps) that its k steps are a loop (LOOPED_PRODUCT_FMAS)
SHAPES = {"r4_c32_k24_s8": (4, 32, 24, 8), "r1_c16_k4_s4": (1, 16, 4, 4), "r6_c64_k40_s5": (6, 64, 40, 5),
          "r32_c16_k48_s16": (32, 16, 48, 16)}  # fmt: skip


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> KernelLibrary:
    text = [
        emit_kernel(gemm_test_kernel(*shape, element, name=f"{name}_{element}{'_t' * t}", transposed=t))
        for name, shape in SHAPES.items()
        for element in (f32, bf16)
        for t in (False, True)
    ]
    return build_library("\n".join(text), tmp_path_factory.mktemp("mma") / "mma.so")


@pytest.mark.parametrize("transposed", [False, True], ids=["w", "w_transposed"])
@pytest.mark.parametrize("element", ["f32", "bf16"])
@pytest.mark.parametrize("name", SHAPES)
def test_mma_matches_float64(library: KernelLibrary, rng: np.random.Generator, name: str, element: str,
                             transposed: bool) -> None:  # fmt: skip
    rows, cols, depth, _ = SHAPES[name]
    programs = 3
    tokens = programs * rows - (rows > 1)  # the last block one row short where blocks have several
    x_arg, w_arg, x, w = gemm_test_operands(rng, tokens, depth, cols, element, transposed)
    y = np.full((tokens, cols), np.nan, np.float32)
    kernel = library.kernel(f"{name}_{element}{'_t' * transposed}")
    kernel(x_arg, w_arg, y, 0, 1)
    kernel(x_arg, w_arg, y, 1, programs)  # the program range split as the runtime splits it
    want = x.astype(np.float64) @ w.astype(np.float64)
    bound = (depth + 1) * UNIT * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64))
    assert not np.isnan(y).any(), "an element left unwritten"
    assert (np.abs(y - want) <= bound).all(), f"error {np.abs(y - want).max():.2e} above the bound"


@pytest.mark.parametrize("transposed", [False, True], ids=["w", "w_transposed"])
def test_the_interpreter_agrees(rng: np.random.Generator, transposed: bool) -> None:
    """The Tile-IR interpreter runs the same kernel (rounding once: within the same bound)."""
    rows, cols, depth, step = SHAPES["r6_c64_k40_s5"]
    x = rng.standard_normal((2 * rows - 1, depth)).astype(np.float32)
    w = rng.standard_normal((depth, cols)).astype(np.float32)
    y = np.full((2 * rows - 1, cols), np.nan, np.float32)
    w_arg = np.ascontiguousarray(w.T) if transposed else w
    run_kernel(gemm_test_kernel(rows, cols, depth, step, f32, programs=2, transposed=transposed), [x, w_arg, y])
    want = x.astype(np.float64) @ w.astype(np.float64)
    bound = depth * UNIT * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64))
    assert (np.abs(y - want) <= bound).all()


@pytest.mark.parametrize("how", ["x86", "interpreter"])
def test_row_softmax_of_matrix_tiles(tmp_path: Path, rng: np.random.Generator, how: str) -> None:
    """p = softmax over rows of s = x w, colmax = column maxima of s. s carries the mma's bound d = (depth + 1)
    u sum |x||w|; exp(s - max) then errs by a relative 2 d (s and its max both off by d), a ratio of such
    terms by 4 d, and exp, the row sum of `cols` terms and the division add (cols + 8) u."""
    rows, cols, depth, programs = 4, 40, 12, 3
    x = rng.standard_normal((programs * rows, depth)).astype(np.float32)
    w = rng.standard_normal((depth, cols)).astype(np.float32)
    p, colmax = np.full((programs * rows, cols), np.nan, np.float32), np.full((programs, cols), np.nan, np.float32)
    kernel = softmax_test_kernel(rows, cols, depth, programs=programs)
    if how == "x86":
        build_library(emit_kernel(kernel), tmp_path / "softmax.so").kernel("softmax")(x, w, p, colmax, 0, programs)
    else:
        run_kernel(kernel, [x, w, p, colmax])
    s = x.astype(np.float64) @ w.astype(np.float64)
    s_error = ((depth + 1) * UNIT * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64))).max()
    want = np.exp(s - s.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    assert np.isfinite(p).all() and np.isfinite(colmax).all(), "an element left unwritten"
    assert (np.abs(p - want) <= (4 * s_error + (cols + 8) * UNIT) * want).all()
    assert (np.abs(colmax - s.reshape(programs, rows, cols).max(axis=1)) <= s_error).all()


@pytest.mark.parametrize("how", ["x86", "interpreter"])
def test_scans_along_either_axis(tmp_path: Path, rng: np.random.Generator, how: str) -> None:
    """Prefix sums along rows (x86: log2 steps, so each sum has been rounded at most ceil(log2 cols) times:
    error <= ceil(log2 cols) u times the prefix sum of |x|; the interpreter rounds once), running maxima
    down columns and integer prefix counts (exact)."""
    rows, cols, programs = 3, 24, 2
    x = rng.standard_normal((programs * rows, cols)).astype(np.float32)
    sums, peaks = (np.full(x.shape, np.nan, np.float32) for _ in range(2))
    counts = np.full(x.shape, -1, np.int32)
    kernel = scan_test_kernel(rows, cols, programs)
    if how == "x86":
        build_library(emit_kernel(kernel), tmp_path / "scan.so").kernel("scan")(x, sums, peaks, counts, 0, programs)
    else:
        run_kernel(kernel, [x, sums, peaks, counts])
    wide = x.astype(np.float64)
    bound = int(np.ceil(np.log2(cols))) * UNIT * np.cumsum(np.abs(wide), axis=1)
    assert (np.abs(sums - np.cumsum(wide, axis=1)) <= bound).all()
    blocks = x.reshape(programs, rows, cols)
    assert np.array_equal(peaks, np.maximum.accumulate(blocks, axis=1).reshape(x.shape))
    assert np.array_equal(counts, np.cumsum(x > 0, axis=1))


def test_row_scans(tmp_path: Path, rng: np.random.Generator) -> None:
    """The rank-1 form (test_simt_matrix.py runs the same kernel on the GPUs' lowering): a row of 100 scans
    in 7 log2 steps."""
    programs, cols = 3, 100
    x = rng.standard_normal((programs, cols)).astype(np.float32)
    sums, peaks = (np.full(x.shape, np.nan, np.float32) for _ in range(2))
    counts = np.full(x.shape, -1, np.int32)
    library = build_library(emit_kernel(row_scan_test_kernel(cols, "x86", programs)), tmp_path / "scan.so")
    library.kernel("row_scan")(x, sums, peaks, counts, 0, programs)
    wide = x.astype(np.float64)
    assert (np.abs(sums - np.cumsum(wide, axis=1)) <= 7 * UNIT * np.cumsum(np.abs(wide), axis=1)).all()
    assert np.array_equal(peaks, np.maximum.accumulate(x, axis=1))
    assert np.array_equal(counts, np.cumsum(x > 0, axis=1))
