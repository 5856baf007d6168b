"""The WGMMA + TMA pattern of convert-tessera-tile-to-nvvm: a software-pipelined K loop of `tessera.tile.mma`
whose operands a copy engine stages (kernels/gemm_blocks.py on Hopper) becomes producer and consumer
warpgroups around a ring of shared-memory stages:

    for k (tessera.tile.stages = S):                 warpgroups 0 .. C-1 consume, warpgroup C produces
      a = load x[row, k] {shared, async, swizzle 128}   (C = block_m / 64: one per 64 rows of the block)
      b = load W[col, k] {shared, async, swizzle 128}
      acc = mma(a, bᵀ, acc)

- Shared memory is one dynamic allocation (`@tessera_dynamic_smem`, 1024-aligned: the 128-byte swizzle's
  period of 8 rows): a's S stages, b's S stages, then full[s] and empty[s] mbarriers (8 bytes each).
- The producer's first thread initialises the barriers (full: 1 arrival; empty: 4 per consumer warpgroup,
  lane 0 of each warp), then per k-block kb, stage s = kb mod S, round r = kb / S: waits on empty[s] for
  parity (r & 1) ^ 1, expects a's and b's bytes on full[s] and issues the two bulk tensor copies (box
  [k, row] of each operand's CUtensorMap, completing on full[s]). A box past the tensor's end is zero-filled
  and still counts its full bytes: the loads' bounds need no code when they are the operands' extents.
- A consumer waits on full[s] for parity r & 1, fences, issues block_k / 16 K-steps of block_n / n WGMMAs
  m64nNk16 (A from its 64 rows of a's stage, B from b's, through 128-byte-swizzle descriptors), commits,
  waits until only that group is pending (IN_FLIGHT: the tensor cores work on it while the next k-block is
  waited for and issued) and releases the previous k-block's stage (lane 0 of each warp arrives on
  empty[s - 1]); after the loop it waits for every group and releases the last stage. The first k-block is
  peeled: its first K-step has scale-d zero, so the accumulators need no zeroing (zeros written between
  WGMMAs would make ptxas serialise them).
- What follows the loop (the epilogue) runs in the consumer warpgroups only, on the accumulator in the
  layout simt_lanes.Warpgroups gives it (arch.WarpgroupFragments).
- Registers: the producer warpgroup gives back all but PRODUCER_REGISTERS a thread (setmaxnreg.dec) and
  the consumers take what that frees (setmaxnreg.inc, consumer_registers: 232 with two), as a 64 x 256
  accumulator (128 registers a thread) and its epilogue need; ptxas allocates the kernel for the launch's
  even share (168 at 384 threads) outside those regions.

Phase logic: an mbarrier's phase completes when its pending arrivals and transaction bytes reach 0;
`try_wait.parity P` returns once the phase of parity P has completed, so right after init waiting for
parity 1 returns at once. Neither side gets two phases ahead on one barrier, so one bit of parity is enough
(`stage_and_parity`; test/test_nvvm_gemm.py runs a randomized model of the protocol).

Descriptors (PTX ISA "Matrix Descriptor Format"): bits 0-13 start address >> 4, 16-29 leading byte offset
>> 4 (unused by swizzled K-major operands: 1), 32-45 stride byte offset >> 4 (1024: 8 rows of 128 bytes),
62-63 swizzle mode (1: 128 bytes). A K-step of 16 bf16 is 32 bytes: it adds 2 to the start field.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import arith, builtin, gpu, llvm, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, MemRefType, i32, i64
from xdsl.ir import Block, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern, op_type_rewrite_pattern

from tessera.arch import WARPGROUP
from tessera.dialects import nvvm, tile
from tessera.dialects.tile import TileType
from tessera.dialects.upstream import AddrSpaceCastOp, FromElementsOp
from tessera.lowering.nvvm.pipeline import DYNAMIC_SHARED, SHARED_ALIGNMENT
from tessera.lowering.simt_lanes import Before, Warpgroups, lane_of
from tessera.lowering.tile_elements import Emitter, TileLoweringError

INDEX = IndexType()
SHARED = llvm.LLVMPointerType(builtin.IntAttr(3))
SHARED_CLUSTER = llvm.LLVMPointerType(builtin.IntAttr(7))
ELEMENT_BYTES = 2  # bf16
SWIZZLE_BYTES = 128
SWIZZLE_128B = 1  # the descriptor's layout-type field (bits 62-63)
WGMMA_K = 16
K_STEP_BYTES = WGMMA_K * ELEMENT_BYTES
MBARRIER_BYTES = 8
RELEASES_PER_CONSUMER = 4  # lane 0 of each warp of a consumer warpgroup arrives on empty[s]
IN_FLIGHT = 1  # WGMMA groups a consumer leaves pending while it waits for and issues the next k-block
WAIT_HINT_NS = 10_000_000  # try_wait's suspend-time hint (CUTLASS's value)


@dataclass(frozen=True)
class Ring:
    """The dynamic shared memory of a pipelined loop: `stages` of a's and b's tiles, then the mbarriers."""

    stages: int
    a_bytes: int  # one stage of a: block_m rows of 128 bytes
    b_bytes: int

    def a_offset(self, stage: int) -> int:
        return stage * self.a_bytes

    def b_offset(self, stage: int) -> int:
        return self.stages * self.a_bytes + stage * self.b_bytes

    @property
    def operand_bytes(self) -> int:
        """The operand stages: what Tile-IR's footprint counts (tessera-tile-compute-footprint)."""
        return self.stages * (self.a_bytes + self.b_bytes)

    def full(self, stage: int) -> int:
        return self.operand_bytes + MBARRIER_BYTES * stage

    def empty(self, stage: int) -> int:
        return self.operand_bytes + MBARRIER_BYTES * (self.stages + stage)

    @property
    def shared_bytes(self) -> int:
        """A launch's dynamic shared memory: the operand stages and two mbarriers per stage."""
        return self.operand_bytes + 2 * self.stages * MBARRIER_BYTES


