"""convert-tessera-tile-to-simt{arch}: dataflow Tile-IR -> one `gpu.func` per kernel for a GPU's SIMT lanes,
the same patterns for every GPU (the arch gives the wave size and the kernel attributes); the ROCDL and NVVM
targets lower the result with upstream convert-gpu-to-rocdl / convert-gpu-to-nvvm.

    kernel(buffers..., scalars...) with program id %t
        -> gpu.func @kernel(%b0: !llvm.ptr<1>, ..., %tokens: i32, %position: i32) kernel
               %t = gpu.block_id x      one workgroup (a single wave) per program

A tile's elements are spread over the wave's W lanes in slots, element j W + l in lane l's slot j
(lowering/simt_lanes.py: consecutive lanes touch consecutive addresses, so loads and stores coalesce; a tile
smaller than the wave is replicated). A load or store is, per slot, llvm.getelementptr + llvm.load /
llvm.store at an i32 element offset (row-major; the token dimension is the outermost; the tile's axes walk
the buffer dimensions `axes` names), guarded by an scf.IfOp past `bound` (a tile in Runs: one aligned
llvm.LoadOp of a vector per run, guarded as a whole); a scalar load is made by every lane, a
scalar store by lane 0. memref.dim of the token dimension is the %tokens parameter. A scratch buffer
(`tessera.tile.alloc`) is a workgroup attribution of the gpu.func, read and written with memref.load /
memref.store; a store into it is followed by gpu.barrier, so that any lane may read what another wrote. A
rank-1 reduction combines the lane's slots, then a butterfly of `gpu.shuffle xor` gives every lane the
total; an iota is the element numbers. A matrix tile's reduction, a broadcast and `mma` stage their operands
through shared memory (lowering/simt_matrix.py: an mma then multiplies on FMAs, or on the arch's matrix
instruction where it has wave fragments — CDNA's MFMA). Map, splat and convert are lowering/tile_elements.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, builtin, gpu, llvm, memref, scf, vector
from xdsl.dialects.builtin import (
    AnyFloat,
    IndexType,
    MemRefType,
    ModuleOp,
    StringAttr,
    VectorType,
    i32,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from tessera.arch import GpuArch, gpu_arch, staged_shape
from tessera.dialects import tile
from tessera.dialects.schedule import element_bytes
from tessera.dialects.tile import TileType
from tessera.dialects.upstream import WORKGROUP, FromElementsOp, ShuffleOp, WorkgroupFuncOp
from tessera.lowering.nvvm.pipeline import GRID_CONSTANTS
from tessera.lowering.simt_lanes import (
    VECTOR_BYTES,
    Along,
    Before,
    Layout,
    Places,
    Runs,
    SimtPattern,
    Spread,
    aligned_runs,
    combiner,
    function_of,
    lane_of,
    packed,
    slot_values,
)
from tessera.lowering.simt_matrix import MATRIX_PATTERNS
from tessera.lowering.tile_elements import (
    SHARED_PATTERNS,
    Emitter,
    LowerTileTypes,
    TileLoweringError,
    TilePattern,
    converted,
    element_of_held,
    is_scalar_operand,
    lowered_type,
    mapped,
    storage,
)

GLOBAL = llvm.LLVMPointerType(builtin.IntAttr(1))
TENSOR_MAP = llvm.LLVMPointerType()


def _pointer(buffer: SSAValue) -> SSAValue:
    """The !llvm.ptr<1> argument behind a buffer (LowerKernel's unrealized cast to its memref type)."""
    cast = buffer.owner
    assert isinstance(cast, builtin.UnrealizedConversionCastOp), "a buffer of a lowered kernel"
    return cast.inputs[0]


def _linear_offset(emit: Emitter, buffer_type: MemRefType, indices: list[SSAValue]) -> SSAValue:
    """The i32 element offset of `indices` in a row-major buffer (only the outermost size may be dynamic)."""
    shape = buffer_type.get_shape()
    offset = emit(arith.IndexCastOp(indices[0], i32))
    for size, index in zip(shape[1:], indices[1:], strict=True):
        scaled = emit(arith.MuliOp(offset, emit.constant(size, i32)))
        offset = emit(arith.AddiOp(scaled, emit(arith.IndexCastOp(index, i32))))
    return offset


def _in_workgroup(buffer: SSAValue) -> bool:
    """A program's scratch buffer (a workgroup attribution), rather than a kernel parameter."""
    return isinstance(buffer.type, MemRefType) and buffer.type.memory_space == WORKGROUP


class _Access:
    """One element of an access: its indices, and whether it lies before the bound (None: it does)."""

    def __init__(self, emit: Emitter, op: tile.LoadOp | tile.StoreOp, indices: list[SSAValue],
                 valid: SSAValue | None, offset: SSAValue | None = None) -> None:  # fmt: skip
        self.op = op
        self.indices = indices
        self.valid = valid
        if not _in_workgroup(op.memref):
            assert isinstance(op.memref.type, MemRefType)
            self.offset = offset if offset is not None else _linear_offset(emit, op.memref.type, indices)

    def load(self, element: Attribute, run: VectorType | None = None, alignment: int | None = None) -> list[Operation]:
        """The ops that read the element, or the `run` of elements from it (a global vector load of that
        alignment); the value is the last one's result."""
        if _in_workgroup(self.op.memref):
            assert run is None
            return [memref.LoadOp.get(self.op.memref, self.indices)]
        gep = llvm.GEPOp.from_mixed_indices(
            _pointer(self.op.memref), [self.offset], pointee_type=element, result_type=GLOBAL
        )
        return [gep, llvm.LoadOp(gep.result, element if run is None else run, alignment=alignment)]

    def store(self, value: SSAValue, element: Attribute, alignment: int | None = None) -> list[Operation]:
        """The ops that write `value`, an element or (a global vector store of that alignment) a run of them."""
        if _in_workgroup(self.op.memref):
            return [memref.StoreOp.get(value, self.op.memref, self.indices)]
        gep = llvm.GEPOp.from_mixed_indices(
            _pointer(self.op.memref), [self.offset], pointee_type=element, result_type=GLOBAL
        )
        return [gep, llvm.StoreOp(value, gep.result, alignment=alignment)]


def _accesses(emit: Emitter, op: tile.LoadOp | tile.StoreOp, layout: Places | None) -> list[_Access]:
    """The lane's elements of a load or store, one per slot of the tile's `layout` (a scalar access: one, no
    layout): tile axis i walks buffer dimension axes[i] from the op's indices; each bound limits its axis."""
    if layout is None:
        return [_Access(emit, op, list(op.indices), None)]
    steps = layout.steps()
    if steps is not None and not _in_workgroup(op.memref):
        return _stepped_accesses(emit, op, layout, steps)
    axes = tile.access_axes(op)
    accesses = []
    for place in layout.coordinates(emit, lane_of(op)):
        indices = list(op.indices)
        for axis, position in zip(axes, place, strict=True):
            indices[axis] = emit(arith.AddiOp(indices[axis], position))
        valid = None
        for axis, bound in tile.access_bounds(op):
            valid = _both(emit, valid, emit(arith.CmpiOp(indices[axes[axis]], bound, "ult")))
        accesses.append(_Access(emit, op, indices, valid))
    return accesses


def _stepped_accesses(emit: Emitter, op: tile.LoadOp | tile.StoreOp, layout: Places,
                      steps: list[list[int]]) -> list[_Access]:  # fmt: skip
    """A global access whose slots lie at constant distances from slot 0's element: one address, then a
    constant added per slot (and, per bound, a constant compared with the room left along its axis)."""
    axes = tile.access_axes(op)
    buffer = op.memref.type
    assert isinstance(buffer, MemRefType)
    shape = buffer.get_shape()
    strides = [1] * len(shape)
    for dimension in range(len(shape) - 2, -1, -1):
        strides[dimension] = strides[dimension + 1] * shape[dimension + 1]
    indices = list(op.indices)
    for axis, position in zip(axes, layout.origin(emit, lane_of(op)), strict=True):
        indices[axis] = emit(arith.AddiOp(indices[axis], position))
    base = _linear_offset(emit, buffer, indices)
    rooms = [(axis, emit(arith.SubiOp(bound, indices[axes[axis]]))) for axis, bound in tile.access_bounds(op)]
    accesses = []
    for step in steps:
        distance = sum(delta * strides[axis] for axis, delta in zip(axes, step, strict=True))
        offset = base if distance == 0 else emit(arith.AddiOp(base, emit.constant(distance, i32)))
        valid = None
        for axis, room in rooms:
            inside = emit(arith.CmpiOp(emit.constant(step[axis], IndexType()), room, "slt"))
            valid = _both(emit, valid, inside)
        accesses.append(_Access(emit, op, [], valid, offset))
    return accesses


class LowerLoad(SimtPattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.LoadOp, rewriter: PatternRewriter) -> None:
        if op in self.before.loads_in_place or op in self.before.read_by_broadcast.values():
            return  # its mma reads the buffer itself (LowerMma), or its broadcast (LowerReadBroadcast)
        emit = Emitter(rewriter, op)
        assert isinstance(op.memref.type, MemRefType)
        element = storage(op.memref.type.element_type)
        layout = self.before.layout(op.result) if isinstance(op.result.type, TileType) else None
        if isinstance(layout, Runs) and not _in_workgroup(op.memref):
            rewriter.replace_matched_op([], [packed(emit, _load_runs(emit, op, layout, element))])
            return
        rewriter.replace_matched_op([], [packed(emit, _read(emit, op, layout, element))])


def _read(emit: Emitter, op: tile.LoadOp, layout: Places | None, element: Attribute) -> list[SSAValue]:
    """The lane's elements of a load in `layout` (zeros past the bounds), one per slot."""
    values = []
    for access in _accesses(emit, op, layout):
        reads = access.load(element)
        if access.valid is None:
            values.append([emit(inner) for inner in reads][-1])
            continue
        zero = emit.constant(0.0, element) if isinstance(element, AnyFloat) else emit.constant(0, element)
        then = Block([*reads, scf.YieldOp(reads[-1].results[0])])
        values.append(emit(scf.IfOp(access.valid, [element], [then], [Block([scf.YieldOp(zero)])])))
    return values


class LowerReadBroadcast(SimtPattern):
    """A broadcast of a rank-1 load it may read itself (tile.read_directly): each lane reads the positions
    along the kept axis that its elements of the result need, straight from memory (a row's bias, a column's
    scale), with no pass through the scratchpad and no barrier."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.BroadcastOp, rewriter: PatternRewriter) -> None:
        load = self.before.read_by_broadcast.get(op)
        if load is None:
            return
        emit = Emitter(rewriter, op)
        assert isinstance(load.memref.type, MemRefType)
        layout = self.before.layout(op.result)
        along = Along(layout, 1 - int(op.axis.value.data))
        values = _read(emit, load, along, storage(load.memref.type.element_type))
        rewriter.replace_matched_op([], [packed(emit, [values[along.slot_of(slot)] for slot in range(layout.slots)])])
        rewriter.erase_op(load)


def _load_runs(emit: Emitter, op: tile.LoadOp, layout: Runs, element: Attribute) -> list[SSAValue]:
    """The lane's runs, one aligned vector load each (zeros past the bounds: they mask whole runs), as its
    slots."""
    run = VectorType(element, [layout.width])
    alignment = min(VECTOR_BYTES, layout.width * element.bitwidth // 8)  # type: ignore[attr-defined]
    values: list[SSAValue] = []
    for access in _stepped_accesses(emit, op, layout, layout.run_steps()):
        reads = access.load(element, run, alignment)
        if access.valid is None:
            vector_value = [emit(read) for read in reads][-1]
        else:
            then = Block([*reads, scf.YieldOp(reads[-1].results[0])])
            otherwise = Block([scf.YieldOp(emit.constant(0, run))])
            vector_value = emit(scf.IfOp(access.valid, [run], [then], [otherwise]))
        values.extend(emit(vector.ExtractOp(vector_value, [i], element)) for i in range(layout.width))
    return values


class LowerStore(SimtPattern):
    """A store; one into a scratch buffer is followed by a workgroup barrier, so that every lane's later
    reads see it whichever lane wrote it (every lane reaches the barrier: the guard covers the store only).
    A replicated tile is stored by the lanes that own its elements, a scalar by lane 0."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.StoreOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        written = self.before.operands(op)[0]  # the value as written: another pattern may have replaced it
        layout = self.before.layout(written) if isinstance(written.type, TileType) else None
        update = _read_modify_write(op)
        if update is not None and layout is not None:
            _update_each(emit, op, *update, layout)
            for done in (op, *reversed(update[1]), update[0]):
                rewriter.erase_op(done)
            return
        assert isinstance(op.memref.type, MemRefType)
        element = storage(op.memref.type.element_type)
        if isinstance(layout, Runs) and aligned_runs(op, layout.width):
            _store_runs(emit, op, layout, element)
            rewriter.erase_op(op)
            return
        accesses = _accesses(emit, op, layout)
        if layout is None:
            owners: list[SSAValue | None] = [emit(arith.CmpiOp(lane_of(op), emit.constant(0, IndexType()), "eq"))]
            values = [op.value]
        else:
            owners = [layout.owner(emit, lane_of(op), slot) for slot in range(layout.slots)]
            values = slot_values(emit, op.value, layout.slots, element)
        for access, value, owner in zip(accesses, values, owners, strict=True):
            guard = _both(emit, access.valid, owner)
            writes = access.store(value, element)
            if guard is None:
                for inner in writes:
                    emit(inner)
            else:
                emit(scf.IfOp(guard, [], [Block([*writes, scf.YieldOp()])]))
        if _in_workgroup(op.memref):
            emit(gpu.BarrierOp())
        rewriter.erase_op(op)


def _store_runs(emit: Emitter, op: tile.StoreOp, layout: Runs, element: Attribute) -> None:
    """The lane's runs, one aligned vector store each (a bound masks whole runs)."""
    alignment = min(VECTOR_BYTES, layout.width * element.bitwidth // 8)  # type: ignore[attr-defined]
    values = slot_values(emit, op.value, layout.slots, element)
    for index, access in enumerate(_stepped_accesses(emit, op, layout, layout.run_steps())):
        run = emit(FromElementsOp(values[index * layout.width : (index + 1) * layout.width]))
        writes = access.store(run, element, alignment)
        if access.valid is None:
            for write in writes:
                emit(write)
        else:
            emit(scf.IfOp(access.valid, [], [Block([*writes, scf.YieldOp()])]))


def _both(emit: Emitter, first: SSAValue | None, second: SSAValue | None) -> SSAValue | None:
    if first is None or second is None:
        return first or second
    return emit(arith.AndIOp(first, second))


Updates = list[tile.MapOp | tile.ConvertOp]


def _read_modify_write(op: tile.StoreOp) -> tuple[tile.LoadOp, Updates] | None:
    """Where a store writes back what it read — value = convert?(map(..., load of the same place, ...)), each
    used once, into a global buffer — the load and the ops from it to the stored value, in order; else
    None."""
    chain: list[tile.MapOp | tile.ConvertOp] = []
    value = op.value
    while value.has_one_use():
        owner = value.owner
        if isinstance(owner, tile.ConvertOp):
            chain.append(owner)
            value = owner.input
            continue
        if not isinstance(owner, tile.MapOp):
            return None
        chain.append(owner)
        for operand in owner.inputs:
            load = operand.owner
            if isinstance(load, tile.LoadOp) and operand.has_one_use() and _same_place(load, op):
                return load, chain[::-1]
        return None
    return None


def _same_place(load: tile.LoadOp, store: tile.StoreOp) -> bool:
    """Whether the store writes exactly what the load read, in one block with no other store between them (so
    that each element may be read where it is written)."""
    if not (
        load.memref is store.memref
        and not _in_workgroup(load.memref)
        and list(load.indices) == list(store.indices)
        and list(load.bounds) == list(store.bounds)
        and (load.axes, load.bound_axes) == (store.axes, store.bound_axes)
        and load.parent_block() is store.parent_block()
    ):
        return False
    between = load.next_op
    while between is not None and between is not store:
        if isinstance(between, tile.StoreOp) or (between.regions and not isinstance(between, tile.MapOp)):
            return False
        between = between.next_op
    return between is store


def _update_each(emit: Emitter, op: tile.StoreOp, load: tile.LoadOp, updates: Updates, layout: Layout) -> None:
    """A read-modify-write element by element: each element read, updated and written back in turn (under one
    guard), so that a lane holds one element of the buffer at a time rather than its whole tile (64 per thread
    of a warpgroup accumulator) — a read of the next element cannot be moved above a write that may alias it."""
    assert isinstance(op.memref.type, MemRefType)
    element = storage(op.memref.type.element_type)
    inputs = {  # the slots of every other tile the updates read
        value: slot_values(emit, value, layout.slots, element_of_held(value))
        for update in updates
        for value in update.operands
        if not is_scalar_operand(value) and value is not load.result and value.owner not in updates
    }
    lane = lane_of(op)
    for slot, access in enumerate(_accesses(emit, op, layout)):
        guard = _both(emit, access.valid, layout.owner(emit, lane, slot))
        block = Block()
        inner = emit if guard is None else emit.at_end_of(block)
        value = [inner(read) for read in access.load(element)][-1]
        for update in updates:
            if isinstance(update, tile.ConvertOp):
                value = converted(inner, update, value)
                continue
            operands = [
                value if operand.owner in (load, *updates) else inputs[operand][slot] if operand in inputs else operand
                for operand in update.inputs
            ]
            value = mapped(inner, update, operands, storage(tile.element_of(update.result.type)))
        for write in access.store(value, element):
            inner(write)
        if guard is not None:
            inner(scf.YieldOp())
            emit(scf.IfOp(guard, [], [block]))


class LowerAlloc(SimtPattern):
    """A scratch buffer -> a workgroup attribution of the GPU function (shared memory / LDS), bf16 held as i16; its
    rows padded as a staged operand's (arch.staged_shape) where an mma reads them down a column in place."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.AllocOp, rewriter: PatternRewriter) -> None:
        if not op.in_fast_memory():
            raise TileLoweringError(f'{op.name}: a GPU program has no heap for a "global" scratch buffer')
        function = function_of(op)
        assert isinstance(function, WorkgroupFuncOp) and isinstance(op.result.type, MemRefType)
        element, shape = op.result.type.element_type, op.result.type.get_shape()
        if op in self.before.padded_allocs:
            shape = staged_shape(shape, element_bytes(element))
        buffer = function.add_workgroup_buffer(MemRefType(storage(element), shape))
        buffer.name_hint = f"lds_{op.result.name_hint or f'scratch{function.attributions() - 1}'}"
        self.before.buffers[op] = buffer
        rewriter.replace_matched_op([], [buffer])


class LowerDim(RewritePattern):
    """memref.dim of a buffer: its static size, or the %tokens parameter for the dynamic leading one."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: memref.DimOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        index_op = op.index.owner
        assert isinstance(index_op, arith.ConstantOp) and isinstance(index_op.value, builtin.IntegerAttr)
        dimension = int(index_op.value.value.data)
        assert isinstance(op.source.type, MemRefType)
        size = op.source.type.get_shape()[dimension]
        if size != builtin.DYNAMIC_INDEX:
            rewriter.replace_matched_op([], [emit.constant(size, IndexType())])
            return
        assert dimension == 0, "only the leading (token) dimension of a buffer is dynamic"
        function = function_of(op)
        tokens = function.body.block.args[len(function.function_type.inputs) - 2]  # before any attribution
        rewriter.replace_matched_op([], [emit(arith.IndexCastOp(tokens, IndexType()))])


class LowerReduce(SimtPattern):
    """A rank-1 tile's reduction: the lane's slots combined, then a butterfly of `gpu.shuffle xor` over the
    lanes holding different elements gives every lane the total. (A matrix tile's: lowering/simt_matrix.py.)"""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.ReduceOp, rewriter: PatternRewriter) -> None:
        (input_type,) = self.before.operand_types(op)
        spread = Spread.of(input_type, self.lanes)
        if len(spread.shape) != 1:
            return
        emit = Emitter(rewriter, op)
        element = lowered_type(op.result.type, self.lanes)
        combine = combiner(op)
        values = slot_values(emit, op.input, spread.slots, element)
        if op.combiner.data == "add":  # a padded slot's copies of the last element add nothing
            lane = lane_of(op)
            for slot in range(spread.slots):
                owner = spread.owner(emit, lane, slot) if not spread.replicated else None
                if owner is not None:
                    values[slot] = emit(arith.SelectOp(owner, values[slot], emit.constant(0, element)))
        value = values[0]
        for other in values[1:]:
            value = emit(combine(value, other))
        width = emit.constant(self.lanes, i32)
        offset = (spread.count if spread.replicated else self.lanes) // 2
        while offset >= 1:
            shuffled = emit(ShuffleOp(value, emit.constant(offset, i32), width, "xor"))
            value = emit(combine(value, shuffled))
            offset //= 2
        rewriter.replace_matched_op([], [value])


class LowerScan(SimtPattern):
    """A rank-1 tile's inclusive scan: within each slot, log2 steps of ShuffleOp in mode up (a lane combines with
    the lane `offset` below it where that lane holds an earlier element: the lane's position in its group of
    the wave, or of C lanes for a replicated tile, is at least `offset`); then each slot after the first
    combines with the running total of the slots before it, the last lane's value (a ShuffleOp in mode idx). A
    padded slot is the last: its lanes past the tile's end scan copies nobody reads."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.ScanOp, rewriter: PatternRewriter) -> None:
        (input_type,) = self.before.operand_types(op)
        spread = Spread.of(input_type, self.lanes)
        if len(spread.shape) != 1:
            raise TileLoweringError(f"{op.name}: a matrix tile's scan has no SIMT lowering yet")
        emit = Emitter(rewriter, op)
        element = tile.element_of(op.result.type)
        combine = combiner(op)
        lane = lane_of(op)
        group = spread.count if spread.replicated else self.lanes
        position = emit(arith.RemUIOp(lane, emit.constant(group, IndexType()))) if spread.replicated else lane
        width = emit.constant(self.lanes, i32)
        values = slot_values(emit, op.input, spread.slots, element)
        total: SSAValue | None = None
        for slot, value in enumerate(values):
            offset = 1
            while offset < group:
                below = emit(ShuffleOp(value, emit.constant(offset, i32), width, "up"))
                has_below = emit(arith.CmpiOp(position, emit.constant(offset, IndexType()), "uge"))
                value = emit(arith.SelectOp(has_below, emit(combine(value, below)), value))
                offset *= 2
            if total is not None:
                value = emit(combine(total, value))
            values[slot] = value
            if slot + 1 < len(values):
                total = emit(ShuffleOp(value, emit.constant(self.lanes - 1, i32), width, "idx"))
        rewriter.replace_matched_op([], [packed(emit, values)])


class LowerIota(TilePattern):
    """A position is the number of the element the lane holds in each slot."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.IotaOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        spread, lane = Spread.of(op.result.type, self.lanes), lane_of(op)
        positions = [emit(arith.IndexCastOp(spread.element(emit, lane, slot), i32)) for slot in range(spread.slots)]
        rewriter.replace_matched_op([], [packed(emit, positions)])


@dataclass
class LowerKernel(RewritePattern):
    """A dataflow kernel -> a GPU function (pointers, %tokens, %position), a workgroup of its tiles' `threads` (one
    wave unless they say otherwise) per program."""

    arch: GpuArch

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.KernelOp, rewriter: PatternRewriter) -> None:
        if not op.is_dataflow():
            return
        if op.ranged is not None:  # persistent workgroups over the grid: the Hopper GEMM's (issue 14)
            raise TileLoweringError(f"{op.name} @{op.sym_name.data}: a ranged body has no SIMT lowering yet")
        threads = tile.workgroup_threads(op, self.arch.wave_size)
        buffers = op.buffers()
        # A launch operand that only async loads read is given as its copy engine's descriptor (a CUtensorMap
        # passed by value: a grid constant), not as a pointer.
        described = [bool(buffer.uses) and all(_copied(use.operation) for use in buffer.uses) for buffer in buffers]
        entry = Block(arg_types=[*(TENSOR_MAP if copied else GLOBAL for copied in described), i32, i32])
        for arg, name in zip(
            entry.args, [*(buffer.name_hint for buffer in buffers), "tokens", "position"], strict=True
        ):
            arg.name_hint = name
        ops: list[Operation] = [gpu.ThreadIdOp(gpu.DimensionAttr(gpu.DimensionEnum.X))]
        # The grid's program id along x; a token block's (tessera.tile.kernel's token_block) along y.
        programs = [gpu.BlockIdOp(gpu.DimensionAttr(d)) for d in (gpu.DimensionEnum.X, gpu.DimensionEnum.Y)]
        ops += programs[: len(op.program_args())]
        for pointer, buffer in zip(entry.args, buffers, strict=False):
            cast = builtin.UnrealizedConversionCastOp.get([pointer], [buffer.type])
            ops.append(cast)
            buffer.replace_all_uses_with(cast.results[0])
        for name, scalar in zip(op.scalar_names(), op.scalar_args(), strict=True):
            assert name == "position", name
            position = arith.IndexCastOp(entry.args[-1], IndexType())
            ops.append(position)
            scalar.replace_all_uses_with(position.result)
        for program_arg, program in zip(op.program_args(), programs, strict=False):
            program_arg.replace_all_uses_with(program.result)
        entry.add_ops(ops)
        for inner in list(op.body.block.ops):
            inner.detach()
            entry.add_op(inner)
        entry.add_op(gpu.ReturnOp([]))
        function = WorkgroupFuncOp(op.sym_name.data, (entry.arg_types, []), Region(entry), kernel=True)
        function.attributes["gpu.kernel"] = builtin.UnitAttr()
        function.attributes["known_block_size"] = builtin.DenseArrayBase.from_list(i32, [threads, 1, 1])
        if any(described):
            indices = [index for index, copied in enumerate(described) if copied]
            function.attributes[GRID_CONSTANTS] = builtin.DenseArrayBase.from_list(i32, indices)
        if self.arch.vendor == "amd":
            function.attributes["rocdl.flat_work_group_size"] = StringAttr(f"{threads},{threads}")
        rewriter.replace_matched_op(function)


