"""convert-tessera-tile-to-simt{arch}: dataflow Tile-IR -> one `gpu.func` per kernel for a GPU's SIMT lanes,
the same patterns for every GPU (the arch gives the wave size and the kernel attributes); the ROCDL and NVVM
targets lower the result with upstream convert-gpu-to-rocdl / convert-gpu-to-nvvm.

    kernel(buffers..., scalars...) with program id %t
        -> gpu.func @kernel(%b0: !llvm.ptr<1>, ..., %tokens: i32, %position: i32) kernel
               %t = gpu.block_id x      one workgroup (a single wave) per program

A tile of B elements is spread over the wave's W lanes, element e in lane e mod W (consecutive lanes touch
consecutive addresses: loads and stores coalesce); each lane holds B / W of them (one, as the policies
choose today). A load or store is llvm.getelementptr + llvm.load / llvm.store at an i32 element offset
(row-major; the token dimension is the outermost; the lane steps along the tile's axis, a column's too),
guarded by scf.if past `bound`; a scalar load is made by every lane, a scalar store by lane 0. memref.dim
of the token dimension is the %tokens parameter. A scratch buffer (`tessera.tile.alloc`) is a workgroup
attribution of the gpu.func, read and written with memref.load / memref.store; a store into it is followed
by gpu.barrier, so that any lane may read what another wrote. A reduction combines the lane's elements,
then a butterfly of `gpu.shuffle xor` gives every lane the total; an iota is the lane. Map, splat and
convert are lowering/tile_elements.py's. Matrix tiles and `mma` are refused in one line (TileLoweringError):
their MFMA / WGMMA fragments are the next step.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, builtin, gpu, llvm, memref, scf
from xdsl.dialects.builtin import IndexType, MemRefType, ModuleOp, StringAttr, i32
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from tessera.arch import GpuArch, gpu_arch
from tessera.dialects import tile
from tessera.dialects.tile import TileType
from tessera.dialects.upstream import WORKGROUP, ShuffleOp, WorkgroupFuncOp
from tessera.lowering.tile_elements import (
    SHARED_PATTERNS,
    Emitter,
    LowerTileTypes,
    TileLoweringError,
    TilePattern,
    lowered_type,
    storage,
)

GLOBAL = llvm.LLVMPointerType(builtin.IntAttr(1))
_FLOAT_COMBINE = {"add": arith.AddfOp, "max": arith.MaximumfOp, "min": arith.MinimumfOp}
_INTEGER_COMBINE = {"add": arith.AddiOp, "max": arith.MaxSIOp, "min": arith.MinSIOp}


def _function(op: Operation) -> gpu.FuncOp:
    parent = op.parent_op()
    while not isinstance(parent, gpu.FuncOp):
        assert parent is not None, f"{op.name} outside a gpu.func"
        parent = parent.parent_op()
    return parent


def _lane(op: Operation) -> SSAValue:
    """This lane's index in the wave: the gpu.thread_id x that LowerKernel put at the function's entry."""
    entry = _function(op).body.block
    for candidate in entry.ops:
        if isinstance(candidate, gpu.ThreadIdOp):
            return candidate.result
    raise AssertionError("LowerKernel places gpu.thread_id at every gpu.func's entry")


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
    """The lane's element of a tile access: its indices, and whether it lies before the bound."""

    def __init__(self, emit: Emitter, op: tile.LoadOp | tile.StoreOp, lanes: int, tiled: bool) -> None:
        self.op = op
        self.indices = list(op.indices)
        self.valid: SSAValue | None = None
        if tiled:
            per_lane = lowered_type(op.result.type if isinstance(op, tile.LoadOp) else op.value.type, lanes)
            if per_lane != storage(tile.element_of(per_lane)):
                raise TileLoweringError(f"{op.name}: the SIMT lowering holds one element of a tile per lane")
            axes = tile.access_axes(op)
            if len(axes) != 1:
                raise TileLoweringError(f"{op.name}: the SIMT lowering spreads rank-1 tiles over the lanes")
            column = emit(arith.AddiOp(self.indices[axes[0]], _lane(op)))
            self.indices[axes[0]] = column
            if op.bound is not None:
                self.valid = emit(arith.CmpiOp(column, op.bound, "ult"))
        if not _in_workgroup(op.memref):
            assert isinstance(op.memref.type, MemRefType)
            self.offset = _linear_offset(emit, op.memref.type, self.indices)

    def load(self, element: Attribute) -> list[Operation]:
        """The ops that read the element (the value is the last one's result)."""
        if _in_workgroup(self.op.memref):
            return [memref.LoadOp.get(self.op.memref, self.indices)]
        gep = llvm.GEPOp.from_mixed_indices(
            _pointer(self.op.memref), [self.offset], pointee_type=element, result_type=GLOBAL
        )
        return [gep, llvm.LoadOp(gep.result, element)]

    def store(self, value: SSAValue, element: Attribute) -> list[Operation]:
        if _in_workgroup(self.op.memref):
            return [memref.StoreOp.get(value, self.op.memref, self.indices)]
        gep = llvm.GEPOp.from_mixed_indices(
            _pointer(self.op.memref), [self.offset], pointee_type=element, result_type=GLOBAL
        )
        return [gep, llvm.StoreOp(value, gep.result)]


