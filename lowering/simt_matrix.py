"""The ops of convert-tessera-tile-to-simt that move elements between lanes: a matrix tile's reduction along
an axis, a broadcast along a new axis, and `mma`. Each stages its operands through the workgroup's shared
memory (a workgroup attribution per op, as the tile's shape: the kernel's LDS / static shared bytes grow by
them): a barrier, every lane stores the elements it owns, a barrier, then each lane reads what its own
elements need. The first barrier keeps a loop's next stores from overwriting what another lane still reads.

    reduce(x[M, N], axis 1)[m] = the combiner over x_s[m, 0..N-1], read by the lanes holding element m
    broadcast(v[R], axis a)[i0, i1] = v_s[i_(1-a)]
    mma(a[M, K], b[K, N], c)[m, n] = c[m, n] + sum over k ascending of a_s[m, k] b_s[k, n]   (bf16 widened;
                                     b_s[n, k] where b is given transposed)

These are the generic forms every GPU can run (CUDA cores, VALU); their loops walk the reduced dimension with
one scf.for. An mma whose accumulator is in a matrix instruction's layout runs on it instead: CDNA's MFMA
(Fragments, its operands read from the staged tiles here), Hopper's WGMMA (Warpgroups: lowering/nvvm/
warpgroup_mma.py stages the operands in the swizzled layout WGMMA reads).
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects import arith, gpu, memref, scf, vector
from xdsl.dialects.builtin import (
    BFloat16Type,
    IndexType,
    MemRefType,
    UnrealizedConversionCastOp,
    VectorType,
    f32,
    i16,
    i32,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, op_type_rewrite_pattern

from tessera.arch import mma_rows_padded, staged_shape
from tessera.dialects import tile
from tessera.dialects.rocdl import MFMA_OPS
from tessera.dialects.schedule import element_bytes
from tessera.dialects.upstream import FromElementsOp, ShuffleOp, WorkgroupFuncOp
from tessera.lowering.simt_lanes import (
    Blocked,
    Fragments,
    Layout,
    SimtPattern,
    Spread,
    WarpgroupRows,
    Warpgroups,
    combiner,
    function_of,
    lane_of,
    packed,
    slot_values,
)
from tessera.lowering.tile_elements import Emitter, TileLoweringError, lowered_type, storage

INDEX = IndexType()


def _staged(emit: Emitter, anchor: tile.MmaOp | tile.ReduceOp | tile.BroadcastOp, value: SSAValue,
            type_: Attribute, layout: Layout, padded: bool = False) -> SSAValue:  # fmt: skip
    """A workgroup buffer shaped like the tile `value` (of `type_`, elements where `layout` puts them), holding it once
    every lane has stored the elements it owns (the caller emits the barrier that ends the stores). A
    `padded` buffer is arch.staged_shape, for lanes that read one column down different rows."""
    function = function_of(anchor)
    assert isinstance(function, WorkgroupFuncOp)
    element = storage(tile.element_of(type_))
    shape = staged_shape(layout.shape, element_bytes(tile.element_of(type_))) if padded else layout.shape
    buffer = function.add_workgroup_buffer(MemRefType(element, shape))
    buffer.name_hint = f"lds_{anchor.name.removeprefix('tessera.tile.')}{function.attributions() - 1}"
    lane = lane_of(anchor)
    places = layout.coordinates(emit, lane)
    for slot, item in enumerate(slot_values(emit, value, layout.slots, element)):
        owner = layout.owner(emit, lane, slot)
        store = memref.StoreOp.get(item, buffer, places[slot])
        if owner is None:
            emit(store)
        else:
            emit(scf.IfOp(owner, [], [Block([store, scf.YieldOp()])]))
    return buffer


# The back end may fuse an mma's product and sum into one multiply-add (FFMA, v_fma_f32): one rounding where it
# does, two where not, both within the bounds the tests derive.
CONTRACT = arith.FastMathFlagsAttr([arith.FastMathFlag.ALLOW_CONTRACT])


def fma(emit: Emitter, a: SSAValue, b: SSAValue, total: SSAValue) -> SSAValue:
    """total + a b, contractible."""
    return emit(arith.AddfOp(total, emit(arith.MulfOp(a, b, CONTRACT)), CONTRACT))


Step = Callable[[Emitter, SSAValue, list[SSAValue]], list[SSAValue]]


def _fold(emit: Emitter, extent: int, first: list[SSAValue], step: Step) -> list[SSAValue]:
    """scf.for over [0, extent) carrying `first`; step(body_emitter, i, carried) gives the next values."""
    body = Block(arg_types=[INDEX, *(value.type for value in first)])
    inner = emit.at_end_of(body)
    following = step(inner, body.args[0], list(body.args[1:]))
    body.add_op(scf.YieldOp(*following))
    loop = scf.ForOp(emit.constant(0, INDEX), emit.constant(extent, INDEX), emit.constant(1, INDEX), first, body)
    emit(loop)
    return list(loop.results)


class LowerMatrixReduce(SimtPattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.ReduceOp, rewriter: PatternRewriter) -> None:
        (input_type,) = self.before.operand_types(op)
        assert isinstance(input_type, tile.TileType)
        shape = input_type.get_shape()
        if len(shape) != 2:
            return
        emit, axis = Emitter(rewriter, op), int(op.axis.value.data)
        matrix, rows = self.before.operand_layout(op, 0), self.before.layout(op.result)
        if isinstance(matrix, Warpgroups) and isinstance(rows, WarpgroupRows):
            rewriter.replace_matched_op([], [_reduce_rows(emit, op, matrix, rows)])
            return
        emit(gpu.BarrierOp())
        buffer = _staged(emit, op, op.input, input_type, matrix)
        emit(gpu.BarrierOp())
        spread, lane = Spread.of(op.result.type, self.lanes), lane_of(op)
        positions = [spread.element(emit, lane, slot) for slot in range(spread.slots)]
        element = lowered_type(tile.element_of(op.result.type), 1)
        combine = combiner(op)

        def read(e: Emitter, position: SSAValue, along: SSAValue) -> SSAValue:
            indices = [along, position] if axis == 0 else [position, along]
            return e(memref.LoadOp.get(buffer, indices))

        zero = emit.constant(0, INDEX)
        first = [read(emit, position, zero) for position in positions]
        assert all(value.type == element for value in first)

        def step(e: Emitter, i: SSAValue, carried: list[SSAValue]) -> list[SSAValue]:
            along = e(arith.AddiOp(i, e.constant(1, INDEX)))
            return [e(combine(value, read(e, p, along))) for value, p in zip(carried, positions, strict=True)]

        totals = _fold(emit, shape[axis] - 1, first, step) if shape[axis] > 1 else first
        rewriter.replace_matched_op([], [packed(emit, totals)])


class LowerBroadcast(SimtPattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.BroadcastOp, rewriter: PatternRewriter) -> None:
        (input_type,) = self.before.operand_types(op)
        result_type = op.result.type
        assert isinstance(input_type, tile.TileType) and isinstance(result_type, tile.TileType)
        if len(result_type.get_shape()) != 2:
            raise TileLoweringError(f"{op.name}: the SIMT lowering broadcasts rank-1 tiles into matrix tiles")
        emit, axis = Emitter(rewriter, op), int(op.axis.value.data)
        layout, source = self.before.layout(op.result), self.before.operand_layout(op, 0)
        if isinstance(self.before.operands(op)[0].owner, tile.IotaOp):  # positions: the lanes' own coordinates
            element = storage(tile.element_of(result_type))
            places = layout.coordinates(emit, lane_of(op))
            values = [emit(arith.IndexCastOp(place[1 - axis], element)) for place in places]
            rewriter.replace_matched_op([], [packed(emit, values)])
            return
        if isinstance(source, WarpgroupRows) and isinstance(layout, Warpgroups):
            rewriter.replace_matched_op([], [_broadcast_rows(emit, op, source, layout)])
            return
        emit(gpu.BarrierOp())
        buffer = _staged(emit, op, op.input, input_type, source)
        emit(gpu.BarrierOp())
        read: dict[SSAValue, SSAValue] = {}  # one read per position along the input (a row's slots share it)
        values = []
        for place in layout.coordinates(emit, lane_of(op)):
            if place[1 - axis] not in read:
                read[place[1 - axis]] = emit(memref.LoadOp.get(buffer, [place[1 - axis]]))
            values.append(read[place[1 - axis]])
        rewriter.replace_matched_op([], [packed(emit, values)])


def _quad_shuffle(emit: Emitter, value: SSAValue, offset: int) -> SSAValue:
    """The value of the lane `offset` away (xor) within its group of 4 (the threads of a WGMMA row pair)."""
    return emit(ShuffleOp(value, emit.constant(offset, i32), emit.constant(32, i32), "xor"))


def _reduce_rows(emit: Emitter, op: tile.ReduceOp, matrix: Warpgroups, rows: WarpgroupRows) -> SSAValue:
    """A Warpgroups tile reduced along its rows into WarpgroupRows: each thread combines its elements of row r
    and of row r + 8, the 4 threads sharing them exchange partial results (xor 1, xor 2), and each keeps its
    slot's row."""
    element = storage(tile.element_of(op.result.type))
    combine = combiner(op)
    values = slot_values(emit, op.input, matrix.slots, element)
    totals = []
    for half in (0, 8):
        mine = [value for value, step in zip(values, matrix.steps(), strict=True) if step[0] == half]
        total = mine[0]
        for value in mine[1:]:
            total = emit(combine(total, value))
        for offset in (1, 2):
            total = emit(combine(total, _quad_shuffle(emit, total, offset)))
        totals.append(total)
    return emit(arith.SelectOp(rows.holds_first_row(emit, lane_of(op)), totals[0], totals[1]))