def _copied(op: Operation) -> bool:
    """Whether an op reading a buffer is an async load (a copy engine's) or a dim of it."""
    return isinstance(op, memref.DimOp) or (isinstance(op, tile.LoadOp) and op.is_async is not None)


class EraseBufferCasts(RewritePattern):
    """The casts of buffers to their memrefs once nothing reads them, and the casts of a tile not lowered yet to
    its lowered type (what a pattern that needs the held value makes) once LowerTileTypes made them identities."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: builtin.UnrealizedConversionCastOp, rewriter: PatternRewriter) -> None:
        if not op.results[0].uses:
            rewriter.erase_op(op)
        elif len(op.inputs) == 1 and op.inputs[0].type == op.results[0].type:
            rewriter.replace_matched_op([], [op.inputs[0]])


# Stores first, while every value they store still has its tile type (a lowered tile of one element per
# lane looks like a scalar); then loads; then the ops that compute. The patterns read the kernel as written
# (Before: operand shapes, layouts).
STORE_PATTERNS: tuple[type[SimtPattern], ...] = (LowerStore,)
LOAD_PATTERNS: tuple[type[SimtPattern], ...] = (LowerLoad, LowerReadBroadcast)
COMPUTE_PATTERNS: tuple[type[TilePattern], ...] = (*SHARED_PATTERNS, LowerIota)
SHAPE_READING_PATTERNS: tuple[type[SimtPattern], ...] = (LowerReduce, LowerScan, *MATRIX_PATTERNS)


def lower_to_simt(module: ModuleOp, arch: GpuArch) -> list[gpu.FuncOp]:
    """Lower every dataflow kernel of `module` to a gpu.func in place; returns them (in module order)."""
    before = Before(module, arch)
    lanes = before.lanes
    PatternRewriteWalker(LowerKernel(arch), apply_recursively=False).rewrite_module(module)
    if arch.async_copies:  # pipelined loops of async copies: the target's own pattern (Hopper: WGMMA + TMA)
        from tessera.lowering.nvvm.wgmma import LowerPipelinedMma

        PatternRewriteWalker(LowerPipelinedMma(before), apply_recursively=False).rewrite_module(module)
    PatternRewriteWalker(GreedyRewritePatternApplier([LowerDim(), LowerAlloc(lanes, before)])).rewrite_module(module)
    for patterns in (STORE_PATTERNS, LOAD_PATTERNS):
        walker = PatternRewriteWalker(GreedyRewritePatternApplier([pattern(lanes, before) for pattern in patterns]))
        walker.rewrite_module(module)
    compute: list[RewritePattern] = [pattern(lanes) for pattern in COMPUTE_PATTERNS]
    compute += [pattern(lanes, before) for pattern in SHAPE_READING_PATTERNS]
    PatternRewriteWalker(GreedyRewritePatternApplier(compute)).rewrite_module(module)
    PatternRewriteWalker(LowerTileTypes(lanes)).rewrite_module(module)
    PatternRewriteWalker(EraseBufferCasts()).rewrite_module(module)
    return [op for op in module.ops if isinstance(op, gpu.FuncOp)]


def wrap_in_gpu_module(module: ModuleOp, arch: GpuArch) -> None:
    """The lowered GPU functions of `module`, and the globals they address, moved into one GPU module
    `@kernels` (what tessera-opt prints), with the arch's data layout where the upstream conversion sets none."""
    functions = [op for op in module.ops if isinstance(op, gpu.FuncOp | llvm.GlobalOp)]
    if not functions:
        return
    for function in functions:
        function.detach()
    kernels = gpu.ModuleOp(StringAttr("kernels"), Region(Block(functions)))  # type: ignore[arg-type]
    if arch.data_layout is not None:
        kernels.attributes["llvm.data_layout"] = StringAttr(arch.data_layout)
    module.body.block.add_op(kernels)


@dataclass(frozen=True)
class ConvertTileToSimtPass(ModulePass):
    name = "convert-tessera-tile-to-simt"

    arch: str = "gfx942"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lower_to_simt(op, gpu_arch(self.arch))
        wrap_in_gpu_module(op, gpu_arch(self.arch))
