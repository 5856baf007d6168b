"""One kernel of a kind, built through the compiler's own path (Tile-IR kernel, tessera-tile-choose-tiles
and tessera-tile-compute-footprint for a target), for the kernel tests of every target; and the kernels the
tests of Tile-IR ops build themselves (ops no production kernel uses yet)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    f32,
    f64,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Region, SSAValue

from tessera.dialects import tile
from tessera.kernels.builder import KernelBuilder
from tessera.lowering.convert_schedule_to_tile import GRID_DIMS
from tessera.passes.tile_choose_tiles import choose_tiles
from tessera.passes.tile_compute_footprint import compute_footprints
from tessera.runtime.weights import bf16_bits, bf16_to_f32


def _attribute(value: int | float | str) -> IntegerAttr | FloatAttr | StringAttr:
    if isinstance(value, str):
        return StringAttr(value)
    if isinstance(value, float):
        return FloatAttr(value, f64)
    return IntegerAttr(value, i64)


def tile_kernel(kind: str, dims: Mapping[str, int | float | str], target: str, precision: str = "fp32",
                name: str | None = None, grid: int | None = None) -> tile.KernelOp:  # fmt: skip
    """The `tessera.tile.kernel` of `kind` with `dims`, tiled for `target` (named `name`, default the kind);
    its grid as convert-tessera-schedule-to-tile sets it (the extent of the kind's grid dimension, 0 for one
    program per token) unless given."""
    if grid is None:
        grid_dim = GRID_DIMS.get(kind)  # none for the kinds a lowering adds (their tiling sets the grid)
        grid = 0 if grid_dim is None or grid_dim not in dims else int(dims[grid_dim])
    kernel = tile.KernelOp(
        properties={
            "sym_name": StringAttr(name or kind),
            "kind": StringAttr(kind),
            "dims": DictionaryAttr({key: _attribute(value) for key, value in dims.items()}),
            "parallel": StringAttr("tokens"),
            "grid": IntegerAttr(grid, i64),
        },
        regions=[Region(Block())],
    )
    module = ModuleOp([kernel])
    choose_tiles(module, target, precision)
    compute_footprints(module)
    kernel.detach()
    return kernel


def row_block_kernel(body: Block, name: str, kind: str, target: str, rows: int, programs: int) -> tile.KernelOp:
    """A test kernel of `programs` programs, each a block of `rows` rows, tiled for `target`."""
    return tile.KernelOp(
        properties={
            "sym_name": StringAttr(name),
            "kind": StringAttr(kind),
            "dims": DictionaryAttr({}),
            "parallel": StringAttr("row_blocks"),
            "grid": IntegerAttr(programs, i64),
            "target": StringAttr(target),
            "tiles": DictionaryAttr({"rows": IntegerAttr(rows, i64)}),
        },
        regions=[Region(body)],
    )


def gemm_test_kernel(rows: int, cols: int, depth: int, step: int, element: Attribute, name: str = "gemm",
                     target: str = "x86", programs: int = 1, transposed: bool = False) -> tile.KernelOp:  # fmt: skip
    """A small GEMM written with tessera.tile.mma, for the tests of the op (the production GEMM is still a
    per-target emitter): y[T, cols] = x[T, depth] w[depth, cols], a program per `rows` rows of y, the whole
    width at once, depth in steps of `step` (a [rows, step] tile of x times a [step, cols] tile of w); its
    grid: `programs` row blocks. The last block's rows past T are masked (bounded along axis 0 on x and y).
    `transposed`: w is given as wᵀ [cols, depth] and read by rows (mma's rhs_transposed)."""
    w_shape = [cols, depth] if transposed else [depth, cols]
    x_type, w_type = MemRefType(element, [DYNAMIC_INDEX, depth]), MemRefType(element, w_shape)
    k = KernelBuilder({"x": x_type, "w": w_type, "y": MemRefType(f32, [DYNAMIC_INDEX, cols])})
    x, w, y = k.buffers
    first, tokens = k.muli(k.program_id, k.index(rows)), k.size(x)
    with k.loop(k.index(0), k.index(depth), k.index(step), [k.splat(k.f32(0.0), [rows, cols])]) as piece:
        a = k.load(x, [first, piece.iv], [rows, step], {0: tokens})
        if transposed:
            b = k.load(w, [k.index(0), piece.iv], [cols, step])
        else:
            b = k.load(w, [piece.iv, k.index(0)], [step, cols])
        piece.yield_(k.mma(a, b, piece.args[0], rhs_transposed=transposed))
    k.store(piece.results[0], y, [first, k.index(0)], {0: tokens})
    return row_block_kernel(k.finish(), name, "gemm_test", target, rows, programs)


def gemm_test_operands(rng: np.random.Generator, tokens: int, depth: int, cols: int, element: str,
                       transposed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Random x [tokens, depth] and w [depth, cols] for gemm_test_kernel: (x, w) as the kernel receives them
    (bf16 bits for bf16; w as wᵀ when transposed), and their float32 values (rounded to bf16 for bf16)."""
    x = rng.standard_normal((tokens, depth)).astype(np.float32)
    w = rng.standard_normal((depth, cols)).astype(np.float32)
    if element == "bf16":  # the kernel reads bf16 bits: compare against the rounded operands
        x_arg, w_arg = bf16_bits(x), bf16_bits(w)
        x, w = bf16_to_f32(x_arg), bf16_to_f32(w_arg)
    else:
        x_arg, w_arg = x, w
    return x_arg, np.ascontiguousarray(w_arg.T) if transposed else w_arg, x, w


def softmax_test_kernel(rows: int, cols: int, depth: int, name: str = "softmax", target: str = "x86",
                        programs: int = 1) -> tile.KernelOp:  # fmt: skip
    """Attention's inner step on matrix tiles, for the tests of reduce-along-an-axis and broadcast: s = x w
    ([rows, depth] times [depth, cols], one mma), p = the row softmax of s (exp(s - rowmax) / rowsum), and
    colmax = the max of each column of s; a program per `rows` rows."""
    k = KernelBuilder(
        {
            "x": MemRefType(f32, [DYNAMIC_INDEX, depth]),
            "w": MemRefType(f32, [depth, cols]),
            "p": MemRefType(f32, [DYNAMIC_INDEX, cols]),
            "colmax": MemRefType(f32, [DYNAMIC_INDEX, cols]),
        }
    )
    x, w, p, colmax = k.buffers
    first, zero = k.muli(k.program_id, k.index(rows)), k.index(0)
    scores = k.mma(k.load(x, [first, zero], [rows, depth]), k.load(w, [zero, zero], [depth, cols]),
                   k.splat(k.f32(0.0), [rows, cols]))  # fmt: skip
    peak = k.broadcast(k.reduce("max", scores, axis=1), 1, cols)
    exps = k.map([scores, peak], lambda e, s, m: e.exp(e.subf(s, m)))
    total = k.broadcast(k.reduce("add", exps, axis=1), 1, cols)
    k.store(k.map([exps, total], lambda e, v, z: e.divf(v, z)), p, [first, zero])
    k.store(k.reduce("max", scores, axis=0), colmax, [k.program_id, zero])
    return row_block_kernel(k.finish(), name, "softmax_test", target, rows, programs)


def _scan_builder(cols: int) -> KernelBuilder:
    """The scan test kernels' buffers: x, its f32 sums and peaks, its i32 counts, [tokens, cols] each."""
    rows = {"x": f32, "sums": f32, "peaks": f32, "counts": i32}
    return KernelBuilder({name: MemRefType(element, [DYNAMIC_INDEX, cols]) for name, element in rows.items()})


def scan_test_kernel(rows: int, cols: int, programs: int = 1) -> tile.KernelOp:
    """Inclusive scans of an f32 [rows, cols] tile per program, for the tests of tessera.tile.scan: sums =
    each row's prefix sums (axis 1), peaks = the running max down each column (axis 0), counts = each row's
    prefix sums of i32 ones where x > 0."""
    k = _scan_builder(cols)
    x, sums, peaks, counts = k.buffers
    first, zero = k.muli(k.program_id, k.index(rows)), k.index(0)
    values = k.load(x, [first, zero], [rows, cols])
    k.store(k.scan("add", values, axis=1), sums, [first, zero])
    k.store(k.scan("max", values, axis=0), peaks, [first, zero])
    k.store(k.scan("add", _positive(k, values), axis=1), counts, [first, zero])
    return row_block_kernel(k.finish(), "scan", "scan_test", "x86", rows, programs)


def row_scan_test_kernel(cols: int, target: str, programs: int) -> tile.KernelOp:
    """Inclusive scans of one row of x per program as a rank-1 [cols] tile (what every target lowers): sums =
    prefix sums, peaks = running maxima, counts = prefix counts (i32) of the positive elements."""
    k = _scan_builder(cols)
    x, sums, peaks, counts = k.buffers
    at = [k.program_id, k.index(0)]
    values = k.load(x, at, [cols])
    k.store(k.scan("add", values), sums, at)
    k.store(k.scan("max", values), peaks, at)
    k.store(k.scan("add", _positive(k, values)), counts, at)
    return row_block_kernel(k.finish(), "row_scan", "scan_test", target, 1, programs)


def _positive(k: KernelBuilder, values: SSAValue) -> SSAValue:
    """1 (i32) where the element is above 0, else 0."""
    return k.map([values], lambda e, v: e.select(e.cmpf("ogt", v, e.f32(0.0)), e.i32(1), e.i32(0)), i32)
