"""convert-tessera-tile-to-x86: dataflow Tile-IR -> upstream func/scf/arith/memref/vector, one `func.func` per
kernel, each program a core runs being one iteration of a loop over its range of the grid.

    kernel(buffers..., scalars...) with program id %t
        -> func.func @kernel(buffers..., scalars..., %begin: index, %end: index)
               scf.for %t = %begin to %end { body }

A tile is one core's vector (lanes = 1; a matrix tile a 2-D vector, its rows 1-D vectors):
`tessera.tile.load` is vector.load, or vector.maskedload with a vector.create_mask of the elements before
`bound`, or — for a tile along other `axes` than the buffer's innermost (a column), or a matrix tile —
a transfer read with that permutation map; stores likewise (a [16, <= 16] tile stored with its axis 0
along the innermost dimension: a shuffle transpose and a vector store per column); a scratch buffer is a
stack buffer of the call (a "global" one allocated on the heap and freed by the program that uses it); a
reduction is one ReductionOp of the vector dialect (floats with reassociation allowed: LLVM then keeps
partial sums in several registers; a float max / min halves its vector first); a scan is log2 shuffle
steps; an iota is a constant vector; an interleave one shuffle; `mma` is a vector FMA per (k, row) with a[m, k] broadcast (with
{amx=true}, first the AMX pattern of lowering/tile_to_amx.py; with {bf16_dot=true}, b in k pairs as
AVX-512 BF16 dot products, LowerMmaBF16Dot); map, splat and convert are the shared
patterns of lowering/tile_elements.py. Scalars are the memref dialect's element loads and stores.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, llvm, memref, scf, vector
from xdsl.dialects.builtin import (
    AffineMapAttr,
    AnyFloat,
    ArrayAttr,
    BFloat16Type,
    BoolAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    IndexType,
    IntegerType,
    MemRefType,
    ModuleOp,
    VectorType,
    f32,
    i1,
    i16,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineExpr, AffineMap
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.traits import IsTerminator

from tessera.dialects import tile, x86vector
from tessera.dialects.tile import TileType
from tessera.dialects.upstream import FromElementsOp
from tessera.lowering.tile_elements import (
    SHARED_PATTERNS,
    Emitter,
    LowerTileTypes,
    TileLoweringError,
    TilePattern,
    lowered_type,
    storage,
)
from tessera.lowering.tile_to_amx import PromoteAccumulatorsToAmx

LANES = 1
TRANSPOSE_BLOCK = 16  # lanes of one 512-bit f32 vector: a transposed store moves blocks of 16 x 16
REASSOCIATE = arith.FastMathFlagsAttr([arith.FastMathFlag.REASSOC, arith.FastMathFlag.ALLOW_CONTRACT])
_FLOAT_COMBINERS = {"add": "add", "max": "maxnumf", "min": "minnumf"}
_INTEGER_COMBINERS = {"add": "add", "max": "maxsi", "min": "minsi"}
# The same combiners on two vectors (a matrix tile's rows combined along axis 0).
Combine = Callable[[SSAValue, SSAValue], Operation]
_FLOAT_ELEMENTWISE: dict[str, Combine] = {"add": arith.AddfOp, "max": arith.MaxnumfOp, "min": arith.MinnumfOp}
_INTEGER_ELEMENTWISE: dict[str, Combine] = {"add": arith.AddiOp, "max": arith.MaxSIOp, "min": arith.MinSIOp}


def _as_storage(emit: Emitter, value: SSAValue, element: Attribute) -> SSAValue:
    """A value read from a buffer of `element` as the target holds it (bf16 as i16 bits)."""
    if not isinstance(element, BFloat16Type):
        return value
    return emit(arith.BitcastOp(value, _same_shape(value.type, storage(element))))


def _as_element(emit: Emitter, value: SSAValue, element: Attribute) -> SSAValue:
    """The inverse of _as_storage, before a store into a buffer of `element` (value: not yet lowered)."""
    if not isinstance(element, BFloat16Type):
        return value
    return emit(arith.BitcastOp(value, _same_shape(lowered_type(value.type, LANES), element)))


def _bound(op: tile.LoadOp | tile.StoreOp) -> SSAValue | None:
    """The access's bound: x86 masks one axis (LowerLoad and LowerStore refuse more)."""
    found = tile.single_bound(op)
    return None if found is None else found[1]


def _bound_axis(op: tile.LoadOp | tile.StoreOp) -> int:
    found = tile.single_bound(op)
    assert found is not None
    return found[0]


def _bound_value(op: tile.LoadOp | tile.StoreOp) -> SSAValue:
    found = tile.single_bound(op)
    assert found is not None
    return found[1]


def _refuse_several_bounds(op: tile.LoadOp | tile.StoreOp) -> None:
    if len(op.bounds) > 1:
        raise TileLoweringError(f"{op.name}: the x86 lowering masks one axis, this access bounds {len(op.bounds)}")


def _same_shape(like: Attribute, element: Attribute) -> Attribute:
    return VectorType(element, like.get_shape()) if isinstance(like, VectorType) else element


def _mask(emit: Emitter, op: tile.LoadOp | tile.StoreOp, lanes_type: VectorType) -> SSAValue:
    """The elements of the access before its bound: vector.create_mask(bound - index along the bounded axis,
    the whole size along the others)."""
    assert _bound(op) is not None
    limited = _bound_axis(op)
    remaining = emit(arith.SubiOp(_bound_value(op), op.indices[tile.access_axes(op)[limited]]))
    sizes: list[SSAValue | Operation] = [emit.constant(size, IndexType()) for size in lanes_type.get_shape()]
    sizes[limited] = remaining
    return emit(vector.CreateMaskOp(sizes, VectorType(i1, lanes_type.get_shape())))