def _broadcast_rows(emit: Emitter, op: tile.BroadcastOp, rows: WarpgroupRows, matrix: Warpgroups) -> SSAValue:
    """WarpgroupRows broadcast along the rows of a Warpgroups tile: a thread holds one of its two rows' values
    and takes the other from the lane 2 away (xor 2) in its group of 4."""
    mine = op.input
    if isinstance(mine.type, tile.TileType):  # a loop's result keeps its tile type until LowerTileTypes
        mine = emit(UnrealizedConversionCastOp.get([mine], [storage(tile.element_of(mine.type))]))
    other = _quad_shuffle(emit, mine, 2)
    first = rows.holds_first_row(emit, lane_of(op))
    row, row_8 = emit(arith.SelectOp(first, mine, other)), emit(arith.SelectOp(first, other, mine))
    return packed(emit, [row if step[0] == 0 else row_8 for step in matrix.steps()])


class LowerMma(SimtPattern):
    """Both operands staged, each row of a (and of b given transposed) padded to a conflict-free length; then
    per k, in order, each lane's accumulators gain a[m, k] b[k, n]: a Blocked accumulator reads its rows' a
    and its columns' b once per k, a Spread one reads both per element."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.MmaOp, rewriter: PatternRewriter) -> None:
        lhs_type, rhs_type, acc_type = self.before.operand_types(op)
        assert isinstance(lhs_type, tile.TileType) and isinstance(acc_type, tile.TileType)
        layout = self.before.operand_layout(op, 2)
        if isinstance(layout, Warpgroups):  # Hopper's WGMMA, the lanes staging its operands
            from tessera.lowering.nvvm.warpgroup_mma import lower_staged_mma

            rewriter.replace_matched_op([], [lower_staged_mma(rewriter, op, self.before, layout)])
            return
        emit = Emitter(rewriter, op)
        transposed = op.rhs_transposed is not None  # b staged as given: [N, K]
        in_place = [self.before.in_place.get((op, index)) for index in (0, 1)]
        if None in in_place:
            emit(gpu.BarrierOp())
        a, b = (
            _staged(emit, op, operand, type_, self.before.operand_layout(op, index), padded)
            if alloc is None
            else self.before.buffers[alloc]
            for index, (operand, type_, alloc, padded) in enumerate(
                zip((op.lhs, op.rhs), (lhs_type, rhs_type), in_place, mma_rows_padded(transposed), strict=True)
            )
        )
        if None in in_place:
            emit(gpu.BarrierOp())
        lane = lane_of(op)
        element = storage(acc_type.element_type)
        widen = isinstance(lhs_type.element_type, BFloat16Type)

        def operand(e: Emitter, buffer: SSAValue, indices: list[SSAValue]) -> SSAValue:
            value = e(memref.LoadOp.get(buffer, indices))
            return e.widen_bf16(value) if widen else value

        def b_at(e: Emitter, n: SSAValue, k: SSAValue) -> SSAValue:
            return operand(e, b, [n, k] if transposed else [k, n])

        loads = [self.before.operands(op)[index].owner for index in (0, 1) if in_place[index] is not None]
        if isinstance(layout, Fragments):
            sums = _matrix_instruction(emit, layout, lane, a, b, transposed, lhs_type.get_shape()[1], op.acc)
            _replace(rewriter, packed(emit, sums), loads)
            return
        if isinstance(layout, Blocked):
            rows, cols = layout.rows(emit, lane), layout.cols(emit, lane)
            places = [(i, j) for i in range(len(rows)) for j in range(len(cols))]

            def step(e: Emitter, k: SSAValue, carried: list[SSAValue]) -> list[SSAValue]:
                a_k = [operand(e, a, [row, k]) for row in rows]
                b_k = [b_at(e, col, k) for col in cols]
                return [fma(e, a_k[i], b_k[j], total) for total, (i, j) in zip(carried, places, strict=True)]

        else:
            coordinates = layout.coordinates(emit, lane)

            def step(e: Emitter, k: SSAValue, carried: list[SSAValue]) -> list[SSAValue]:
                return [
                    fma(e, operand(e, a, [m, k]), b_at(e, n, k), total)
                    for total, (m, n) in zip(carried, coordinates, strict=True)
                ]

        first = slot_values(emit, op.acc, layout.slots, element)
        sums = _fold(emit, lhs_type.get_shape()[1], first, step)
        _replace(rewriter, packed(emit, sums), loads)


def _replace(rewriter: PatternRewriter, result: SSAValue, loads: list[Operation | Block]) -> None:
    """The mma's result, and the loads it read in place erased (LowerLoad left them for it)."""
    rewriter.replace_matched_op([], [result])
    for load in loads:
        assert isinstance(load, tile.LoadOp)
        rewriter.erase_op(load)