class LowerLoad(TilePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.LoadOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        assert isinstance(op.memref.type, MemRefType)
        element = storage(op.memref.type.element_type)
        access = _Access(emit, op, self.lanes, isinstance(op.result.type, TileType))
        if access.valid is None:
            value = [emit(inner) for inner in access.load(element)][-1]
        else:
            then, otherwise = Block(), Block()
            reads = access.load(element)
            then.add_ops([*reads, scf.YieldOp(reads[-1].results[0])])
            zero_op = (
                arith.ConstantOp(builtin.FloatAttr(0.0, builtin.f32))
                if element == builtin.f32
                else arith.ConstantOp.from_int_and_width(0, element)  # type: ignore[arg-type]
            )
            otherwise.add_ops([zero_op, scf.YieldOp(zero_op.result)])
            value = emit(scf.IfOp(access.valid, [element], [then], [otherwise]))
        rewriter.replace_matched_op([], [value])


class LowerStore(TilePattern):
    """A store; one into a scratch buffer is followed by a workgroup barrier, so that every lane's later
    reads see it whichever lane wrote it (every lane reaches the barrier: the guard covers the store only)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.StoreOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        tiled = isinstance(op.value.type, TileType)
        access = _Access(emit, op, self.lanes, tiled)
        guard = access.valid
        if not tiled:  # a scalar: lane 0 stores it
            guard = emit(arith.CmpiOp(_lane(op), emit.constant(0, IndexType()), "eq"))
        assert isinstance(op.memref.type, MemRefType)
        writes = access.store(op.value, storage(op.memref.type.element_type))
        if guard is None:
            for inner in writes:
                emit(inner)
        else:
            emit(scf.IfOp(guard, [], [Block([*writes, scf.YieldOp()])]))
        if _in_workgroup(op.memref):
            emit(gpu.BarrierOp())
        rewriter.erase_op(op)


class LowerAlloc(RewritePattern):
    """A scratch buffer -> a workgroup attribution of the gpu.func (shared memory / LDS), bf16 held as i16."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.AllocOp, rewriter: PatternRewriter) -> None:
        function = _function(op)
        assert isinstance(function, WorkgroupFuncOp) and isinstance(op.result.type, MemRefType)
        type_ = MemRefType(storage(op.result.type.element_type), op.result.type.get_shape())
        buffer = function.add_workgroup_buffer(type_)
        buffer.name_hint = f"lds_{op.result.name_hint or f'scratch{function.attributions() - 1}'}"
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
        function = _function(op)
        tokens = function.body.block.args[len(function.function_type.inputs) - 2]  # before any attribution
        rewriter.replace_matched_op([], [emit(arith.IndexCastOp(tokens, IndexType()))])


class LowerReduce(TilePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.ReduceOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        floats = isinstance(tile.element_of(op.result.type), builtin.AnyFloat)
        combine = (_FLOAT_COMBINE if floats else _INTEGER_COMBINE)[op.combiner.data]
        value = op.input
        width = emit.constant(self.lanes, i32)
        offset = self.lanes // 2
        while offset >= 1:
            shuffled = emit(ShuffleOp(value, emit.constant(offset, i32), width, "xor"))
            value = emit(combine(value, shuffled))
            offset //= 2
        rewriter.replace_matched_op([], [value])


class LowerIota(TilePattern):
    """Element e of a tile lives in lane e: the position is the lane."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.IotaOp, rewriter: PatternRewriter) -> None:
        if lowered_type(op.result.type, self.lanes) != i32:
            raise TileLoweringError(f"{op.name}: the SIMT lowering holds one element of a tile per lane")
        rewriter.replace_matched_op(arith.IndexCastOp(_lane(op), i32))


@dataclass
class LowerKernel(RewritePattern):
    """A dataflow kernel -> gpu.func(pointers, %tokens, %position) with one wave per program."""

    arch: GpuArch

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.KernelOp, rewriter: PatternRewriter) -> None:
        if not op.is_dataflow():
            return
        threads = self.arch.wave_size
        buffers = op.buffers()
        entry = Block(arg_types=[*(GLOBAL for _ in buffers), i32, i32])
        for arg, name in zip(
            entry.args, [*(buffer.name_hint for buffer in buffers), "tokens", "position"], strict=True
        ):
            arg.name_hint = name
        ops: list[Operation] = [gpu.ThreadIdOp(gpu.DimensionAttr(gpu.DimensionEnum.X))]
        program = gpu.BlockIdOp(gpu.DimensionAttr(gpu.DimensionEnum.X))
        ops.append(program)
        for pointer, buffer in zip(entry.args, buffers, strict=False):
            cast = builtin.UnrealizedConversionCastOp.get([pointer], [buffer.type])
            ops.append(cast)
            buffer.replace_all_uses_with(cast.results[0])
        for name, scalar in zip(op.scalar_names(), op.scalar_args(), strict=True):
            assert name == "position", name
            position = arith.IndexCastOp(entry.args[-1], IndexType())
            ops.append(position)
            scalar.replace_all_uses_with(position.result)
        op.program_id().replace_all_uses_with(program.result)
        entry.add_ops(ops)
        for inner in list(op.body.block.ops):
            inner.detach()
            entry.add_op(inner)
        entry.add_op(gpu.ReturnOp([]))
        function = WorkgroupFuncOp(op.sym_name.data, (entry.arg_types, []), Region(entry), kernel=True)
        function.attributes["gpu.kernel"] = builtin.UnitAttr()
        function.attributes["known_block_size"] = builtin.DenseArrayBase.from_list(i32, [threads, 1, 1])
        if self.arch.vendor == "amd":
            function.attributes["rocdl.flat_work_group_size"] = StringAttr(f"{threads},{threads}")
        rewriter.replace_matched_op(function)


class EraseBufferCasts(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: builtin.UnrealizedConversionCastOp, rewriter: PatternRewriter) -> None:
        if not op.results[0].uses:
            rewriter.erase_op(op)


# Stores first, while every value they store still has its tile type (a lowered tile of one element per
# lane looks like a scalar); then loads; then the ops that compute.
STORE_PATTERNS: tuple[type[TilePattern], ...] = (LowerStore,)
LOAD_PATTERNS: tuple[type[TilePattern], ...] = (LowerLoad,)
COMPUTE_PATTERNS: tuple[type[TilePattern], ...] = (*SHARED_PATTERNS, LowerReduce, LowerIota)


def lower_to_simt(module: ModuleOp, arch: GpuArch) -> list[gpu.FuncOp]:
    """Lower every dataflow kernel of `module` to a gpu.func in place; returns them (in module order)."""
    # Refused in one line before any pattern runs: mma first (the reason for its operands), then matrix tiles.
    ops = list(module.walk())
    for op in ops:
        if isinstance(op, tile.MmaOp):
            raise TileLoweringError(f"{op.name}: no GPU lowering yet (its MFMA and WGMMA patterns come next)")
    for op in ops:
        if any(isinstance(r.type, TileType) and len(r.type.get_shape()) > 1 for r in op.results):
            raise TileLoweringError(f"{op.name}: matrix tiles have no GPU lowering yet (fragment layouts come next)")
    PatternRewriteWalker(LowerKernel(arch), apply_recursively=False).rewrite_module(module)
    PatternRewriteWalker(GreedyRewritePatternApplier([LowerDim(), LowerAlloc()])).rewrite_module(module)
    lanes = arch.wave_size
    for patterns in (STORE_PATTERNS, LOAD_PATTERNS, COMPUTE_PATTERNS):
        walker = PatternRewriteWalker(GreedyRewritePatternApplier([pattern(lanes) for pattern in patterns]))
        walker.rewrite_module(module)
    PatternRewriteWalker(LowerTileTypes(lanes)).rewrite_module(module)
    PatternRewriteWalker(EraseBufferCasts()).rewrite_module(module)
    return [op for op in module.ops if isinstance(op, gpu.FuncOp)]


def wrap_in_gpu_module(module: ModuleOp) -> None:
    """The lowered gpu.funcs of `module` moved into one `gpu.module @kernels` (what tessera-opt prints)."""
    functions = [op for op in module.ops if isinstance(op, gpu.FuncOp)]
    if not functions:
        return
    for function in functions:
        function.detach()
    module.body.block.add_op(gpu.ModuleOp(StringAttr("kernels"), Region(Block(functions))))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ConvertTileToSimtPass(ModulePass):
    name = "convert-tessera-tile-to-simt"

    arch: str = "gfx942"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lower_to_simt(op, gpu_arch(self.arch))
        wrap_in_gpu_module(op)