def _transfer_map(op: tile.LoadOp | tile.StoreOp) -> AffineMapAttr | None:
    """The permutation map of a tile that does not span its buffer's innermost elements in order (a column,
    a transposed tile) or that spans several rows (a matrix tile: vector-to-scf unrolls it into row
    accesses), or None for a plain access of one row."""
    axes = tile.access_axes(op)
    rank = len(op.indices)
    if len(axes) == 1 and axes == (rank - 1,):
        return None
    return AffineMapAttr(AffineMap(rank, 0, tuple(AffineExpr.dimension(axis) for axis in axes)))


def _in_bounds(op: tile.LoadOp | tile.StoreOp) -> ArrayAttr[BoolAttr]:
    """Unmasked accesses lie in their buffer (the kernel's contract); masked ones are checked per element."""
    return ArrayAttr([BoolAttr.from_bool(_bound(op) is None)] * len(tile.access_axes(op)))


class LowerLoad(TilePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.LoadOp, rewriter: PatternRewriter) -> None:
        _refuse_several_bounds(op)
        emit = Emitter(rewriter, op)
        buffer_type = op.memref.type
        assert isinstance(buffer_type, MemRefType)
        element = buffer_type.element_type
        lowered = lowered_type(op.result.type, LANES)
        if not isinstance(op.result.type, TileType) or (_bound(op) is None and not isinstance(lowered, VectorType)):
            value = emit(memref.LoadOp.get(op.memref, list(op.indices)))  # a scalar, or a tile of one element
        elif _bound(op) is None and isinstance(lowered, VectorType) and lowered.get_shape()[1:] == (1,):
            rewriter.replace_matched_op([], [_load_column(emit, op, lowered)])
            return
        elif isinstance(element, BFloat16Type) and _bound(op) is not None:
            assert isinstance(lowered, VectorType), f"{op.name}: a masked tile of one element"
            rewriter.replace_matched_op([], [_load_bf16_bounded(emit, op, lowered)])
            return
        else:
            assert isinstance(lowered, VectorType), f"{op.name}: a masked tile of one element"
            loaded = VectorType(element, lowered.get_shape())
            permutation = _transfer_map(op)
            if permutation is not None:  # vector.transfer_read: upstream lowers it by rows, or by elements
                value = emit(_transfer_read(emit, op, loaded, permutation))
            elif _bound(op) is None:
                value = emit(vector.LoadOp(op.memref, list(op.indices), loaded))
            else:
                zeros = emit.constant(0, loaded)
                value = emit(vector.MaskedLoadOp(op.memref, list(op.indices), _mask(emit, op, loaded), zeros))
        rewriter.replace_matched_op([], [_as_storage(emit, value, element)])


def _transfer_read(emit: Emitter, op: tile.LoadOp, loaded: VectorType, permutation: AffineMapAttr) -> Operation:
    """The tile as one transfer read (vector.TransferReadOp): masked past its bound where it has one, zero
    padding."""
    element = loaded.element_type
    if isinstance(element, BFloat16Type):  # unmasked only (_load_bf16_bounded): the padding is never read
        padding = emit(arith.BitcastOp(emit.constant(0, storage(element)), element))
    else:
        padding = emit.constant(0, element)
    mask = None if _bound(op) is None else _mask(emit, op, loaded)
    return vector.TransferReadOp(op.memref, list(op.indices), padding, loaded, _in_bounds(op), permutation, mask)


def _load_bf16_bounded(emit: Emitter, op: tile.LoadOp, lowered: VectorType) -> SSAValue:
    """A bf16 tile loaded up to its bound, as i16 bits: one unmasked load where the whole tile lies before
    the bound, else zeros with its elements before the bound loaded one by one through the buffer's pointer
    (_store_bf16_bounded's mirror: a masked load of bf16 lanes goes through f32 in LLVM's legalisation, a
    __truncsfbf2 libcall on x86 without AVX512-BF16)."""
    shape, limited = lowered.get_shape(), _bound_axis(op)
    whole = _before_bound(emit, op, shape)
    within, edge = Block(), Block()
    inside = emit.at_end_of(within)
    loaded = VectorType(BFloat16Type(), shape)
    permutation = _transfer_map(op)
    if permutation is None:
        bf16_value = inside(vector.LoadOp(op.memref, list(op.indices), loaded))
    else:
        every = ArrayAttr([BoolAttr.from_bool(True)] * len(shape))
        padding = inside(arith.BitcastOp(inside.constant(0, i16), BFloat16Type()))
        bf16_value = inside(vector.TransferReadOp(op.memref, list(op.indices), padding, loaded, every, permutation))
    inside(scf.YieldOp(inside(arith.BitcastOp(bf16_value, lowered))))
    outside = emit.at_end_of(edge)
    pointer, count, first_offsets, along = _element_walk(outside, op, shape)
    value = outside.constant(0, lowered)
    line_type = VectorType(i16, [shape[limited]])
    zero, one = outside.constant(0, IndexType()), outside.constant(1, IndexType())
    for fixed, first in first_offsets:
        # The elements before the bound along the bounded axis, as a vector of their own (LLVM inserts at a
        # run-time position into a 1-D vector only), then placed into the tile at static positions.
        body = Block(arg_types=[IndexType(), line_type])
        inner = emit.at_end_of(body)
        offset = inner(arith.AddiOp(first, inner(arith.MuliOp(body.args[0], inner.constant(along, IndexType())))))
        address = inner(
            llvm.GEPOp.from_mixed_indices(pointer, [inner(arith.IndexCastOp(offset, i64))], pointee_type=i16)
        )
        bits = inner(llvm.LoadOp(address, i16))
        inner(scf.YieldOp(inner(vector.InsertOp(bits, body.args[1], [body.args[0]]))))
        line = outside(scf.ForOp(zero, count, one, [outside.constant(0, line_type)], body))
        if len(shape) == 1:
            value = line
        elif limited == len(shape) - 1:
            value = outside(vector.InsertOp(line, value, list(fixed[:-1])))
        else:
            for i in range(shape[limited]):
                position = [i if axis == limited else fixed[axis] for axis in range(len(shape))]
                element = outside(vector.ExtractOp(line, [i], i16))
                value = outside(vector.InsertOp(element, value, position))
    outside(scf.YieldOp(value))
    return emit(scf.IfOp(whole, [lowered], Region(within), Region(edge)))


