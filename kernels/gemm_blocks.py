"""The GEMM as a GPU workgroup runs it (kernels/gemm.py's semantics and epilogues; that module's matmul
builds this body for tiles with `block_m`): y[T, N] (op)= x[T, K] @ W[N, K]ᵀ, W in its own row-major layout
(converted once at load to the kernel's weight element type), one program per block_m x block_n tile of y —
the grid's column blocks by the call's token blocks (tessera.tile.kernel's token_block):

    acc [block_m, block_n] = 0
    for each K step of block_k:                     a, b masked past the tokens, N and K (they read as 0)
        a = x[rows, step] [block_m, block_k];  b = W[columns, step] [block_n, block_k]
        acc = mma(a, bᵀ, acc)                       a converted to W's element where they differ (bf16
                                                    operands under --precision bf16); f32 sums
    y tile = row_scale acc + bias, stored / accumulated / relu2, masked past the tokens and N

Where the tiles name `stages` (Hopper's bf16 GEMM), the K loop is software-pipelined that deep and a and b are
async loads into shared memory with the tiles' `swizzle`: a copy engine streams them ahead of the mma.

Where a matrix tile's elements live is the target lowering's choice (lowering/simt_lanes.py: the SIMT lowering
keeps the accumulator in a Blocked lane grid and stages a and b through shared memory / LDS per step)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import MemRefType, f32
from xdsl.ir import SSAValue

from tessera.dialects.tile import element_of
from tessera.kernels.builder import Bound, KernelBuilder, Staging

if TYPE_CHECKING:
    from tessera.kernels.gemm import Epilogue


def block_gemm(k: KernelBuilder, n: int, k_size: int, tiles: Mapping[str, int], x: SSAValue, w: SSAValue,
               epilogue: Epilogue) -> None:  # fmt: skip
    """The program's tile of y; `epilogue` masks y's rows past the call's tokens (its row_bound)."""
    block_m, block_n, block_k = (tiles[key] for key in ("block_m", "block_n", "block_k"))
    row, column = k.muli(k.token_block_id, k.index(block_m)), k.muli(k.program_id, k.index(block_n))
    ragged_k = k.index(k_size) if k_size % block_k else None
    x_bound = _bounds({0: k.size(x), 1: ragged_k})
    w_bound = _bounds({0: k.index(n) if n % block_n else None, 1: ragged_k})
    zero = k.splat(k.f32(0.0), [block_m, block_n])
    stages, staged = _staging(tiles)
    with k.loop(k.index(0), k.index(k_size), k.index(block_k), [zero], stages) as step:
        a = k.load(x, [row, step.iv], [block_m, block_k], x_bound, staged=staged)
        b = k.load(w, [column, step.iv], [block_n, block_k], w_bound, staged=staged)
        if element_of(a.type) != element_of(b.type):  # x as the weight's element, the mma's operands
            a = k.convert(a, element_of(b.type))
        step.yield_(k.mma(a, b, step.args[0], rhs_transposed=True))
    epilogue.store(row, column, step.results[0], first=True, last=True)


def _staging(tiles: Mapping[str, int]) -> tuple[int | None, Staging | None]:
    """The K loop's pipeline stages and how its operands are staged, where the tiles pipeline it (Hopper: a
    copy engine streams a and b into `stages` swizzled buffers of shared memory ahead of the mma)."""
    if "stages" not in tiles:
        return None, None
    return tiles["stages"], ("shared", True, tiles["swizzle"])


def _bounds(bounds: Mapping[int, SSAValue | None]) -> Bound:
    """The bounds that apply, by tile axis (None where none does)."""
    present = {axis: bound for axis, bound in bounds.items() if bound is not None}
    return present or None


def gemv(k: KernelBuilder, n: int, k_size: int, tiles: Mapping[str, int], x: SSAValue, w: SSAValue,
         epilogue: Epilogue) -> None:  # fmt: skip
    """y[0, columns] of a call of one token (a decode step), one program per `columns` columns of W
    (gemv_sums), the GEMM's epilogues on each."""
    first = k.muli(k.program_id, k.index(tiles["columns"]))
    for c, total in enumerate(gemv_sums(k, n, k_size, tiles, (x, [k.index(0)]), (w, []), first)):
        epilogue.store(k.index(0), k.addi(first, k.index(c)), k.splat(total, [1, 1]), first=True, last=True)


def gemv_sums(k: KernelBuilder, n: int, k_size: int, tiles: Mapping[str, int], x: tuple[SSAValue, list[SSAValue]],
              w: tuple[SSAValue, list[SSAValue]], first: SSAValue) -> list[SSAValue]:  # fmt: skip
    """The f32 dot products of a row of x (x[*at, :], length k_size) with the `columns` rows of W from
    `first` (w[*at, row, :], of N rows): each step of block_k reads x's once and each row's (one vector a
    lane), products summed per lane along K and reduced across the lanes at the end — W streamed once, by
    every program at once. x is rounded to W's element where they differ, as the GEMM's mma operands are. A
    row past N reads W's last row: its sum is the caller's to drop."""
    (x_buffer, x_at), (w_buffer, w_at) = x, w
    columns, block_k = tiles["columns"], tiles["block_k"]
    assert isinstance(w_buffer.type, MemRefType)
    weight_element = w_buffer.type.element_type
    rows = [k.minsi(k.addi(first, k.index(c)), k.index(n - 1)) for c in range(columns)]
    ragged_k = k.index(k_size) if k_size % block_k else None
    zeros = [k.splat(k.f32(0.0), [block_k]) for _ in range(columns)]
    with k.loop(k.index(0), k.index(k_size), k.index(block_k), zeros) as step:
        a = k.load(x_buffer, [*x_at, step.iv], [block_k], ragged_k)
        a = k.convert(k.convert(a, weight_element), f32)
        sums = []
        for row, acc in zip(rows, step.args, strict=True):
            b = k.convert(k.load(w_buffer, [*w_at, row, step.iv], [block_k], ragged_k), f32)
            sums.append(k.map([acc, b, a], lambda e, s, wv, xv: e.addf(s, e.mulf(wv, xv))))
        step.yield_(*sums)
    return [k.reduce("add", acc) for acc in step.results]