# --- descriptors, swizzle and barrier arithmetic, as plain functions (the pattern and the tests share them) ---


def smem_descriptor(address: int, leading_bytes: int = 16, stride_bytes: int = 1024,
                    swizzle: int = SWIZZLE_128B) -> int:  # fmt: skip
    """The 64-bit WGMMA shared-memory matrix descriptor of an operand starting at shared `address`."""
    return (
        ((address & 0x3FFFF) >> 4)
        | (((leading_bytes >> 4) & 0x3FFF) << 16)
        | (((stride_bytes >> 4) & 0x3FFF) << 32)
        | (swizzle << 62)
    )


def swizzle_128b(address: int) -> int:
    """The 128-byte swizzle TMA and WGMMA apply to a shared address: 16-byte chunk bits 4-6 ^= bits 7-9."""
    return address ^ (((address >> 7) & 7) << 4)


def operand_byte_address(descriptor: int, row: int, k: int) -> int:
    """Where WGMMA reads element (row, k) of a K-major bf16 operand with a 128-byte-swizzle descriptor."""
    start = (descriptor & 0x3FFF) << 4
    stride = ((descriptor >> 32) & 0x3FFF) << 4
    return swizzle_128b(start + (row // 8) * stride + (row % 8) * SWIZZLE_BYTES + k * ELEMENT_BYTES)


def tma_byte_address(tile_base: int, row: int, k: int) -> int:
    """Where a 128-byte-swizzled TMA box of 64 bf16 per row puts element (row, k), tile_base 1024-aligned."""
    return swizzle_128b(tile_base + row * SWIZZLE_BYTES + k * ELEMENT_BYTES)


def stage_and_parity(k_block: int, stages: int) -> tuple[int, int, int]:
    """(stage, parity a consumer waits on full[stage] for, parity the producer waits on empty[stage] for)."""
    round_ = k_block // stages
    return k_block % stages, round_ & 1, (round_ & 1) ^ 1


# --- the pattern --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loop:
    """What the pattern reads of a pipelined loop."""

    loop: scf.ForOp
    a: tile.LoadOp
    b: tile.LoadOp
    mma: tile.MmaOp
    k_blocks: int
    block_k: int
    layout: Warpgroups

    @property
    def ring(self) -> Ring:
        a, b = self.a.result.type, self.b.result.type
        assert isinstance(a, TileType) and isinstance(b, TileType)
        stages = tile.pipeline_stages(self.loop)
        assert stages is not None
        return Ring(stages, a.element_count() * ELEMENT_BYTES, b.element_count() * ELEMENT_BYTES)


def _constant(value: SSAValue) -> int | None:
    op = value.owner
    return int(op.value.value.data) if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr) else None


def _read(loop: scf.ForOp, before: Before) -> _Loop:
    """The loop's parts, or a one-line error naming what the WGMMA lowering does not take."""
    where = f"{loop.name} with {tile.STAGES}"
    ops = list(loop.body.block.ops)
    if len(ops) != 4 or not isinstance(ops[2], tile.MmaOp):
        raise TileLoweringError(f"{where}: the WGMMA lowering pipelines a loop of two async loads and an mma")
    a, b, mma = ops[0], ops[1], ops[2]
    iv, acc = loop.body.block.args[0], loop.body.block.args[1]
    if not (isinstance(a, tile.LoadOp) and isinstance(b, tile.LoadOp) and mma.lhs is a.result and mma.rhs is b.result):
        raise TileLoweringError(f"{where}: the mma's operands are the loop's two loads")
    if mma.rhs_transposed is None or mma.acc is not acc or ops[3].operands[0] is not mma.result:
        raise TileLoweringError(f"{where}: the loop carries acc = mma(a, bᵀ, acc)")
    first, last, step = (_constant(value) for value in (loop.lb, loop.ub, loop.step))
    for load in (a, b):
        swizzle = None if load.swizzle is None else int(load.swizzle.value.data)
        if load.is_async is None or swizzle != SWIZZLE_BYTES or load.indices[1] is not iv:
            raise TileLoweringError(f"{where}: {load.name} is an async, 128-byte-swizzled load at [row, k]")
        if not _bounds_are_extents(load):
            raise TileLoweringError(
                f"{where}: {load.name} is bounded by its buffer's extents (a copy zero-fills past them)"
            )
    layout = before.layout(mma.result)
    if first != 0 or last is None or step is None or not isinstance(layout, Warpgroups):
        raise TileLoweringError(f"{where}: a K loop from 0 over a known extent into a warpgroup accumulator")
    return _Loop(loop, a, b, mma, -(-last // step), step, layout)


def _bounds_are_extents(load: tile.LoadOp) -> bool:
    """Whether every bound of the load is its buffer's extent along the axis: a dim of it, or its size."""
    buffer = load.memref.type
    assert isinstance(buffer, MemRefType)
    axes = tile.access_axes(load)
    for axis, bound in tile.access_bounds(load):
        dimension, dim = axes[axis], bound.owner
        if _constant(bound) == buffer.get_shape()[dimension]:
            continue
        if not (isinstance(dim, memref.DimOp) and dim.source is load.memref and _constant(dim.index) == dimension):
            return False
    return True


class LowerPipelinedMma(RewritePattern):
    """The pipelined loop -> producer and consumer warpgroups (the module docstring)."""

    def __init__(self, before: Before) -> None:
        self.before = before

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: scf.ForOp, rewriter: PatternRewriter) -> None:
        if tile.pipeline_stages(op) is None:
            return
        parts = _read(op, self.before)
        ring = parts.ring
        consumers = parts.layout.warpgroups
        function = op.parent_op()
        if not isinstance(function, gpu.FuncOp):
            raise TileLoweringError(f"{op.name} with {tile.STAGES}: a pipelined loop is at the kernel's top level")
        threads = function.attributes["known_block_size"]
        assert isinstance(threads, builtin.DenseArrayBase)
        if threads.get_values()[0] != WARPGROUP * (consumers + 1):
            raise TileLoweringError(
                f"{op.name} with {tile.STAGES}: {consumers} consumer warpgroups and a producer need "
                f"{WARPGROUP * (consumers + 1)} threads, the kernel has {threads.get_values()[0]}"
            )
        emit = Emitter(rewriter, op)
        tid = lane_of(op)
        smem = emit(llvm.AddressOfOp(DYNAMIC_SHARED, SHARED))
        declare_dynamic_shared(function)

        _initialise_barriers(emit, ring, smem, tid, consumers)
        warpgroup = emit(arith.DivUIOp(tid, emit.constant(WARPGROUP, INDEX)))
        producing = emit(arith.CmpiOp(warpgroup, emit.constant(consumers, INDEX), "eq"))
        producer = emit.at_end_of(Block())
        producer(nvvm.SetMaxRegisterOp("decrease", PRODUCER_REGISTERS))
        issuing = producer(arith.CmpiOp(tid, producer.constant(consumers * WARPGROUP, INDEX), "eq"))
        copies = producer.at_end_of(Block())
        _produce(copies, parts, ring, smem)
        copies(scf.YieldOp())
        producer(scf.IfOp(issuing, [], [copies.block]))
        producer(scf.YieldOp())

        consumer = emit.at_end_of(Block())
        consumer(nvvm.SetMaxRegisterOp("increase", consumer_registers(consumers)))
        structs = _consume(consumer, parts, ring, smem, tid, warpgroup)
        registers = [
            consumer(llvm.ExtractValueOp(builtin.DenseArrayBase.from_list(i64, [i]), struct, builtin.f32))
            for struct in structs
            for i in range(parts.layout.registers)
        ]
        # The accumulator keeps its tile type for the patterns still to lower the epilogue (LowerTileTypes
        # makes the cast an identity, which the SIMT lowering then folds).
        lowered = consumer(FromElementsOp(registers))
        accumulator = consumer(builtin.UnrealizedConversionCastOp.get([lowered], [op.results[0].type]))
        _move_rest_of_kernel(op, consumer.block)
        consumer(scf.YieldOp())
        emit(scf.IfOp(producing, [], [producer.block], [consumer.block]))
        op.results[0].replace_all_uses_with(accumulator)
        rewriter.erase_op(op, safe_erase=False)


# An SM's register file (64K 32-bit registers; one program an SM at this shared memory), and what the
# producer warpgroup keeps of its share: its one issuing thread needs few, so the consumers take the rest
# for their accumulators and epilogue (setmaxnreg, in multiples of 8).
REGISTER_FILE = 65536
PRODUCER_REGISTERS = 40


def launch_registers(threads: int) -> int:
    """Registers per thread a launch of `threads` gets (what ptxas allocates the kernel for: 168 at 384)."""
    return REGISTER_FILE // threads // 8 * 8


def consumer_registers(consumers: int) -> int:
    """Registers per consumer thread once the producer has handed back all but PRODUCER_REGISTERS: the
    program's pool is what its launch got, and setmaxnreg.inc waits until the pool has them (asking for more
    would hang)."""
    threads = WARPGROUP * (consumers + 1)
    pool = launch_registers(threads) * threads
    return min(256, (pool - WARPGROUP * PRODUCER_REGISTERS) // (WARPGROUP * consumers) // 8 * 8)


def _initialise_barriers(emit: Emitter, ring: Ring, smem: SSAValue, tid: SSAValue, consumers: int) -> None:
    """Thread 0 initialises each stage's full (1 arrival: the producer's) and empty (one per consumer warp)
    mbarriers and fences them; a workgroup barrier publishes them before the roles split."""
    init = emit.at_end_of(Block())
    for stage in range(ring.stages):
        init(nvvm.MBarrierInitOp(shared_at(init, smem, ring.full(stage)), init.constant(1, i32)))
        releases = init.constant(RELEASES_PER_CONSUMER * consumers, i32)
        init(nvvm.MBarrierInitOp(shared_at(init, smem, ring.empty(stage)), releases))
    init(nvvm.FenceMbarrierInitOp())
    init(scf.YieldOp())
    emit(scf.IfOp(emit(arith.CmpiOp(tid, emit.constant(0, INDEX), "eq")), [], [init.block]))
    emit(gpu.BarrierOp())


def _move_rest_of_kernel(op: scf.ForOp, block: Block) -> None:
    """The ops after the loop (its epilogue, up to the kernel's return) moved to the end of `block`: the
    consumers' branch, where the accumulator is."""
    following = op.next_op
    while following is not None and not isinstance(following, gpu.ReturnOp):
        moved, following = following, following.next_op
        moved.detach()
        block.add_op(moved)


def declare_dynamic_shared(function: gpu.FuncOp) -> None:
    """The dynamic shared allocation every TMA kernel addresses, declared once in the module holding it: an
    external addrspace(3) array of 0 bytes (its size is the launch's), 1024-aligned."""
    block = function.parent_block()
    assert block is not None
    if any(isinstance(global_, llvm.GlobalOp) and global_.sym_name.data == DYNAMIC_SHARED for global_ in block.ops):
        return
    block.insert_op_before(dynamic_shared(), function)


def dynamic_shared() -> llvm.GlobalOp:
    """The dynamic shared allocation's declaration: an external addrspace(3) array of 0 bytes (a launch gives
    its size), 1024-aligned (the 128-byte swizzle repeats every 8 rows)."""
    array = llvm.LLVMArrayType(builtin.IntAttr(0), builtin.IntegerType(8))
    return llvm.GlobalOp(array, DYNAMIC_SHARED, "external", addr_space=3, alignment=SHARED_ALIGNMENT)


def shared_at(emit: Emitter, smem: SSAValue, offset: int | SSAValue) -> SSAValue:
    """The shared pointer `offset` bytes (a constant or an i32 value) past `smem`."""
    return emit(llvm.GEPOp.from_mixed_indices(smem, [offset], pointee_type=builtin.IntegerType(8), result_type=SHARED))


def _stage_and_parity(emit: Emitter, k_block: SSAValue, stages: int) -> tuple[SSAValue, SSAValue]:
    """(stage as i32, parity of its round as i32) of a k-block (index): kb mod stages, (kb / stages) & 1."""
    stage = emit(arith.RemUIOp(k_block, emit.constant(stages, INDEX)))
    round_ = emit(arith.DivUIOp(k_block, emit.constant(stages, INDEX)))
    parity = emit(arith.AndIOp(round_, emit.constant(1, INDEX)))
    return emit(arith.IndexCastOp(stage, i32)), emit(arith.IndexCastOp(parity, i32))


def _barrier(emit: Emitter, smem: SSAValue, first: int, stage: SSAValue) -> SSAValue:
    """The mbarrier of `stage` in the array of them that starts at byte `first`."""
    offset = emit(
        arith.AddiOp(emit.constant(first, i32), emit(arith.MuliOp(stage, emit.constant(MBARRIER_BYTES, i32))))
    )
    return shared_at(emit, smem, offset)


def _wait(emit: Emitter, barrier: SSAValue, parity: SSAValue) -> None:
    emit(nvvm.MBarrierTryWaitParityOp(barrier, parity, emit.constant(WAIT_HINT_NS, i32)))


def _tensor_map(load: tile.LoadOp) -> SSAValue:
    """The CUtensorMap parameter of an async load's buffer (LowerKernel's unrealized cast of it)."""
    cast = load.memref.owner
    assert isinstance(cast, builtin.UnrealizedConversionCastOp), "a buffer of a lowered kernel"
    return cast.inputs[0]


def _produce(emit: Emitter, parts: _Loop, ring: Ring, smem: SSAValue) -> None:
    """The producer's issuing thread: per k-block, once its stage is released, both operands' boxes into it."""
    body = Block(arg_types=[INDEX])
    inner = emit.at_end_of(body)
    k_block = body.args[0]
    stage, parity = _stage_and_parity(inner, k_block, ring.stages)
    released = inner(arith.XOrIOp(parity, inner.constant(1, i32)))
    _wait(inner, _barrier(inner, smem, ring.empty(0), stage), released)
    full = _barrier(inner, smem, ring.full(0), stage)
    inner(nvvm.MBarrierArriveExpectTxOp(full, inner.constant(ring.a_bytes + ring.b_bytes, i32)))
    k = inner(arith.IndexCastOp(inner(arith.MuliOp(k_block, inner.constant(parts.block_k, INDEX))), i32))
    for load, first, tile_bytes in (
        (parts.a, ring.a_offset(0), ring.a_bytes),
        (parts.b, ring.b_offset(0), ring.b_bytes),
    ):
        offset = inner(
            arith.AddiOp(inner.constant(first, i32), inner(arith.MuliOp(stage, inner.constant(tile_bytes, i32))))
        )
        destination = inner(AddrSpaceCastOp(shared_at(inner, smem, offset), SHARED_CLUSTER))
        row = emit(arith.IndexCastOp(load.indices[0], i32))
        inner(nvvm.CpAsyncBulkTensorSharedClusterGlobalOp(destination, _tensor_map(load), [k, row], full))
    inner(scf.YieldOp())
    emit(scf.ForOp(emit.constant(0, INDEX), emit.constant(parts.k_blocks, INDEX), emit.constant(1, INDEX), [], body))


def descriptor_of(emit: Emitter, address: SSAValue, leading_bytes: int = 16) -> SSAValue:
    """The WGMMA descriptor (i64) of an operand at a shared address (i32): 128-byte swizzle, stride 1024, the
    leading byte offset given (unused by a K-major operand; an MN-major one's atom stride)."""
    start = emit(arith.ShRUIOp(emit(arith.AndIOp(address, emit.constant(0x3FFFF, i32))), emit.constant(4, i32)))
    return emit(arith.OrIOp(emit(arith.ExtUIOp(start, i64)), emit.constant(smem_descriptor(0, leading_bytes), i64)))


def advance(emit: Emitter, descriptor: SSAValue, units: int | SSAValue) -> SSAValue:
    """A descriptor whose start address is `units` x 16 bytes later."""
    if isinstance(units, int):
        if units == 0:
            return descriptor
        units = emit.constant(units, i64)
    return emit(arith.AddiOp(descriptor, units))


def _consume(emit: Emitter, parts: _Loop, ring: Ring, smem: SSAValue, tid: SSAValue,
             warpgroup: SSAValue) -> list[SSAValue]:  # fmt: skip
    """A consumer warpgroup's WGMMAs over every k-block as it lands; its accumulator structs."""
    layout = parts.layout
    base = emit(llvm.PtrToIntOp(smem, i32))
    rows = emit(
        arith.MuliOp(emit(arith.IndexCastOp(warpgroup, i32)), emit.constant(layout.instruction.m * SWIZZLE_BYTES, i32))
    )
    a_descriptor = descriptor_of(
        emit, emit(arith.AddiOp(emit(arith.AddiOp(base, emit.constant(ring.a_offset(0), i32))), rows))
    )
    b_descriptor = descriptor_of(emit, emit(arith.AddiOp(base, emit.constant(ring.b_offset(0), i32))))
    lane = emit(arith.RemUIOp(tid, emit.constant(32, INDEX)))
    leader = emit(arith.CmpiOp(lane, emit.constant(0, INDEX), "eq"))
    struct = llvm.LLVMStructType.from_type_list([builtin.f32] * layout.registers)
    chunks = layout.shape[1] // layout.instruction.n
    unset = emit(llvm.UndefOp(struct))
    descriptors = (a_descriptor, b_descriptor)
    first = _k_block(emit, parts, ring, smem, emit.constant(0, INDEX), [unset] * chunks, descriptors, leader, True)
    results = first
    if parts.k_blocks > 1:
        body = Block(arg_types=[INDEX, *([struct] * chunks)])
        inner = emit.at_end_of(body)
        following = _k_block(inner, parts, ring, smem, body.args[0], list(body.args[1:]), descriptors, leader, False)
        inner(scf.YieldOp(*following))
        loop = scf.ForOp(
            emit.constant(1, INDEX), emit.constant(parts.k_blocks, INDEX), emit.constant(1, INDEX), first, body
        )
        emit(loop)
        results = list(loop.results)
    # The epilogue reads the accumulators: every group done, and the last k-block's stage released.
    emit(nvvm.WgmmaWaitGroupSyncAlignedOp(0))
    _release(emit, smem, ring, emit.constant((parts.k_blocks - 1) % ring.stages, i32), leader)
    return results


def _k_block(emit: Emitter, parts: _Loop, ring: Ring, smem: SSAValue, k_block: SSAValue, accumulators: list[SSAValue],
             descriptors: tuple[SSAValue, SSAValue], leader: SSAValue, first: bool) -> list[SSAValue]:  # fmt: skip
    """One k-block of a consumer: wait for its stage, block_k / 16 K-steps of WGMMAs, release the stage."""
    layout = parts.layout
    stage, parity = _stage_and_parity(emit, k_block, ring.stages)
    _wait(emit, _barrier(emit, smem, ring.full(0), stage), parity)
    stage_wide = emit(arith.ExtUIOp(stage, i64))
    a_stage = advance(emit, descriptors[0], emit(arith.MuliOp(stage_wide, emit.constant(ring.a_bytes >> 4, i64))))
    b_stage = advance(emit, descriptors[1], emit(arith.MuliOp(stage_wide, emit.constant(ring.b_bytes >> 4, i64))))
    emit(nvvm.WgmmaFenceAlignedOp())
    accumulators = list(accumulators)
    n = layout.instruction.n
    for step in range(parts.block_k // WGMMA_K):
        k_units = step * K_STEP_BYTES >> 4
        a = advance(emit, a_stage, k_units)
        for chunk in range(len(accumulators)):
            b = advance(emit, b_stage, (chunk * n * SWIZZLE_BYTES >> 4) + k_units)
            scale_d = "zero" if first and step == 0 else "one"
            accumulators[chunk] = emit(
                nvvm.WgmmaMmaAsyncOp(accumulators[chunk], a, b, (layout.instruction.m, n, WGMMA_K), scale_d=scale_d)
            )
    emit(nvvm.WgmmaCommitGroupSyncAlignedOp())
    # One group stays in flight while the next k-block is waited for and issued: once at most this one is
    # pending, the previous k-block's WGMMAs have read their stage, which is released.
    emit(nvvm.WgmmaWaitGroupSyncAlignedOp(IN_FLIGHT))
    if not first:
        previous = emit(arith.SubiOp(k_block, emit.constant(1, INDEX)))
        _release(emit, smem, ring, _stage_and_parity(emit, previous, ring.stages)[0], leader)
    return accumulators


def _release(emit: Emitter, smem: SSAValue, ring: Ring, stage: SSAValue, leader: SSAValue) -> None:
    """Lane 0 of each warp of a consumer arrives on empty[stage]: its WGMMAs are done reading the stage."""
    release = emit.at_end_of(Block())
    release(nvvm.MBarrierArriveOp(_barrier(release, smem, ring.empty(0), stage)))
    release(scf.YieldOp())
    emit(scf.IfOp(leader, [], [release.block]))


def pipeline_ring(kernel: tile.KernelOp) -> Ring | None:
    """The shared-memory ring of a kernel's pipelined loop, read from Tile-IR (what its launch allocates and
    what Tile-IR's footprint counts); None for a kernel without one."""
    rings = []
    for op in kernel.body.walk():
        stages = tile.pipeline_stages(op)
        if stages is None:
            continue
        loads = [load for load in op.walk() if isinstance(load, tile.LoadOp) and load.is_async is not None]
        if len(loads) != 2:
            raise TileLoweringError(f"{kernel.name} @{kernel.sym_name.data}: a pipelined loop stages two operands")
        a, b = (load.tile_bytes() for load in loads)
        rings.append(Ring(stages, a, b))
    if len(rings) > 1:
        raise TileLoweringError(f"{kernel.name} @{kernel.sym_name.data}: one pipelined loop per kernel")
    return rings[0] if rings else None
