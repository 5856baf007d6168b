"""The AMX pattern of `tessera.tile.mma` in convert-tessera-tile-to-x86{amx=true}: accumulators that a loop
carries live in AMX tile registers (dialects/amx.py), on dataflow Tile-IR before the vector patterns.

It takes a loop (scf.ForOp) whose carried tiles are all accumulators of this shape:

    zero = splat of 0.0 as an f32 [M, N] tile                      (TileZeroOp per row tile)
    loop carrying acc = zero:
      a = load of a bf16 [M, 32] tile from a buffer              (TileLoadOp per 16-row tile)
      b = load of a bf16 [16, 32] tile: weights in k pairs        (one TileLoadOp)
      acc = mma(a, b, acc) with rhs_pairs                         (TileMulFOp per row tile)
    store of the loop's result, whole, into an f32 buffer         (TileStoreOp per row tile)

with N the matrix instruction's n (arch.AMX_BF16: 16 x 16 f32 tiles, k 32), M a multiple of its m, loads
without bounds along their buffer's last two axes, used by such mmas only, and at most
arch.AMX_TILE_REGISTERS tiles live at once. The products run row tile by row tile of a, each against every
accumulator's weights (A0 B0, A0 B1, A1 B0, A1 B1: consecutive tdpbf16ps share their A tile, the order
of the removed emitter; sharing B instead profiled a few percent slower here), each input loaded where its first product reads it
(A1 after A0's last product: an input dies before the next is loaded). A loop that does not fit is left to
the vector FMA pattern (lowering/tile_to_x86.py), which computes the same op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import BFloat16Type, Float32Type, FloatAttr, IndexType, MemRefType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern, op_type_rewrite_pattern
from xdsl.rewriter import InsertPoint

from tessera import arch
from tessera.dialects import amx, tile
from tessera.dialects.tile import TileType

UNIT = arch.AMX_BF16
ACC_TILE = amx.TileType(UNIT.m, UNIT.n, f32)
INPUT_TILE = amx.TileType(UNIT.m, UNIT.k, BFloat16Type())


@dataclass
class _Plan:
    """A loop's accumulators and the loads that feed them."""

    mmas: list[tile.MmaOp]  # per carried tile, the mma that updates it
    stores: list[list[tile.StoreOp]]  # per result, the stores that take it
    loads: set[tile.LoadOp] = field(default_factory=set)


def _plain_load(value: SSAValue, body: Block) -> tile.LoadOp | None:
    """The load of a bf16 input tile along its buffer's last two axes, unbounded, in the loop body."""
    op = value.owner
    if not isinstance(op, tile.LoadOp) or op.parent_block() is not body or op.bounds:
        return None
    buffer = op.memref.type
    assert isinstance(buffer, MemRefType)
    rank = len(buffer.get_shape())
    if tile.access_axes(op) != (rank - 2, rank - 1) or not isinstance(buffer.element_type, BFloat16Type):
        return None
    return op


def _plain_store(op: Operation, value: SSAValue) -> bool:
    """A store of `value` whole, unbounded, along the last two axes of an f32 buffer."""
    if not isinstance(op, tile.StoreOp) or op.value is not value or op.bounds:
        return False
    buffer = op.memref.type
    assert isinstance(buffer, MemRefType)
    rank = len(buffer.get_shape())
    return tile.access_axes(op) == (rank - 2, rank - 1) and isinstance(buffer.element_type, Float32Type)


def _zero_splat(value: SSAValue) -> bool:
    op = value.owner
    if not isinstance(op, tile.SplatOp) or not isinstance(op.scalar.owner, arith.ConstantOp):
        return False
    constant = op.scalar.owner.value
    return isinstance(constant, FloatAttr) and constant.value.data == 0.0