def _matrix_instruction(emit: Emitter, layout: Fragments, lane: SSAValue, a: SSAValue, b: SSAValue,
                        transposed: bool, depth: int, acc: SSAValue) -> list[SSAValue]:  # fmt: skip
    """The accumulator's blocks through the wave's matrix instruction, its K steps in order: per step, each
    block row's A fragment and each block column's B fragment read from the staged tiles (arch.WaveFragments:
    lane group q + c reads k_per_lane consecutive k at k_per_lane q of row c; a vector load where that is
    several bf16), one instruction per block. Returns the lane's slots."""
    instruction, fragments = layout.instruction, layout.fragments
    op_type = MFMA_OPS[instruction.name]
    per_lane, rows, cols = fragments.acc_per_lane, *layout.blocks
    quad, column = layout.lane_position(emit, lane)
    first_k = emit(arith.MuliOp(quad, emit.constant(fragments.k_per_lane, INDEX)))
    zero = emit.constant(0, i32)

    def along_k(buffer: SSAValue, row: SSAValue, k: SSAValue) -> SSAValue:
        """k_per_lane elements of a row from k (a [rows, K] tile: a's, or b's given transposed)."""
        if fragments.k_per_lane == 1:
            return emit(memref.LoadOp.get(buffer, [row, k]))
        return emit(vector.LoadOp(buffer, [row, k], VectorType(i16, [fragments.k_per_lane])))

    def down_k(buffer: SSAValue, k: SSAValue, col: SSAValue) -> SSAValue:
        """k_per_lane elements of a column from k (b's [K, N] tile)."""
        values = [emit(memref.LoadOp.get(buffer, [_plus(emit, k, i), col])) for i in range(fragments.k_per_lane)]
        return values[0] if len(values) == 1 else emit(FromElementsOp(values))

    slots = slot_values(emit, acc, layout.slots, f32)
    accs = [emit(FromElementsOp(slots[block * per_lane : (block + 1) * per_lane])) for block in range(rows * cols)]
    for k0 in range(0, depth, instruction.k):
        k = _plus(emit, first_k, k0)
        a_k = [along_k(a, _plus(emit, column, bm * instruction.m), k) for bm in range(rows)]
        b_k = [
            along_k(b, _plus(emit, column, bn * instruction.n), k) if transposed
            else down_k(b, k, _plus(emit, column, bn * instruction.n))
            for bn in range(cols)
        ]  # fmt: skip
        accs = [emit(op_type(a_k[block // cols], b_k[block % cols], accs[block], zero)) for block in range(rows * cols)]
    return [emit(vector.ExtractOp(value, [i], f32)) for value in accs for i in range(per_lane)]


def _plus(emit: Emitter, value: SSAValue, offset: int) -> SSAValue:
    return value if offset == 0 else emit(arith.AddiOp(value, emit.constant(offset, INDEX)))


MATRIX_PATTERNS = (LowerMatrixReduce, LowerBroadcast, LowerMma)