def _before_bound(emit: Emitter, op: tile.LoadOp | tile.StoreOp, shape: tuple[int, ...]) -> SSAValue:
    """An i1: whether the whole tile lies before the access's bound along its bounded axis."""
    assert _bound(op) is not None
    limited = _bound_axis(op)
    start = op.indices[tile.access_axes(op)[limited]]
    end = emit(arith.AddiOp(start, emit.constant(shape[limited], IndexType())))
    return emit(arith.CmpiOp(end, _bound_value(op), "ule"))


def _element_walk(
    emit: Emitter, op: tile.LoadOp | tile.StoreOp, shape: tuple[int, ...]
) -> tuple[SSAValue, SSAValue, list[tuple[tuple[int, ...], SSAValue]], int]:
    """How a bounded bf16 access reaches its elements one by one, as i16 through the buffer's pointer: (the
    pointer, the elements before the bound along the bounded axis (at most the tile's), for each position of
    the other axes its first element's offset, the offset's step along the bounded axis)."""
    buffer_type = op.memref.type
    assert isinstance(buffer_type, MemRefType) and _bound(op) is not None
    axes, limited = tile.access_axes(op), _bound_axis(op)
    start = op.indices[axes[limited]]
    address = emit(arith.IndexCastOp(emit(memref.ExtractAlignedPointerAsIndexOp.get(op.memref)), i64))
    pointer = emit(llvm.IntToPtrOp(address))
    count = emit(arith.MinSIOp(emit(arith.SubiOp(_bound_value(op), start)), emit.constant(shape[limited], IndexType())))
    strides = _row_major_strides(buffer_type)
    base = emit.constant(0, IndexType())  # the tile's first element, as an element offset
    for index, stride in zip(op.indices, strides, strict=True):
        base = emit(arith.AddiOp(base, emit(arith.MuliOp(index, emit.constant(stride, IndexType())))))
    firsts = []
    for fixed in itertools.product(*(range(size) if axis != limited else [0] for axis, size in enumerate(shape))):
        first = base if not any(fixed) else emit(
            arith.AddiOp(base, emit.constant(sum(p * strides[axes[a]] for a, p in enumerate(fixed)), IndexType()))
        )  # fmt: skip
        firsts.append((fixed, first))
    return pointer, count, firsts, strides[axes[limited]]


def _load_column(emit: Emitter, op: tile.LoadOp, lowered: VectorType) -> SSAValue:
    """A column tile [rows, 1] as one scalar load per row (what an mma broadcasts: LLVM folds each into a
    broadcast from memory), never a vector of bf16 elements (which LLVM would round-trip through f32)."""
    element = op.memref.type.element_type  # type: ignore[attr-defined]
    row_axis = tile.access_axes(op)[0]
    value = emit.constant(0, lowered)
    for i in range(lowered.get_shape()[0]):
        indices = list(op.indices)
        if i:
            indices[row_axis] = emit(arith.AddiOp(indices[row_axis], emit.constant(i, IndexType())))
        scalar = _as_storage(emit, emit(memref.LoadOp.get(op.memref, indices)), element)
        value = emit(vector.InsertOp(scalar, value, [i, 0]))
    return value


def _is_transposed_block(op: tile.StoreOp) -> bool:
    """Whether the store is of an unmasked [16, b <= 16] tile whose axis 0 runs along the buffer's innermost
    dimension and axis 1 along an outer one (a block of keys stored transposed for attention's scores)."""
    axes, rank = tile.access_axes(op), len(op.indices)
    if _bound(op) is not None or len(axes) != 2 or axes[0] != rank - 1 or axes[1] == rank - 1:
        return False
    assert isinstance(op.value.type, TileType)
    rows, columns = op.value.type.get_shape()
    return rows == TRANSPOSE_BLOCK and columns <= TRANSPOSE_BLOCK


def _store_transposed(emit: Emitter, op: tile.StoreOp, value: SSAValue) -> None:
    """A transposed block: its 16 rows (padded to 16 lanes) transposed by shuffles, each column then one
    vector store along the buffer's innermost dimension (a transfer write with this permutation map would
    store it element by element). bf16 is shuffled as its bits and each column bitcast for the store."""
    lowered = lowered_type(op.value.type, LANES)  # `value` is converted to it once every op is rewritten
    assert isinstance(lowered, VectorType) and isinstance(op.memref.type, MemRefType)
    columns, element = lowered.get_shape()[1], lowered.element_type
    buffer_element = op.memref.type.element_type
    rows = []
    for i in range(TRANSPOSE_BLOCK):
        row = emit(vector.ExtractOp(value, [i], VectorType(element, [columns])))
        if columns < TRANSPOSE_BLOCK:  # lanes past the tile's columns become rows of the transpose not stored
            row = _shuffle(emit, row, row, [*range(columns), *([-1] * (TRANSPOSE_BLOCK - columns))])
        rows.append(row)
    outer_axis = tile.access_axes(op)[1]
    for j, column in enumerate(_transpose16(emit, rows)[:columns]):
        indices = list(op.indices)
        if j:
            indices[outer_axis] = emit(arith.AddiOp(indices[outer_axis], emit.constant(j, IndexType())))
        if isinstance(buffer_element, BFloat16Type):
            column = emit(arith.BitcastOp(column, VectorType(buffer_element, [TRANSPOSE_BLOCK])))
        emit(vector.StoreOp(column, op.memref, indices))


def _transpose16(emit: Emitter, rows: list[SSAValue]) -> list[SSAValue]:
    """16 vectors of 16 lanes transposed: at each level k = 8, 4, 2, 1 the off-diagonal k x k blocks swap
    (element [i][j + k] with [i + k][j] where bit k of i and j is clear), one two-input shuffle per row."""
    rows, k = list(rows), TRANSPOSE_BLOCK // 2
    while k:
        low = [j if not j & k else TRANSPOSE_BLOCK + j - k for j in range(TRANSPOSE_BLOCK)]
        high = [j + k if not j & k else TRANSPOSE_BLOCK + j for j in range(TRANSPOSE_BLOCK)]
        for i in (i for i in range(TRANSPOSE_BLOCK) if not i & k):
            a, b = rows[i], rows[i + k]
            rows[i], rows[i + k] = _shuffle(emit, a, b, low), _shuffle(emit, a, b, high)
        k //= 2
    return rows