def _accumulator_shape(mma: tile.MmaOp) -> bool:
    lhs, rhs, acc = (value.type for value in (mma.lhs, mma.rhs, mma.acc))
    assert isinstance(lhs, TileType) and isinstance(rhs, TileType) and isinstance(acc, TileType)
    (m, k), (rows, cols), (m2, n) = lhs.get_shape(), rhs.get_shape(), acc.get_shape()
    return (
        mma.rhs_pairs is not None
        and isinstance(lhs.element_type, BFloat16Type)
        and m % UNIT.m == 0
        and k == UNIT.k
        and (rows, cols) == (UNIT.k // 2, 2 * UNIT.n)
        and (m2, n) == (m, UNIT.n)
    )


def plan(loop: scf.ForOp) -> _Plan | None:
    """The loop's accumulators, or None where it is not the shape above."""
    body = loop.body.block
    if not loop.iter_args or not all(
        isinstance(value.type, TileType) and _zero_splat(value) for value in loop.iter_args
    ):  # fmt: skip
        return None
    terminator = body.last_op
    assert isinstance(terminator, scf.YieldOp)
    result = _Plan([], [])
    for position, carried in enumerate(body.args[1:]):
        uses = list(carried.uses)
        if len(uses) != 1 or not isinstance(uses[0].operation, tile.MmaOp) or uses[0].index != 2:
            return None
        mma = uses[0].operation
        if mma.parent_block() is not body or not _accumulator_shape(mma):
            return None
        if [(use.operation, use.index) for use in mma.result.uses] != [(terminator, position)]:
            return None
        stores = [use.operation for use in loop.results[position].uses]
        if not all(_plain_store(store, loop.results[position]) for store in stores):
            return None
        result.mmas.append(mma)
        result.stores.append(stores)  # type: ignore[arg-type]
    for mma in result.mmas:
        for operand in (mma.lhs, mma.rhs):
            load = _plain_load(operand, body)
            if load is None:
                return None
            result.loads.add(load)
    feeds = {mma for mma in result.mmas}
    if any(use.operation not in feeds for load in result.loads for use in load.result.uses):
        return None
    return result if _tiles_live(result) <= arch.AMX_TILE_REGISTERS else None


def _row_tiles(value: SSAValue) -> int:
    assert isinstance(value.type, TileType)
    return value.type.get_shape()[0] // UNIT.m


def _tiles_live(p: _Plan) -> int:
    """Accumulators, one row tile of a and every b (row tile i + 1 of a is loaded after row tile i dies)."""
    return sum(_row_tiles(mma.acc) for mma in p.mmas) + 1 + len({mma.rhs for mma in p.mmas})


def _at_row(emit: list[Operation], indices: tuple[SSAValue, ...], row_tile: int) -> list[SSAValue]:
    """`indices` moved down by row_tile tiles of rows (along the second-last axis)."""
    if not row_tile:
        return list(indices)
    offset = arith.ConstantOp.from_int_and_width(row_tile * UNIT.m, IndexType())
    moved = arith.AddiOp(indices[-2], offset.result)
    emit += [offset, moved]
    return [*indices[:-2], moved.result, indices[-1]]


class PromoteAccumulatorsToAmx(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: scf.ForOp, rewriter: PatternRewriter) -> None:
        p = plan(op)
        if p is None:
            return
        zeros = [amx.TileZeroOp(ACC_TILE) for mma in p.mmas for _ in range(_row_tiles(mma.acc))]
        old = op.body.block
        body = Block(arg_types=[IndexType(), *(ACC_TILE for _ in zeros)])
        old.args[0].replace_all_uses_with(body.args[0])
        carried = iter(body.args[1:])
        accumulators: dict[tile.MmaOp, list[SSAValue]] = {
            mma: [next(carried) for _ in range(_row_tiles(mma.acc))] for mma in p.mmas
        }
        loaded: dict[tuple[tile.LoadOp, int], SSAValue] = {}

        def tile_of(load: tile.LoadOp, row_tile: int) -> SSAValue:
            """Row tile `row_tile` of a loaded input, loaded here the first time it is read."""
            if (load, row_tile) not in loaded:
                ops: list[Operation] = []
                indices = _at_row(ops, tuple(load.indices), row_tile)
                ops.append(amx.TileLoadOp(load.memref, indices, INPUT_TILE))
                body.add_ops(ops)
                loaded[(load, row_tile)] = ops[-1].results[0]
            return loaded[(load, row_tile)]

        for inner in list(old.ops):
            if inner in p.loads:
                continue
            if isinstance(inner, tile.MmaOp):
                if inner is p.mmas[-1]:  # every operand is addressable here: all the products, row tile by row tile
                    for i in range(max(_row_tiles(mma.acc) for mma in p.mmas)):
                        for mma in p.mmas:
                            if i < len(accumulators[mma]):
                                rows, weights = tile_of(mma.lhs.owner, i), tile_of(mma.rhs.owner, 0)  # type: ignore[arg-type]
                                product = amx.TileMulFOp(rows, weights, accumulators[mma][i])
                                body.add_op(product)
                                accumulators[mma][i] = product.res
                continue
            if isinstance(inner, scf.YieldOp):
                body.add_op(scf.YieldOp(*(value for mma in p.mmas for value in accumulators[mma])))
                continue
            inner.detach()
            body.add_op(inner)
        loop = scf.ForOp(op.lb, op.ub, op.step, zeros, Region(body))
        rewriter.insert_op([*zeros, loop], InsertPoint.before(op))
        results = iter(loop.results)
        for mma, stores in zip(p.mmas, p.stores, strict=True):
            tiles = [next(results) for _ in range(_row_tiles(mma.acc))]
            for store in stores:
                ops: list[Operation] = []
                for i, value in enumerate(tiles):
                    indices = _at_row(ops, tuple(store.indices), i)
                    ops.append(amx.TileStoreOp(store.memref, indices, value))
                rewriter.insert_op(ops, InsertPoint.before(store))
                rewriter.erase_op(store)
        rewriter.erase_op(op, safe_erase=False)
