"""`tessera.tile.mma` on Hopper's WGMMA where the workgroup's own lanes stage the operands (no copy engine):
the form of an mma whose accumulator has the Warpgroups layout without a pipelined loop around it
(tile.warpgroup_staged: bf16 operands, a workgroup of one warpgroup per 64 rows — GPU attention and the
chunked SSD scan under bf16).
simt_matrix.LowerMma hands such an mma here.

    operand (each): barrier                       (earlier WGMMAs have read the previous contents)
                    every lane stores the elements it holds where its Placement puts them, at the
                    operand's offset in the dynamic shared memory (tile.warpgroup_staging), 128-byte swizzled
                    fence.proxy.async.shared::cta; barrier   (the generic-proxy stores made visible to WGMMA)
    mma:            wgmma.fence; per K step of 16, per N chunk: wgmma.mma_async m64nNk16 through descriptors
                    (warpgroup g reads a's rows 64 g ..); commit; wait 0 — the accumulator's registers are
                    the Warpgroups slots.

Placements (PTX ISA, "Shared Memory Matrix Layout", 128-byte swizzle mode): a [M, K] and b given [N, K] are
K-major — rows of 64 K elements (128 bytes), 8 rows to a 1024-byte swizzle period, a K wider than 64 in
several such atoms one after another (a K step moves the descriptor 32 bytes within an atom). b given [K, N]
(attention's V) is staged as it is where N is whole 64-element rows (arch.mn_major_staged): MN-major, K rows
of 64 N elements, its 64-column atoms one after another (the descriptor's leading byte offset), read with
MLIR's layoutB = row (PTX imm-trans-b = 1; a K step moves it 16 rows, 2048 bytes); else it is stored
transposed, K-major. Runs of 8 bf16 along the contiguous axis (16 bytes: the swizzle moves whole 16-byte
chunks) and an accumulator's column pairs are stored at once.

An operand defined outside the loops around the mma (attention's queries) is staged where it is defined,
once, not per iteration. An accumulator that is the zero splat is not loaded: the first K step has scale-d
zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import arith, builtin, gpu, llvm, scf
from xdsl.dialects.builtin import DenseArrayBase, IndexType, i16, i32, i64
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter

from tessera.arch import SWIZZLE_ROW_BYTES, SWIZZLE_ROW_ELEMENTS, WARPGROUP, mn_major_staged
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
    lhs_type, _, _ = before.operand_types(op)
    assert isinstance(lhs_type, tile.TileType)
    rows, depth = lhs_type.get_shape()
    offsets = (before.warpgroup_offsets[op, 0], before.warpgroup_offsets[op, 1])
    placements = operand_placements(op.rhs_transposed is not None, offsets, rows, layout.shape[1], depth)
    for index, placement in enumerate(placements):
        value = op.operands[index]
        _stage(_emitter_after_definition(rewriter, op, value), value, before.operand_layout(op, index), lane, placement)
    emit = Emitter(rewriter, op)
    sums = _multiply(emit, op, before, layout, lane, placements, depth)
    return packed(emit, sums)


@dataclass(frozen=True)
class Placement:
    """Where a staged operand's elements lie from byte `base` (1024-aligned) of the dynamic shared memory:
    element (s, c) — s along the strided axis, c along the contiguous one — at (c / 64) atom_bytes +
    (s / 8) 1024 + (s mod 8) 128 + 2 (c mod 64), 128-byte swizzled. K-major (a [M, K]; b [N, K]): c is k and
    an atom a [rows, 64] K slice; MN-major (b given [K, N] with N whole 64-element rows, read through a
    transposed descriptor): c is n and an atom a [K, 64] N slice. `strided` is the axis of the tile as given
    that s runs along (1 for a b given [K, N] but staged K-major: transposed as it is stored)."""

    base: int
    atom_bytes: int
    strided: int
    mn_major: bool

    def offset(self, s: int, c: int) -> int:
        atom, within = divmod(c, SWIZZLE_ROW_ELEMENTS)
        offset = atom * self.atom_bytes + (s // 8) * SWIZZLE_PERIOD_BYTES + (s % 8) * SWIZZLE_ROW_BYTES + 2 * within
        return self.base + (offset ^ (((offset >> 7) & 7) << 4))


def operand_placements(rhs_transposed: bool, offsets: tuple[int, int], rows: int, cols: int,
                       depth: int) -> tuple[Placement, Placement]:  # fmt: skip
    """The placements of a's [rows, depth] and b's (given [cols, depth] where `rhs_transposed`, else
    [depth, cols]) staged operands, at the byte offsets tile.warpgroup_staging gave them."""
    a = Placement(offsets[0], rows * SWIZZLE_ROW_BYTES, 0, False)
    if rhs_transposed:
        return a, Placement(offsets[1], cols * SWIZZLE_ROW_BYTES, 0, False)
    if mn_major_staged(cols):
        return a, Placement(offsets[1], depth * SWIZZLE_ROW_BYTES, 0, True)
    return a, Placement(offsets[1], cols * SWIZZLE_ROW_BYTES, 1, False)


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


def _stage(emit: Emitter, value: SSAValue, layout: Layout, lane: SSAValue, placement: Placement) -> None:
    """Every lane stores its elements of `value` where `placement` puts them; fenced for the async proxy,
    between barriers."""
    smem = emit(llvm.AddressOfOp(DYNAMIC_SHARED, SHARED))
    emit(gpu.BarrierOp())
    places = layout.coordinates(emit, lane)
    items = slot_values(emit, value, layout.slots, i16)
    # Runs along the contiguous axis stay in one 16-byte chunk (the swizzle moves whole chunks): one store
    # each. A WGMMA accumulator (the probabilities of attention) holds pairs of adjacent columns.
    width = 1
    if placement.strided == 0 and isinstance(layout, Runs):
        width = layout.width
    elif placement.strided == 0 and isinstance(layout, Warpgroups):
        width = 2
    for first in range(0, layout.slots, width):
        s, c = places[first] if placement.strided == 0 else reversed(places[first])
        pointer = shared_at(emit, smem, _offset(emit, placement, s, c))
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


def _offset(emit: Emitter, placement: Placement, s: SSAValue, c: SSAValue) -> SSAValue:
    """placement.offset(s, c) as an i32 (the base is 1024-aligned: the swizzle of the sum is the sum's)."""

    def index_op(kind: type[arith.DivUIOp | arith.RemUIOp | arith.MuliOp], value: SSAValue, by: int) -> SSAValue:
        return emit(kind(value, emit.constant(by, INDEX)))

    atom, within = index_op(arith.DivUIOp, c, SWIZZLE_ROW_ELEMENTS), index_op(arith.RemUIOp, c, SWIZZLE_ROW_ELEMENTS)
    terms = [
        index_op(arith.MuliOp, atom, placement.atom_bytes),
        index_op(arith.MuliOp, index_op(arith.DivUIOp, s, 8), SWIZZLE_PERIOD_BYTES),
        index_op(arith.MuliOp, index_op(arith.RemUIOp, s, 8), SWIZZLE_ROW_BYTES),
        index_op(arith.MuliOp, within, 2),
    ]
    offset = terms[0]
    for term in terms[1:]:
        offset = emit(arith.AddiOp(offset, term))
    offset = emit(arith.IndexCastOp(offset, i32))
    pattern = emit(arith.AndIOp(emit(arith.ShRUIOp(offset, emit.constant(7, i32))), emit.constant(7, i32)))
    swizzled = emit(arith.XOrIOp(offset, emit(arith.ShLIOp(pattern, emit.constant(4, i32)))))
    return swizzled if placement.base == 0 else emit(arith.AddiOp(swizzled, emit.constant(placement.base, i32)))


def _k_major_step(placement: Placement, step: int) -> int:
    """Bytes from a K-major operand's start to K step `step`: whole atoms, then 32 bytes a step within one."""
    atom, within = divmod(step * WGMMA_K, SWIZZLE_ROW_ELEMENTS)
    return atom * placement.atom_bytes + 2 * within


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


def _multiply(emit: Emitter, op: tile.MmaOp, before: Before, layout: Warpgroups, lane: SSAValue,
              placements: tuple[Placement, Placement], depth: int) -> list[SSAValue]:  # fmt: skip
    """The WGMMAs of the staged operands into the accumulator; the lane's slots of the result."""
    a_placement, b_placement = placements
    smem = emit(llvm.AddressOfOp(DYNAMIC_SHARED, SHARED))
    base = emit(llvm.PtrToIntOp(smem, i32))
    warpgroup = emit(arith.IndexCastOp(emit(arith.DivUIOp(lane, emit.constant(WARPGROUP, INDEX))), i32))
    own_rows = emit(arith.MuliOp(warpgroup, emit.constant(layout.instruction.m * SWIZZLE_ROW_BYTES, i32)))
    a_start = emit(arith.AddiOp(emit(arith.AddiOp(base, emit.constant(a_placement.base, i32))), own_rows))
    a = descriptor_of(emit, a_start)
    # An MN-major b: its 64-column atoms LBO apart (the K rows of one atom), groups of 8 K rows 1024 apart.
    leading = b_placement.atom_bytes if b_placement.mn_major else 16
    b = descriptor_of(emit, emit(arith.AddiOp(base, emit.constant(b_placement.base, i32))), leading)
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
    b_layout = "row" if b_placement.mn_major else "col"  # MLIR's layoutB: row is the transposed (MN-major) B
    for step in range(depth // WGMMA_K):
        a_step = advance(emit, a, _k_major_step(a_placement, step) >> 4)
        for chunk in range(chunks):
            if b_placement.mn_major:  # a K step is 16 rows of 128 bytes; a chunk whole 64-column atoms
                b_bytes = step * WGMMA_K * SWIZZLE_ROW_BYTES
                b_bytes += chunk * (n // SWIZZLE_ROW_ELEMENTS) * b_placement.atom_bytes
            else:
                b_bytes = _k_major_step(b_placement, step) + chunk * n * SWIZZLE_ROW_BYTES
            scale_d = "zero" if zero and step == 0 else "one"
            shape = (layout.instruction.m, n, WGMMA_K)
            b_step = advance(emit, b, b_bytes >> 4)
            accumulators[chunk] = emit(
                nvvm.WgmmaMmaAsyncOp(
                    accumulators[chunk], a_step, b_step, shape, scale_d=scale_d, layouts=("row", b_layout)
                )
            )
    emit(nvvm.WgmmaCommitGroupSyncAlignedOp())
    emit(nvvm.WgmmaWaitGroupSyncAlignedOp(0))
    return [
        emit(llvm.ExtractValueOp(DenseArrayBase.from_list(i64, [register]), accumulator, builtin.f32))
        for accumulator in accumulators
        for register in range(registers)
    ]