def _shuffle(emit: Emitter, a: SSAValue, b: SSAValue, lanes: list[int]) -> SSAValue:
    """The vector of `lanes` of a and b concatenated (a ShuffleOp; -1: a lane whose value is not used)."""
    held = _worker_type(a)
    assert isinstance(held, VectorType)
    result = VectorType(held.element_type, [len(lanes)])
    return emit(vector.ShuffleOp(a, b, DenseArrayBase.from_list(i64, lanes), result_type=result))


class LowerStore(TilePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.StoreOp, rewriter: PatternRewriter) -> None:
        _refuse_several_bounds(op)
        emit = Emitter(rewriter, op)
        buffer_type = op.memref.type
        assert isinstance(buffer_type, MemRefType)
        if isinstance(buffer_type.element_type, BFloat16Type) and _bound(op) is not None:
            _store_bf16_bounded(emit, op)
            rewriter.erase_op(op)
            return
        value = _as_element(emit, op.value, buffer_type.element_type)
        permutation = _transfer_map(op) if isinstance(op.value.type, TileType) else None
        if not isinstance(op.value.type, TileType):
            emit(memref.StoreOp.get(value, op.memref, list(op.indices)))
        elif _is_transposed_block(op):
            _store_transposed(emit, op, op.value)
        elif permutation is not None:  # vector.transfer_write: upstream lowers it by rows, or by elements
            lowered = lowered_type(op.value.type, LANES)
            assert isinstance(lowered, VectorType)
            mask = None if _bound(op) is None else _mask(emit, op, lowered)
            emit(vector.TransferWriteOp(value, op.memref, list(op.indices), _in_bounds(op), mask, permutation))
        elif _bound(op) is None:
            emit(vector.StoreOp(value, op.memref, list(op.indices)))
        else:
            lowered = lowered_type(op.value.type, LANES)
            assert isinstance(lowered, VectorType)
            emit(vector.MaskedStoreOp(op.memref, list(op.indices), _mask(emit, op, lowered), value))
        rewriter.erase_op(op)


def _store_bf16_bounded(emit: Emitter, op: tile.StoreOp) -> None:
    """A bf16 tile stored up to its bound: one unmasked store where the whole tile lies before the bound, else
    its elements before the bound one by one, as i16 bits through the buffer's pointer. A masked store or an
    element extracted as bf16 is widened to f32 and narrowed back by LLVM's legalisation, which on x86 without
    AVX512-BF16 is a __truncsfbf2 libcall the kernels do not link; bits never pass through a float here."""
    assert isinstance(op.value.type, TileType) and _bound(op) is not None
    lowered = lowered_type(op.value.type, LANES)
    assert isinstance(lowered, VectorType)
    shape, limited = lowered.get_shape(), _bound_axis(op)
    whole = _before_bound(emit, op, shape)
    within, edge = Block(), Block()
    inside = emit.at_end_of(within)
    bf16_value = inside(arith.BitcastOp(op.value, VectorType(BFloat16Type(), shape)))
    permutation = _transfer_map(op)
    if permutation is None:
        inside(vector.StoreOp(bf16_value, op.memref, list(op.indices)))
    else:
        every = ArrayAttr([BoolAttr.from_bool(True)] * len(shape))
        inside(vector.TransferWriteOp(bf16_value, op.memref, list(op.indices), every, None, permutation))
    inside(scf.YieldOp())
    outside = emit.at_end_of(edge)
    pointer, count, first_offsets, along = _element_walk(outside, op, shape)
    zero, one = outside.constant(0, IndexType()), outside.constant(1, IndexType())
    for fixed, first in first_offsets:
        body = Block(arg_types=[IndexType()])
        inner = emit.at_end_of(body)
        position = [body.args[0] if axis == limited else fixed[axis] for axis in range(len(shape))]
        bits = inner(vector.ExtractOp(op.value, position, storage(BFloat16Type())))
        offset = inner(arith.AddiOp(first, inner(arith.MuliOp(body.args[0], inner.constant(along, IndexType())))))
        element = inner(
            llvm.GEPOp.from_mixed_indices(pointer, [inner(arith.IndexCastOp(offset, i64))], pointee_type=i16)
        )
        inner(llvm.StoreOp(bits, element))
        inner(scf.YieldOp())
        outside(scf.ForOp(zero, count, one, [], body))
    outside(scf.YieldOp())
    emit(scf.IfOp(whole, [], Region(within), Region(edge)))


def _row_major_strides(buffer_type: MemRefType) -> list[int]:
    """Element strides of a row-major buffer (only its outermost size may be dynamic)."""
    strides, size = [], 1
    for extent in reversed(buffer_type.get_shape()):
        strides.append(size)
        size *= extent
    return strides[::-1]


