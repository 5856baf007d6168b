"""`tessera.tile.mma` on Hopper's WGMMA where the workgroup's own lanes stage the operands (no copy engine):
the form of an mma whose accumulator has the Warpgroups layout without a pipelined loop around it
(tile.warpgroup_staged: bf16 operands, a workgroup of one warpgroup per 64 rows — GPU attention under bf16).
simt_matrix.LowerMma hands such an mma here.

    operand (each): barrier                       (earlier WGMMAs have read the previous contents)
                    every lane stores the elements it holds, K-major ([M, K] for a, b as [N, K] whichever
                    way it is given) with the 128-byte swizzle, at the operand's offset in the dynamic
                    shared memory (tile.warpgroup_staging)
                    fence.proxy.async.shared::cta; barrier   (the generic-proxy stores made visible to WGMMA)
    mma:            wgmma.fence; per K step of 16, per N chunk: wgmma.mma_async m64nNk16 through descriptors
                    (warpgroup g reads a's rows 64 g ..); commit; wait 0 — the accumulator's registers are
                    the Warpgroups slots.

An operand defined outside the loops around the mma (attention's queries) is staged where it is defined,
once, not per iteration. The staged layout is wgmma.py's: row r, element k of a K atom (64 elements) at
(r / 8) 1024 + (r mod 8) 128 + 2 k, 16-byte chunk XOR (r mod 8); a K wider than 64 is several atoms one
after another (arch.warpgroup_staged_bytes), so a K step advances the descriptor by 32 bytes within an atom.
An accumulator that is the zero splat is not loaded: the first K step has scale-d zero.
"""

from __future__ import annotations

from xdsl.dialects import arith, builtin, gpu, llvm, scf
from xdsl.dialects.builtin import DenseArrayBase, IndexType, i16, i32, i64
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter

from tessera.arch import SWIZZLE_ROW_BYTES, SWIZZLE_ROW_ELEMENTS, WARPGROUP
from tessera.dialects import nvvm, tile
from tessera.dialects.upstream import FromElementsOp
from tessera.lowering.nvvm.pipeline import DYNAMIC_SHARED
from tessera.lowering.nvvm.wgmma import SHARED, WGMMA_K, advance, declare_dynamic_shared, descriptor_of, shared_at
from tessera.lowering.simt_lanes import Before, Layout, Runs, Warpgroups, function_of, lane_of, packed, slot_values
from tessera.lowering.tile_elements import Emitter

INDEX = IndexType()
SWIZZLE_PERIOD_BYTES = 8 * SWIZZLE_ROW_BYTES  # 8 rows: the 128-byte swizzle's pattern repeats


def lower_staged_mma(rewriter: PatternRewriter, op: tile.MmaOp, before: Before, layout: Warpgroups) -> SSAValue:
    """The mma's result (its lane's slots) after staging both operands and the WGMMAs (the module docstring)."""
    declare_dynamic_shared(function_of(op))
    lane = lane_of(op)
    lhs_type, rhs_type, _ = before.operand_types(op)
    assert isinstance(lhs_type, tile.TileType) and isinstance(rhs_type, tile.TileType)
    rows, depth = lhs_type.get_shape()
    cols = layout.shape[1]
    transposed = op.rhs_transposed is not None
    for index, extent in ((0, rows), (1, cols)):
        value = op.operands[index]
        _stage(
            _emitter_after_definition(rewriter, op, value), value, before.operand_layout(op, index), lane,
            before.warpgroup_offsets[op, index], extent, swap=index == 1 and not transposed,
        )  # fmt: skip
    emit = Emitter(rewriter, op)
    sums = _multiply(emit, op, before, layout, lane, rows, depth)
    return packed(emit, sums)