class LowerAlloc(RewritePattern):
    """A scratch buffer in fast memory -> a stack buffer (AllocaOp, 64-byte aligned: whole cache lines, aligned vector
    loads) at the start of the kernel, so that LowerKernel keeps it out of the program loop: one stack buffer
    per call, reused by every program (its contents are undefined at each alloc anyway); no heap call and
    no page faults per program (a megabyte from malloc is a fresh mmap each time). Its size is bounded by
    the footprint (1 MiB on x86), which a thread's stack holds. A "global" buffer -> the heap (AllocOp), freed at
    the end of the block that allocated it."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.AllocOp, rewriter: PatternRewriter) -> None:
        assert isinstance(op.result.type, MemRefType)
        element, shape = op.result.type.element_type, op.result.type.get_shape()
        if op.in_fast_memory():
            kernel = op.parent_op()
            while kernel is not None and not isinstance(kernel, tile.KernelOp):
                kernel = kernel.parent_op()
            assert kernel is not None, f"{op.name} outside a kernel"
            alloca = memref.AllocaOp.get(element, 64, shape)
            rewriter.insert_op(alloca, InsertPoint.at_start(kernel.body.block))
            rewriter.replace_matched_op([], [alloca.memref])
            return
        alloc = memref.AllocOp.get(element, 64, shape)
        block = op.parent_block()
        assert block is not None
        terminator = block.last_op if block.last_op is not None and block.last_op.has_trait(IsTerminator) else None
        free = memref.DeallocOp.get(alloc.memref)
        if terminator is None:
            block.add_op(free)
        else:
            block.insert_op_before(free, terminator)
        rewriter.replace_matched_op(alloc)


def _worker_type(value: SSAValue) -> Attribute:
    """A tile operand's type as the core holds it: lowered already (a load's vector) or not yet (a
    loop-carried tile, converted last)."""
    return lowered_type(value.type, LANES) if isinstance(value.type, TileType) else value.type


class LowerReduce(TilePattern):
    """A rank-1 tile: vector.reduction (floats reassociated). A matrix tile along axis 1: each row's
    vector.reduction, inserted into the result; along axis 0: the rows combined elementwise."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.ReduceOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        floats = isinstance(tile.element_of(op.result.type), AnyFloat)
        combiners = _FLOAT_COMBINERS if floats else _INTEGER_COMBINERS
        properties: dict[str, Attribute] = {
            "kind": vector.CombiningKindAttr(vector.CombiningKindFlag(combiners[op.combiner.data]))
        }
        if floats:
            properties["fastmath"] = REASSOCIATE

        def reduction(value: SSAValue, element: Attribute) -> SSAValue:
            if floats and op.combiner.data != "add":
                value = _halving_tree(emit, value, _FLOAT_ELEMENTWISE[op.combiner.data])
            return emit(vector.ReductionOp.create(operands=[value], result_types=[element], properties=properties))

        source = _worker_type(op.input)
        if not isinstance(op.result.type, TileType):
            rewriter.replace_matched_op([], [reduction(op.input, op.result.type)])
            return
        assert isinstance(source, VectorType) and len(source.get_shape()) == 2
        (rows, cols), element = source.get_shape(), source.element_type
        row_values = [emit(vector.ExtractOp(op.input, [i], VectorType(element, [cols]))) for i in range(rows)]
        if int(op.axis.value.data) == 0:
            combine = (_FLOAT_ELEMENTWISE if floats else _INTEGER_ELEMENTWISE)[op.combiner.data]
            value = row_values[0]
            for row in row_values[1:]:
                value = emit(combine(value, row))
            rewriter.replace_matched_op([], [value])
            return
        per_row = [reduction(row, element) for row in row_values]
        result = lowered_type(op.result.type, LANES)
        if not isinstance(result, VectorType):  # a single row: its reduction is the result
            rewriter.replace_matched_op([], per_row)
            return
        value = emit.constant(0, result)
        for i, row_value in enumerate(per_row):
            value = emit(vector.InsertOp(row_value, value, [i]))
        rewriter.replace_matched_op([], [value])


def _halving_tree(emit: Emitter, value: SSAValue, combine: Combine) -> SSAValue:
    """A float max or min's vector combined with its upper half while its width is even (log2 steps): LLVM
    expands a ReductionOp of maxnumf / minnumf that may see NaN into a serial chain, a NaN check per
    lane (the combines here keep maxnum's NaN semantics, and the reduction finishes what is left)."""
    held = _worker_type(value)
    assert isinstance(held, VectorType)
    width = held.get_shape()[0]
    while width % 2 == 0 and width > 1:
        half = width // 2
        halves = [_shuffle(emit, value, value, list(lanes)) for lanes in (range(half), range(half, width))]
        value, width = emit(combine(*halves)), half
    return value


def _identity(combiner: str, element: Attribute) -> float | int:
    """What combines with nothing: a scan brings it in below its first lane."""
    if combiner == "add":
        return 0
    if isinstance(element, AnyFloat):
        return float("-inf") if combiner == "max" else float("inf")
    assert isinstance(element, IntegerType)
    bits = element.width.data
    return -(1 << (bits - 1)) if combiner == "max" else (1 << (bits - 1)) - 1


class LowerScan(TilePattern):
    """An inclusive scan. A vector's in log2 steps (Hillis and Steele): at step s each lane combines with the
    lane s below it (a ShuffleOp that brings the combiner's identity in below lane s); a matrix tile
    along axis 1 scans each row so, along axis 0 combines each row with the previous row's result."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.ScanOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        element = tile.element_of(op.result.type)  # (the input may be lowered already)
        if isinstance(element, BFloat16Type):
            raise TileLoweringError(f"{op.name}: a scan of bf16 elements (convert the tile to f32 first)")
        floats = isinstance(element, AnyFloat)
        combine = (_FLOAT_ELEMENTWISE if floats else _INTEGER_ELEMENTWISE)[op.combiner.data]
        held = _worker_type(op.input)
        if not isinstance(held, VectorType):  # one element: its own scan
            rewriter.replace_matched_op([], [op.input])
            return
        identity = _identity(op.combiner.data, element)
        if len(held.get_shape()) == 1:
            rewriter.replace_matched_op([], [_scan_vector(emit, op.input, combine, identity)])
            return
        rows, columns = held.get_shape()
        row_type = VectorType(held.element_type, [columns])
        values = [emit(vector.ExtractOp(op.input, [i], row_type)) for i in range(rows)]
        if int(op.axis.value.data) == 0:
            for i in range(1, rows):
                values[i] = emit(combine(values[i - 1], values[i]))
        else:
            values = [_scan_vector(emit, row, combine, identity) for row in values]
        result = emit.constant(0, held)
        for i, row in enumerate(values):
            result = emit(vector.InsertOp(row, result, [i]))
        rewriter.replace_matched_op([], [result])


def _scan_vector(emit: Emitter, value: SSAValue, combine: Combine, identity: float | int) -> SSAValue:
    held = _worker_type(value)
    assert isinstance(held, VectorType)
    width = held.get_shape()[0]
    fill = emit.constant(identity, held)
    step = 1
    while step < width:  # lane i takes lane i - step of the value, or (below lane step) the identity
        below = _shuffle(emit, value, fill, [width + i if i < step else i - step for i in range(width)])
        value, step = emit(combine(value, below)), 2 * step
    return value


class LowerBroadcast(TilePattern):
    """A new leading axis: vector.broadcast; a new trailing axis: each element broadcast to its row."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.BroadcastOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        result = lowered_type(op.result.type, LANES)
        assert isinstance(result, VectorType) and isinstance(op.result.type, TileType)
        if len(op.result.type.get_shape()) != 2:
            raise TileLoweringError(f"{op.name}: the x86 lowering broadcasts rank-1 tiles to matrix tiles only")
        rows, cols = result.get_shape()
        if int(op.axis.value.data) == 0:
            rewriter.replace_matched_op([], [emit(vector.BroadcastOp(op.input, result))])
            return
        source = _worker_type(op.input)
        value = emit.constant(0, result)
        for i in range(rows):
            scalar = (
                op.input
                if not isinstance(source, VectorType)
                else emit(vector.ExtractOp(op.input, [i], source.element_type))
            )
            value = emit(vector.InsertOp(emit.broadcast(scalar, VectorType(result.element_type, [cols])), value, [i]))
        rewriter.replace_matched_op([], [value])