def _emitter_after_definition(rewriter: PatternRewriter, op: tile.MmaOp, value: SSAValue) -> Emitter:
    """Where an operand is staged: right after its definition (so that one defined outside a loop around the
    mma is staged once), at the start of its block for a block argument."""
    if isinstance(value, BlockArgument):
        first = value.block.first_op
        assert first is not None
        return Emitter(rewriter, first)
    definition = value.owner
    assert isinstance(definition, Operation)
    following = definition.next_op
    assert following is not None, "an operand's definition is followed by its block's terminator at least"
    return Emitter(rewriter, following)


def swizzled_offset(row: int, k: int, rows: int) -> int:
    """The byte offset of element (row, k) of a staged [rows, K] operand (the module docstring's layout)."""
    atom, k_in_atom = divmod(k, SWIZZLE_ROW_ELEMENTS)
    offset = atom * rows * SWIZZLE_ROW_BYTES + (row // 8) * SWIZZLE_PERIOD_BYTES + (row % 8) * SWIZZLE_ROW_BYTES
    offset += 2 * k_in_atom
    return offset ^ (((offset >> 7) & 7) << 4)


def _stage(emit: Emitter, value: SSAValue, layout: Layout, lane: SSAValue, base: int, rows: int, swap: bool) -> None:
    """Every lane stores its elements of `value` (a [rows, K] operand; [K, rows] where `swap`) into the
    swizzled layout at byte `base` of the dynamic shared memory; fenced for the async proxy, between barriers."""
    smem = emit(llvm.AddressOfOp(DYNAMIC_SHARED, SHARED))
    emit(gpu.BarrierOp())
    places = layout.coordinates(emit, lane)
    items = slot_values(emit, value, layout.slots, i16)
    # Runs along K stay in one 16-byte chunk of a row (the swizzle moves whole chunks): one store each. A
    # WGMMA accumulator (the probabilities of attention) holds pairs of adjacent columns.
    width = 1
    if not swap and isinstance(layout, Runs):
        width = layout.width
    elif not swap and isinstance(layout, Warpgroups):
        width = 2
    for first in range(0, layout.slots, width):
        row, k = places[first] if not swap else reversed(places[first])
        pointer = shared_at(emit, smem, _swizzled(emit, base, row, k, rows))
        run = items[first] if width == 1 else emit(FromElementsOp(items[first : first + width]))
        owner = layout.owner(emit, lane, first)
        if owner is None:
            emit(llvm.StoreOp(run, pointer, alignment=2 * width))
        else:
            guarded = emit.at_end_of(Block())
            guarded(llvm.StoreOp(run, pointer, alignment=2 * width))
            guarded(scf.YieldOp())
            emit(scf.IfOp(owner, [], [guarded.block]))
    emit(nvvm.FenceProxyOp())
    emit(gpu.BarrierOp())


def _swizzled(emit: Emitter, base: int, row: SSAValue, k: SSAValue, rows: int) -> SSAValue:
    """swizzled_offset(row, k, rows) + base as an i32 (base is 1024-aligned: the swizzle of the sum is the
    sum's)."""

    def index_op(kind: type[arith.DivUIOp | arith.RemUIOp | arith.MuliOp], value: SSAValue, by: int) -> SSAValue:
        return emit(kind(value, emit.constant(by, INDEX)))

    atom, k_in_atom = index_op(arith.DivUIOp, k, SWIZZLE_ROW_ELEMENTS), index_op(arith.RemUIOp, k, SWIZZLE_ROW_ELEMENTS)
    terms = [
        index_op(arith.MuliOp, atom, rows * SWIZZLE_ROW_BYTES),
        index_op(arith.MuliOp, index_op(arith.DivUIOp, row, 8), SWIZZLE_PERIOD_BYTES),
        index_op(arith.MuliOp, index_op(arith.RemUIOp, row, 8), SWIZZLE_ROW_BYTES),
        index_op(arith.MuliOp, k_in_atom, 2),
    ]
    offset = terms[0]
    for term in terms[1:]:
        offset = emit(arith.AddiOp(offset, term))
    offset = emit(arith.IndexCastOp(offset, i32))
    pattern = emit(arith.AndIOp(emit(arith.ShRUIOp(offset, emit.constant(7, i32))), emit.constant(7, i32)))
    swizzled = emit(arith.XOrIOp(offset, emit(arith.ShLIOp(pattern, emit.constant(4, i32)))))
    return swizzled if base == 0 else emit(arith.AddiOp(swizzled, emit.constant(base, i32)))


def _zero_splat(value: SSAValue) -> bool:
    """Whether a tile value (as written) is a splat of +0.0."""
    splat = value.owner
    if not isinstance(splat, tile.SplatOp):
        return False
    constant = splat.scalar.owner
    return (
        isinstance(constant, arith.ConstantOp) and isinstance(constant.value, builtin.FloatAttr)
        and constant.value.value.data == 0.0 and str(constant.value.value.data) == "0.0"
    )  # fmt: skip


def _multiply(emit: Emitter, op: tile.MmaOp, before: Before, layout: Warpgroups, lane: SSAValue, rows: int,
              depth: int) -> list[SSAValue]:  # fmt: skip
    """The WGMMAs of the staged operands into the accumulator; the lane's slots of the result."""
    smem = emit(llvm.AddressOfOp(DYNAMIC_SHARED, SHARED))
    base = emit(llvm.PtrToIntOp(smem, i32))
    warpgroup = emit(arith.IndexCastOp(emit(arith.DivUIOp(lane, emit.constant(WARPGROUP, INDEX))), i32))
    own_rows = emit(arith.MuliOp(warpgroup, emit.constant(layout.instruction.m * SWIZZLE_ROW_BYTES, i32)))
    a_start = emit(
        arith.AddiOp(emit(arith.AddiOp(base, emit.constant(before.warpgroup_offsets[op, 0], i32))), own_rows)
    )
    a = descriptor_of(emit, a_start)
    b = descriptor_of(emit, emit(arith.AddiOp(base, emit.constant(before.warpgroup_offsets[op, 1], i32))))
    n, registers = layout.instruction.n, layout.registers
    chunks = layout.shape[1] // n
    struct = llvm.LLVMStructType.from_type_list([builtin.f32] * registers)
    zero = _zero_splat(before.operands(op)[2])
    if zero:
        accumulators = [emit(llvm.UndefOp(struct))] * chunks
    else:
        slots = slot_values(emit, op.acc, layout.slots, builtin.f32)
        accumulators = []
        for chunk in range(chunks):
            built = emit(llvm.UndefOp(struct))
            for register in range(registers):
                position = DenseArrayBase.from_list(i64, [register])
                built = emit(llvm.InsertValueOp(position, built, slots[chunk * registers + register]))
            accumulators.append(built)
    emit(nvvm.WgmmaFenceAlignedOp())
    cols = layout.shape[1]
    for step in range(depth // WGMMA_K):
        atom, k_in_atom = divmod(step * WGMMA_K, SWIZZLE_ROW_ELEMENTS)
        within = 2 * k_in_atom
        a_step = advance(emit, a, (atom * rows * SWIZZLE_ROW_BYTES + within) >> 4)
        for chunk in range(chunks):
            b_step = advance(emit, b, (atom * cols * SWIZZLE_ROW_BYTES + chunk * n * SWIZZLE_ROW_BYTES + within) >> 4)
            scale_d = "zero" if zero and step == 0 else "one"
            shape = (layout.instruction.m, n, WGMMA_K)
            accumulators[chunk] = emit(
                nvvm.WgmmaMmaAsyncOp(accumulators[chunk], a_step, b_step, shape, scale_d=scale_d)
            )
    emit(nvvm.WgmmaCommitGroupSyncAlignedOp())
    emit(nvvm.WgmmaWaitGroupSyncAlignedOp(0))
    return [
        emit(llvm.ExtractValueOp(DenseArrayBase.from_list(i64, [register]), accumulator, builtin.f32))
        for accumulator in accumulators
        for register in range(registers)
    ]