class LowerMma(TilePattern):
    """c + a b on a core's vectors: for each k, each row of c gains a[m, k] (broadcast) times row k of b in
    one vector FMA (LLVM selects vfmadd231ps with a broadcast operand); bf16 operands are widened exactly
    first. With b given transposed ([N, K]: rows of keys), each element of c gains the dot product of row m
    of a and row n of b: their product as one vector along K, summed by a reassociated vector.reduction (a
    tree of vector adds, then one horizontal sum). With b in k pairs, its rows are the halves of each pair
    row's 32-bit words. The AMX form of the op is lowering/tile_to_amx.py, run first where enabled."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.MmaOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        lhs = _worker_type(op.lhs)
        assert isinstance(lhs, VectorType) and isinstance(op.result.type, TileType)
        (m, k), n = lhs.get_shape(), op.result.type.get_shape()[1]
        element = lhs.element_type
        bf16 = element == storage(BFloat16Type())
        row_type = VectorType(f32, [n])
        rows = [emit(vector.ExtractOp(op.acc, [i], row_type)) for i in range(m)]
        if op.rhs_transposed is not None:
            rows = self._dot_products(emit, op, rows, m, k, n, element)
            result = op.acc
            for i, row in enumerate(rows):
                result = emit(vector.InsertOp(row, result, [i]))
            rewriter.replace_matched_op([], [result])
            return
        if m * k > LOOPED_PRODUCT_FMAS:
            rows = _k_loop(rewriter, emit, op, rows, m, k, n, element)
            k = 0  # every step done in the loop
        b_rows = _pair_rows(emit, op.rhs, k, n) if op.rhs_pairs is not None and k else None
        for j in range(k):
            if b_rows is not None:
                b_row = b_rows[j]
            else:
                b_row = emit(vector.ExtractOp(op.rhs, [j], VectorType(element, [n])))
                b_row = emit.widen_bf16(b_row) if bf16 else b_row
            for i in range(m):
                a_ij = emit(vector.ExtractOp(op.lhs, [i, j], element))
                a_ij = emit.widen_bf16(a_ij) if bf16 else a_ij
                rows[i] = emit(vector.FMAOp(emit.broadcast(a_ij, row_type), b_row, rows[i]))
        result = op.acc
        for i, row in enumerate(rows):
            result = emit(vector.InsertOp(row, result, [i]))
        rewriter.replace_matched_op([], [result])

    @staticmethod
    def _dot_products(emit: Emitter, op: tile.MmaOp, rows: list[SSAValue], m: int, k: int, n: int,
                      element: Attribute) -> list[SSAValue]:  # fmt: skip
        bf16 = element == storage(BFloat16Type())

        def row_of(matrix: SSAValue, i: int) -> SSAValue:
            row = emit(vector.ExtractOp(matrix, [i], VectorType(element, [k])))
            return emit.widen_bf16(row) if bf16 else row

        a_rows = [row_of(op.lhs, i) for i in range(m)]
        b_rows = [row_of(op.rhs, j) for j in range(n)]
        add = vector.CombiningKindAttr(vector.CombiningKindFlag.ADD)
        sums = []
        for i in range(m):
            dots = []
            for j in range(n):
                product = emit(arith.MulfOp(a_rows[i], b_rows[j]))
                dots.append(
                    emit(
                        vector.ReductionOp.create(
                            operands=[product], result_types=[f32], properties={"kind": add, "fastmath": REASSOCIATE}
                        )
                    )
                )
            sums.append(emit(arith.AddfOp(rows[i], emit(FromElementsOp(dots)))))
        return sums


class LowerMmaBF16Dot(TilePattern):
    """c + a b with b in k pairs, on AVX-512 BF16 (convert-tessera-tile-to-x86{bf16-dot=true}): for each pair
    row of b and each row of c, one vdpbf16ps per 16 columns (dialects/x86vector.py), a's two values of the
    pair broadcast as one 32-bit word — half the instructions of widening both to f32 for two FMAs, and no
    widening at all. Each product pair is summed in f32 before it is added, so sums differ from LowerMma's
    FMA order by f32 rounding. A shape it does not take (N not a multiple of 16) is left to LowerMma."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.MmaOp, rewriter: PatternRewriter) -> None:
        lhs = _worker_type(op.lhs)
        assert isinstance(lhs, VectorType) and isinstance(op.result.type, TileType)
        (m, k), n = lhs.get_shape(), op.result.type.get_shape()[1]
        if op.rhs_pairs is None or n % x86vector.LANES or k % 2:
            return
        emit = Emitter(rewriter, op)
        lanes, pair_lanes = x86vector.LANES, 2 * x86vector.LANES
        pair_type = VectorType(BFloat16Type(), [pair_lanes])
        words_type = VectorType(i32, [lanes])
        chunks = []  # per row of c, its columns 16 at a time
        for i in range(m):
            row = emit(vector.ExtractOp(op.acc, [i], VectorType(f32, [n])))
            chunks.append([_shuffle(emit, row, row, list(range(c, c + lanes))) for c in range(0, n, lanes)])
        a_words = [
            emit(vector.BitcastOp(emit(vector.ExtractOp(op.lhs, [i], VectorType(i16, [k]))), VectorType(i32, [k // 2])))
            for i in range(m)
        ]
        for j in range(k // 2):
            bits = emit(vector.ExtractOp(op.rhs, [j], VectorType(i16, [2 * n])))
            b_pairs = [
                emit(vector.BitcastOp(_shuffle(emit, bits, bits, list(range(c, c + pair_lanes))), pair_type))
                for c in range(0, 2 * n, pair_lanes)
            ]
            for i in range(m):
                word = emit(vector.ExtractOp(a_words[i], [j], i32))
                a_pair = emit(vector.BitcastOp(emit.broadcast(word, words_type), pair_type))
                chunks[i] = [emit(x86vector.DotBF16Op(c, a_pair, b)) for c, b in zip(chunks[i], b_pairs, strict=True)]
        result = op.acc
        for i, row_chunks in enumerate(chunks):
            result = emit(vector.InsertOp(_concatenate(emit, row_chunks), result, [i]))
        rewriter.replace_matched_op([], [result])


def _concatenate(emit: Emitter, parts: list[SSAValue]) -> SSAValue:
    """Equal vectors end to end, joined pairwise by shuffles (LLVM keeps the 512-bit parts as registers)."""
    while len(parts) > 1:
        joined = []
        for a, b in itertools.zip_longest(parts[::2], parts[1::2]):
            if b is None:
                joined.append(a)
                continue
            size = _worker_type(a).get_shape()[0]  # type: ignore[attr-defined]
            joined.append(_shuffle(emit, a, b, list(range(2 * size))))
        parts = joined
    return parts[0]


# Above this many broadcast FMAs an mma's k steps are a loop, not unrolled: the AMX blocking's 32 x 32 x 32
# products lowered without AMX (1024 each) took LLVM about 9 s per kernel to compile.
LOOPED_PRODUCT_FMAS = 256


def _k_loop(rewriter: PatternRewriter, emit: Emitter, op: tile.MmaOp, rows: list[SSAValue], m: int, k: int,
            n: int, element: Attribute) -> list[SSAValue]:  # fmt: skip
    """The accumulator rows after the k steps of c + a b as one loop (ForOp): a and b stored once into stack
    buffers of the kernel (placed at its start, as LowerAlloc places scratch), each step m scalar loads of
    a's column broadcast against one row of b (k pairs: a pair row, two steps)."""
    bf16 = element == storage(BFloat16Type())
    kernel = op.parent_op()
    while not isinstance(kernel, tile.KernelOp):
        assert kernel is not None, f"{op.name} outside a kernel"
        kernel = kernel.parent_op()
    buffers = []
    for value in (op.lhs, op.rhs):
        type_ = _worker_type(value)
        assert isinstance(type_, VectorType)
        alloca = memref.AllocaOp.get(type_.element_type, 64, type_.get_shape())
        rewriter.insert_op(alloca, InsertPoint.at_start(kernel.body.block))
        (count, width), zero = type_.get_shape(), emit.constant(0, IndexType())
        for row in range(count):  # row by row: the LLVM lowering stores 1-D vectors only
            values = emit(vector.ExtractOp(value, [row], VectorType(type_.element_type, [width])))
            emit(vector.StoreOp(values, alloca.memref, [emit.constant(row, IndexType()), zero]))
        buffers.append(alloca.memref)
    a, b = buffers
    row_type = VectorType(f32, [n])
    pairs = op.rhs_pairs is not None
    body = Block(arg_types=[IndexType(), *(row.type for row in rows)])
    inner = emit.at_end_of(body)
    step = body.args[0]
    if pairs:  # one pair row: the steps 2 step and 2 step + 1
        bits = inner(vector.LoadOp(b, [step, inner.constant(0, IndexType())], VectorType(i16, [2 * n])))
        first = inner(arith.MuliOp(step, inner.constant(2, IndexType())))
        second = inner(arith.AddiOp(first, inner.constant(1, IndexType())))
        steps = list(zip((first, second), _split_pair_row(inner, bits, n), strict=True))
    else:
        b_row = inner(vector.LoadOp(b, [step, inner.constant(0, IndexType())], VectorType(element, [n])))
        steps = [(step, inner.widen_bf16(b_row) if bf16 else b_row)]
    accumulators: list[SSAValue] = list(body.args[1:])
    for j, b_row in steps:
        for i in range(m):
            a_ij = inner(memref.LoadOp.get(a, [inner.constant(i, IndexType()), j]))
            a_ij = inner.widen_bf16(a_ij) if bf16 else a_ij
            accumulators[i] = inner(vector.FMAOp(inner.broadcast(a_ij, row_type), b_row, accumulators[i]))
    inner(scf.YieldOp(*accumulators))
    trips = emit.constant(k // 2 if pairs else k, IndexType())
    loop = scf.ForOp(emit.constant(0, IndexType()), trips, emit.constant(1, IndexType()), rows, body)
    emit(loop)
    return list(loop.results)


def _pair_rows(emit: Emitter, pairs: SSAValue, k: int, n: int) -> list[SSAValue]:
    """The K rows of a b given as k pairs ([K/2, 2N] bf16 bits), as f32 vectors: each pair row viewed as N
    32-bit words, row 2i + 0 being their low halves (shifted up) and row 2i + 1 their high halves."""
    rows = []
    for i in range(k // 2):
        rows += _split_pair_row(emit, emit(vector.ExtractOp(pairs, [i], VectorType(i16, [2 * n]))), n)
    return rows


def _split_pair_row(emit: Emitter, bits: SSAValue, n: int) -> list[SSAValue]:
    """One pair row (2N bf16 bits) as its two f32 rows: the low and the high halves of its N 32-bit words."""
    words_type, row_type = VectorType(i32, [n]), VectorType(f32, [n])
    words = emit(vector.BitcastOp(bits, words_type))
    low = emit(arith.ShLIOp(words, emit.constant(16, words_type)))
    high = emit(arith.AndIOp(words, emit.constant(-65536, words_type)))
    return [emit(arith.BitcastOp(low, row_type)), emit(arith.BitcastOp(high, row_type))]


class LowerInterleave(TilePattern):
    """Two rank-1 tiles alternately: one two-input shuffle (bf16 as its bits)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.InterleaveOp, rewriter: PatternRewriter) -> None:
        held = _worker_type(op.even)
        assert isinstance(held, VectorType)
        (size,) = held.get_shape()
        lanes = [lane for j in range(size) for lane in (j, size + j)]
        rewriter.replace_matched_op([], [_shuffle(Emitter(rewriter, op), op.even, op.odd, lanes)])


class LowerIota(TilePattern):
    """The positions 0..B-1: one constant vector."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.IotaOp, rewriter: PatternRewriter) -> None:
        type_ = lowered_type(op.result.type, LANES)
        if not isinstance(type_, VectorType):
            rewriter.replace_matched_op(arith.ConstantOp.from_int_and_width(0, i32))
            return
        positions = DenseIntOrFPElementsAttr.from_list(type_, list(range(type_.element_count())))
        rewriter.replace_matched_op(arith.ConstantOp(positions, type_))


# The parameters a lowered kernel's function ends with: the range of programs one call runs.
PROGRAM_RANGE = ("begin", "end")


class LowerKernel(RewritePattern):
    """A dataflow kernel -> func.func(buffers, scalars, %begin, %end) looping its programs over [begin, end)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.KernelOp, rewriter: PatternRewriter) -> None:
        if not op.is_dataflow():
            return
        if op.token_block is not None:
            raise TileLoweringError(f"{op.name} @{op.sym_name.data}: x86 runs a one-dimensional grid (no token_block)")
        old = op.body.block
        arg_types = [arg.type for arg in old.args[: len(old.args) - len(op.program_args())]]
        entry = Block(arg_types=[*arg_types, IndexType(), IndexType()])
        begin, end = entry.args[-2:]
        begin.name_hint, end.name_hint = PROGRAM_RANGE
        if op.ranged is not None:  # the body runs [begin, end) itself
            for new_arg, old_arg in zip(entry.args, old.args, strict=True):
                old_arg.replace_all_uses_with(new_arg)
            for inner in list(old.ops):
                inner.detach()
                entry.add_op(inner)
            entry.add_op(func.ReturnOp())
            rewriter.replace_matched_op(func.FuncOp(op.sym_name.data, (entry.arg_types, []), Region(entry)))
            return
        one = arith.ConstantOp.from_int_and_width(1, IndexType())
        body = Block(arg_types=[IndexType()])
        for new_arg, old_arg in zip(entry.args, old.args[:-1], strict=False):
            old_arg.replace_all_uses_with(new_arg)
        old.args[-1].replace_all_uses_with(body.args[0])
        for inner in list(old.ops):
            inner.detach()
            (entry if isinstance(inner, memref.AllocaOp) else body).add_op(inner)  # scratch: once per call
        body.add_op(scf.YieldOp())
        entry.add_ops([one, scf.ForOp(begin, end, one.result, [], body), func.ReturnOp()])
        function = func.FuncOp(op.sym_name.data, (entry.arg_types, []), Region(entry))
        rewriter.replace_matched_op(function)


# Stores first, while every value they store still has its tile type; then loads; then the ops that compute.
STORE_PATTERNS: tuple[type[TilePattern], ...] = (LowerStore,)
LOAD_PATTERNS: tuple[type[TilePattern], ...] = (LowerLoad,)
COMPUTE_PATTERNS: tuple[type[TilePattern], ...] = (
    *SHARED_PATTERNS,
    LowerReduce,
    LowerScan,
    LowerBroadcast,
    LowerIota,
    LowerInterleave,
    LowerMma,
)


def lower_to_x86(module: ModuleOp, amx: bool = False, bf16_dot: bool = False) -> None:
    """Lower every dataflow kernel of `module` in place (a kernel without a body is left as it is); with
    `amx`, the accumulators of loops that fit AMX tiles first (lowering/tile_to_amx.py); with `bf16_dot`,
    products of b in k pairs as AVX-512 BF16 dot products (LowerMmaBF16Dot) where they fit."""
    if amx:
        PatternRewriteWalker(PromoteAccumulatorsToAmx()).rewrite_module(module)
    PatternRewriteWalker(LowerAlloc()).rewrite_module(module)
    compute: tuple[type[TilePattern], ...] = (LowerMmaBF16Dot, *COMPUTE_PATTERNS) if bf16_dot else COMPUTE_PATTERNS
    for patterns in (STORE_PATTERNS, LOAD_PATTERNS, compute):
        walker = PatternRewriteWalker(GreedyRewritePatternApplier([pattern(LANES) for pattern in patterns]))
        walker.rewrite_module(module)
    PatternRewriteWalker(LowerTileTypes(LANES)).rewrite_module(module)
    PatternRewriteWalker(LowerKernel(), apply_recursively=False).rewrite_module(module)


@dataclass(frozen=True)
class ConvertTileToX86Pass(ModulePass):
    """amx: products of bf16 tiles whose accumulators a loop carries run on AMX tiles where they fit;
    bf16_dot: products of b in k pairs run as AVX-512 BF16 dot products (vdpbf16ps)."""

    name = "convert-tessera-tile-to-x86"
    amx: bool = False
    bf16_dot: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lower_to_x86(op, self.amx, self.bf16_dot)
