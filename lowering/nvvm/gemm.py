"""The Hopper (sm_90a) GEMM: y[M, N] (op)= row_scale[m] * (x[M, K] @ W[N, K]^T) + bias[n], as one gpu.func of
TMA loads, mbarriers and WGMMA. The semantics are kernels/gemm.py's: x bf16 [tokens, K] and W bf16
[N, K], both row-major (K contiguous: the K-major operands WGMMA reads without a transpose), optional bias
[N] f32 and row_scale [tokens] f32, y [tokens, N] f32 | bf16 (rounded to nearest even); epilogues "store"
y = v, "accumulate" y += v, "relu2" y = max(v, 0)^2, where v = row_scale[m] * acc + bias[n].

Launch (the Tile-IR plan of tiling/gpu.py `_matmul` for sm_90a: block 128 x 128 x 64, 3 stages,
384 threads): grid (ceil(N / 128), ceil(tokens / 128)); CTA (bx, by) computes y rows by*128 .. +128 and
columns bx*128 .. +128. Parameters, in order (lowering/nvvm/kernel_text.py):

    x_map, w_map       CUtensorMap grid constants (.param, 128 bytes, by value)
    [bias], [row_scale], y     global pointers
    tokens, position   i32 (position unused here, kept for the common ABI)

Tensor maps (host side, cuTensorMapEncodeTiled): bf16, rank 2, globalDim {K, rows} (rows = tokens for x,
N for W; x's may instead be encoded once for the buffer's row capacity: rows past `tokens` only reach
rows of y that are never stored), globalStrides {2K} bytes (so K % 8 == 0: TMA strides are multiples of
16 bytes), boxDim {64, 128}, elementStrides {1, 1}, INTERLEAVE_NONE, SWIZZLE_128B, OOB fill NONE (zeros).
A box past the tensor's end is zero-filled, and its full 16384 bytes still count as transferred bytes,
so the tails of M, N and K need no code: zero rows and zero K columns add nothing to the accumulators.

Dynamic shared memory (98352 bytes, `Sm90GemmPlan.shared_bytes`; one `@tessera_dynamic_smem` aligned to 1024):

    [0, 49152)         x stages: stage s at s * 16384, 128 rows x 64 bf16 (128 B per row), TMA-swizzled
    [49152, 98304)     W stages: stage s at 49152 + s * 16384, 128 rows x 64 bf16, TMA-swizzled
                       (98304 bytes: exactly the plan's operands "x" [3,128,64] and "weight" [3,128,64])
    [98304, 98328)     full[s] at 98304 + 8s: 3 mbarriers, "stage s holds data" (init count 1)
    [98328, 98352)     empty[s] at 98328 + 8s: 3 mbarriers, "stage s may be overwritten" (init count 8)

Every tile starts on a 1024-byte boundary (the 128-byte swizzle's period of 8 rows).

Warpgroups (128 threads each; warpgroup g = tid / 128):

- g = 0 is the producer; only its thread 0 works. Thread 0 also initializes the 6 mbarriers, then
  `fence.mbarrier_init` and a CTA barrier (bar.sync) publish them to every thread before the roles split.
  For k-block kb = 0 .. ceil(K/64)-1, with stage s = kb % 3 and round r = kb / 3, it waits on empty[s] for
  parity (r & 1) ^ 1, posts `mbarrier.arrive.expect_tx full[s], 32768` and issues the two 2-D TMA loads
  (`cp.async.bulk.tensor.2d...mbarrier::complete_tx::bytes`) of x box (k = kb*64, row = m0) and W box
  (k = kb*64, row = n0) into stage s, both completing on full[s].
- g = 1, 2 are consumers: consumer c = g - 1 owns rows c*64 .. +64 of the block and all 128 columns. Per
  kb it waits on full[s] for parity r & 1, then `wgmma.fence`; for each of the 4 K-steps of 16 it issues
  block_n / mma_n WGMMAs m64n{mma_n}k16 (bf16 x bf16 -> f32, D += A B; mma_n is the plan's, 64 from the
  arch table, so 2 per K-step; 128 gives one), then `wgmma.commit_group`, `wgmma.wait_group 0`, and lane
  0 of each of its 4 warps arrives on empty[s] (8 arrivals complete a phase of empty[s]). k-block 0 is
  peeled: its first K-step has scale-d 0 (D = A B), so the accumulators need no zeroing, which ptxas
  would otherwise see as register writes between WGMMAs and answer by serializing them.

Phase logic. An mbarrier starts in phase 0; a phase completes when its pending arrival count reaches 0
and its transaction count is 0, and the barrier moves to the next phase. `try_wait.parity P` returns
once the phase of parity P has completed, i.e. while the current phase's parity is not P; right after
init the current phase is 0, so waiting for parity 1 returns at once (the "previous" phase counts as
done). full[s] completes its phase r when round r of stage s has landed (the producer's one arrival plus
32768 transaction bytes from the two TMA loads); the consumer of k-block kb = 3r + s therefore waits for
parity r & 1. empty[s] completes its phase r when all 8 consumer warps have released round r; before
filling round r the producer needs round r - 1 released, parity (r - 1) & 1 = (r & 1) ^ 1, which for
r = 0 is parity 1, the free pass above. Neither side can get two phases ahead of the other on one
barrier (the producer waits for empty, the consumers for full), so one bit of parity is enough.
`stage_and_parity` is this arithmetic in Python; the test runs it in a randomized model of the barriers.

WGMMA shared-memory descriptors (64-bit; PTX ISA "Matrix Descriptor Format"):

    bits  0-13  start address >> 4 (shared-window byte address of the operand's first row, K offset)
    bits 16-29  leading dimension byte offset >> 4: for swizzled K-major operands it is not used; 1
    bits 32-45  stride dimension byte offset >> 4: 1024 bytes (64) between groups of 8 rows
    bits 49-51  base offset: 0, because every operand starts on a 1024-byte boundary of the pattern
    bits 62-63  swizzle mode: 1 = 128-byte swizzle, the same mode as the TMA boxes

TMA's 128-byte swizzle stores row r of a tile at byte r*128 with its 16-byte chunk j at chunk j XOR (r % 8),
a function of the shared address bits (4-6 XOR 7-9), and WGMMA applies that same function to the
addresses it derives from the descriptor: row r at start + (r / 8) * SBO + (r % 8) * 128. A K-step of 16
bf16 is 32 bytes, so K-step j adds 2 to the start-address field (bits 7-9 are untouched: base offset
stays 0). Consumer c's A starts at x stage s + c * 64 * 128 bytes; chunk h of B (columns h*mma_n ..) at
W stage s + h * mma_n * 128 bytes; `smem_descriptor` and `operand_byte_address` model this and the test
checks the two agree with the TMA layout.

Accumulator fragments (PTX ISA "Register Fragments" of wgmma .m64nNk16, f32 D): the result of one WGMMA
is N/2 f32 per thread. Warp w (0-3) of the warpgroup holds rows 16w .. 16w+15; lane l, register i
(0 .. N/2-1) holds row 16w + l/4 + 8 * ((i / 2) % 2) and column 8 * (i / 4) + 2 * (l % 4) + i % 2
(`accumulator_coordinate`): the mma.m16n8 C fragment repeated every 8 columns.

The epilogue reads bias at min(col, N-1) and row_scale at min(row, tokens-1) (always in bounds, used
only when the element is) and stores each element under row < tokens and col < N.

What a GPU run must still confirm is listed in lowering/nvvm/__init__.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tessera.errors import TesseraError
from tessera.lowering.nvvm.kernel_text import NvvmKernelBuilder
from tessera.lowering.rocdl.kernel_text import GpuKernel, Grid

WARPGROUP = 128
WGMMA_M, WGMMA_K = 64, 16
ELEMENT_BYTES = 2  # bf16
SWIZZLE_BYTES = 128
SWIZZLE_128B = 1  # the descriptor's layout-type field (bits 62-63)
K_STEP_BYTES = WGMMA_K * ELEMENT_BYTES  # one WGMMA's K extent within a 128-byte row: 32 bytes
CONSUMER_ROWS_BYTES = WGMMA_M * SWIZZLE_BYTES  # a consumer's 64 rows of A
MBARRIER_BYTES = 8
EMPTY_ARRIVALS_PER_CONSUMER = 4  # lane 0 of each warp of a consumer warpgroup
WAIT_HINT_NS = 10_000_000  # try_wait's suspend-time hint (CUTLASS's value)
EPILOGUES = ("store", "accumulate", "relu2")


@dataclass(frozen=True)
class Sm90GemmPlan:
    """The tiles of the Tile-IR plan and the shared-memory layout that follows from them."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 64
    stages: int = 3
    threads: int = 384
    mma_n: int = 128  # N of one WGMMA; a consumer issues block_n / mma_n of them per K-step

    @classmethod
    def from_tiles(cls, tiles: Mapping[str, int | float | str]) -> Sm90GemmPlan:
        def get(key: str, default: int) -> int:
            return int(tiles.get(key, default))

        plan = cls(
            get("block_m", 128),
            get("block_n", 128),
            get("block_k", 64),
            get("stages", 3),
            get("threads", 384),
            get("mma_n", get("block_n", 128)),
        )
        plan.check()
        return plan

    def check(self) -> None:
        """The shapes this kernel is written for (internal: the tiling policy chooses them)."""
        consumers_fit = self.threads == WARPGROUP * (1 + self.consumers)
        mma_n_fits = self.block_n % self.mma_n == 0 and self.mma_n % 8 == 0 and self.mma_n <= 256
        rules = {
            "block_k * 2 bytes is one 128-byte swizzle row": self.block_k * ELEMENT_BYTES == SWIZZLE_BYTES,
            "block_m is whole 64-row consumer warpgroups": self.block_m % WGMMA_M == 0,
            "threads = one producer + one consumer warpgroup per 64 rows": consumers_fit,
            "mma_n divides block_n, a multiple of 8 up to 256": mma_n_fits,
            "a TMA box has at most 256 rows": self.block_m <= 256 and self.block_n <= 256,
            "at least one stage": self.stages >= 1,
        }
        broken = [rule for rule, holds in rules.items() if not holds]
        if broken:
            raise AssertionError(f"sm_90a GEMM plan {self}: {'; '.join(broken)}")

    @property
    def consumers(self) -> int:
        return self.block_m // WGMMA_M

    @property
    def x_tile_bytes(self) -> int:
        return self.block_m * self.block_k * ELEMENT_BYTES

    @property
    def w_tile_bytes(self) -> int:
        return self.block_n * self.block_k * ELEMENT_BYTES

    def x_offset(self, stage: int) -> int:
        return stage * self.x_tile_bytes

    def w_offset(self, stage: int) -> int:
        return self.stages * self.x_tile_bytes + stage * self.w_tile_bytes

    @property
    def operand_bytes(self) -> int:
        """The plan's shared-memory operands: x [stages, block_m, block_k] and W [stages, block_n, block_k]."""
        return self.stages * (self.x_tile_bytes + self.w_tile_bytes)

    def full_barrier(self, stage: int) -> int:
        return self.operand_bytes + MBARRIER_BYTES * stage

    def empty_barrier(self, stage: int) -> int:
        return self.operand_bytes + MBARRIER_BYTES * (self.stages + stage)

    @property
    def shared_bytes(self) -> int:
        """Dynamic shared memory of a launch: the operand stages, then 2 mbarriers per stage."""
        return self.operand_bytes + 2 * self.stages * MBARRIER_BYTES

    @property
    def empty_arrivals(self) -> int:
        return self.consumers * EMPTY_ARRIVALS_PER_CONSUMER

    @property
    def accumulator(self) -> str:
        """The LLVM struct of one WGMMA's f32 accumulator fragment (mma_n / 2 registers per thread)."""
        return "!llvm.struct<(" + ", ".join(["f32"] * (self.mma_n // 2)) + ")>"


# --- descriptors and fragments, as plain functions (the emitter and the tests share them) -------------


def smem_descriptor(
    address: int, leading_bytes: int = 16, stride_bytes: int = 1024, swizzle: int = SWIZZLE_128B
) -> int:
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


def a_operand_offset(plan: Sm90GemmPlan, stage: int, consumer: int, step: int) -> int:
    """Byte offset from the shared base of consumer's A (64 rows x 16 K) at K-step `step` of `stage`: the
    terms the kernel's descriptor arithmetic adds (base, consumer rows, stage, K-step)."""
    return plan.x_offset(0) + consumer * CONSUMER_ROWS_BYTES + stage * plan.x_tile_bytes + step * K_STEP_BYTES


def b_operand_offset(plan: Sm90GemmPlan, stage: int, chunk: int, step: int) -> int:
    """Byte offset from the shared base of N chunk `chunk` of B (mma_n rows x 16 K) at K-step `step`."""
    return plan.w_offset(0) + stage * plan.w_tile_bytes + chunk * plan.mma_n * SWIZZLE_BYTES + step * K_STEP_BYTES


def accumulator_coordinate(warp: int, lane: int, register: int) -> tuple[int, int]:
    """(row, column) in a warpgroup's 64 x N WGMMA result of f32 register `register` of `lane` in `warp`."""
    row = 16 * warp + lane // 4 + 8 * ((register // 2) % 2)
    column = 8 * (register // 4) + 2 * (lane % 4) + register % 2
    return row, column


def stage_and_parity(k_block: int, stages: int) -> tuple[int, int, int]:
    """(stage, parity a consumer waits on full[stage] for, parity the producer waits on empty[stage] for)
    of a k-block: the arithmetic the kernel does in MLIR (`_stage_and_parity`)."""
    round_ = k_block // stages
    return k_block % stages, round_ & 1, (round_ & 1) ^ 1


# --- the kernel ------------------------------------------------------------------------------------------


def emit_gemm_sm90(
    name: str,
    n: int,
    k: int,
    bias: bool,
    row_scale: bool,
    epilogue: str,
    y_dtype: str,
    tiles: Mapping[str, int | float | str],
) -> str:
    """The gpu.func text of the sm_90a GEMM (put it in lowering.nvvm.kernel_text.kernels_module)."""
    return gemm_sm90_kernel(name, n, k, bias, row_scale, epilogue, y_dtype, tiles).text


def gemm_sm90_kernel(
    name: str,
    n: int,
    k: int,
    bias: bool,
    row_scale: bool,
    epilogue: str,
    y_dtype: str,
    tiles: Mapping[str, int | float | str],
) -> GpuKernel:
    """The kernel with its launch geometry (lds_bytes: the dynamic shared memory of a launch)."""
    if k % 8 != 0 or k <= 0 or n <= 0:
        raise TesseraError(
            f"{name}: the sm_90a GEMM needs K a positive multiple of 8 (TMA rows are 16-byte multiples) "
            f"and N > 0, got N={n}, K={k}"
        )
    if epilogue not in EPILOGUES:
        raise TesseraError(f"{name}: unknown GEMM epilogue '{epilogue}' (known: {', '.join(EPILOGUES)})")
    if y_dtype not in ("f32", "bf16"):
        raise TesseraError(f"{name}: y must be f32 or bf16, got {y_dtype}")
    plan = Sm90GemmPlan.from_tiles(tiles)
    operands = ["x_map", "w_map", *(["bias"] if bias else []), *(["row_scale"] if row_scale else []), "y"]
    b = NvvmKernelBuilder(name, operands, ["x_map", "w_map"], plan.threads)

    tid = b.thread_id()
    n0 = b.mul(b.block_id("x"), b.index(plan.block_n))
    m0 = b.mul(b.block_id("y"), b.index(plan.block_m))
    warpgroup = b.div(tid, b.index(WARPGROUP))
    smem = b.shared_base()

    first = b.let("p", f"arith.cmpi eq, {tid}, {b.index(0)} : index")
    with b.if_else(first):
        for stage in range(plan.stages):
            full, empty = b.shared_at(smem, plan.full_barrier(stage)), b.shared_at(smem, plan.empty_barrier(stage))
            b.emit(f"nvvm.mbarrier.init {full}, {b.i32(1)} : !llvm.ptr<3>, i32")
            b.emit(f"nvvm.mbarrier.init {empty}, {b.i32(plan.empty_arrivals)} : !llvm.ptr<3>, i32")
        b.emit("nvvm.fence.mbarrier.init")
    b.barrier()

    k_blocks = -(-k // plan.block_k)
    producer = b.let("p", f"arith.cmpi eq, {warpgroup}, {b.index(0)} : index")
    with b.if_else(producer) as otherwise:
        with b.if_else(first):
            _produce(b, plan, smem, k_blocks, m0, n0)
        otherwise()
        consumer = b.add(warpgroup, b.index(-1))
        accumulators = _consume(b, plan, smem, k_blocks, tid, consumer)
        _epilogue(b, plan, accumulators, tid, consumer, m0, n0, n, bias, row_scale, epilogue, y_dtype)
    grid = Grid(x=(n, plan.block_n), y=("tokens", plan.block_m))
    return GpuKernel(name, b.render(), plan.threads, grid, plan.shared_bytes)


def _stage_and_parity(b: NvvmKernelBuilder, plan: Sm90GemmPlan, k_block: str) -> tuple[str, str]:
    """(stage as i32, parity of the round as i32) of a k-block: kb % stages, (kb / stages) & 1."""
    stage = b.to_i32(b.rem(k_block, b.index(plan.stages)))
    parity = b.to_i32(b.rem(b.div(k_block, b.index(plan.stages)), b.index(2)))
    return stage, parity


def _barrier(b: NvvmKernelBuilder, smem: str, first: int, stage: str) -> str:
    """The mbarrier of `stage` in the array of them that starts at byte `first`."""
    offset = b.add(b.i32(first), b.mul(stage, b.i32(MBARRIER_BYTES), "i32"), "i32")
    return b.shared_at(smem, offset)


def _wait(b: NvvmKernelBuilder, barrier: str, parity: str) -> None:
    b.emit(f"nvvm.mbarrier.try_wait.parity {barrier}, {parity}, {b.i32(WAIT_HINT_NS)} : !llvm.ptr<3>, i32, i32")


def _produce(b: NvvmKernelBuilder, plan: Sm90GemmPlan, smem: str, k_blocks: int, m0: str, n0: str) -> None:
    """Thread 0: fill stage kb % stages with the x and W boxes of every k-block, once it is empty."""
    rows_x, rows_w = b.to_i32(m0), b.to_i32(n0)
    with b.loop(b.index(0), b.index(k_blocks), b.index(1)) as loop:
        stage, parity = _stage_and_parity(b, plan, loop.iv)
        released = b.let("o", f"arith.xori {parity}, {b.i32(1)} : i32")
        _wait(b, _barrier(b, smem, plan.empty_barrier(0), stage), released)
        full = _barrier(b, smem, plan.full_barrier(0), stage)
        b.emit(
            f"nvvm.mbarrier.arrive.expect_tx {full}, {b.i32(plan.x_tile_bytes + plan.w_tile_bytes)} : !llvm.ptr<3>, i32"
        )
        k0 = b.to_i32(b.mul(loop.iv, b.index(plan.block_k)))
        for tensor_map, first, tile_bytes, rows in (
            ("x_map", plan.x_offset(0), plan.x_tile_bytes, rows_x),
            ("w_map", plan.w_offset(0), plan.w_tile_bytes, rows_w),
        ):
            offset = b.add(b.i32(first), b.mul(stage, b.i32(tile_bytes), "i32"), "i32")
            destination = b.to_cluster(b.shared_at(smem, offset))
            b.emit(
                f"nvvm.cp.async.bulk.tensor.shared.cluster.global {destination}, {b.arg(tensor_map)}, {full}, "
                f"box[{k0}, {rows}] : !llvm.ptr<7>, !llvm.ptr"
            )


def _descriptor(b: NvvmKernelBuilder, address: str) -> str:
    """The WGMMA descriptor (i64) of an operand at a shared address (i32), 128-byte swizzle, SBO 1024."""
    start = b.let("d", f"arith.andi {address}, {b.i32(0x3FFFF)} : i32")
    units = b.let("d", f"arith.shrui {start}, {b.i32(4)} : i32")
    wide = b.let("d", f"arith.extui {units} : i32 to i64")
    return b.let("d", f"arith.ori {wide}, {b.const(str(smem_descriptor(0)), 'i64')} : i64")


def _advance(b: NvvmKernelBuilder, descriptor: str, units: str | int) -> str:
    """A descriptor whose start address is `units` x 16 bytes later (an i64 value or a constant)."""
    if isinstance(units, int):
        if units == 0:
            return descriptor
        units = b.const(str(units), "i64")
    return b.let("d", f"arith.addi {descriptor}, {units} : i64")


def _consume(b: NvvmKernelBuilder, plan: Sm90GemmPlan, smem: str, k_blocks: int, tid: str, consumer: str) -> list[str]:
    """A consumer warpgroup: WGMMA over every k-block as it lands; returns its accumulator structs."""
    lane = b.rem(tid, b.index(32))
    base = b.shared_address(smem)
    a_rows = b.mul(b.to_i32(consumer), b.i32(CONSUMER_ROWS_BYTES), "i32")
    a_start = b.add(b.add(base, b.i32(plan.x_offset(0)), "i32"), a_rows, "i32")
    a_descriptor = _descriptor(b, a_start)
    b_descriptor = _descriptor(b, b.add(base, b.i32(plan.w_offset(0)), "i32"))
    chunks = plan.block_n // plan.mma_n
    leader = b.let("p", f"arith.cmpi eq, {lane}, {b.index(0)} : index")
    # k-block 0 is peeled: its first K-step overwrites the accumulators (scale-d 0), so they need no zero
    # registers first (zeros written between WGMMAs would make ptxas serialize them).
    unset = b.let("acc", f"llvm.mlir.poison : {plan.accumulator}")
    first = _k_block(b, plan, smem, b.index(0), [unset] * chunks, a_descriptor, b_descriptor, leader, True)
    with b.loop(b.index(1), b.index(k_blocks), b.index(1), [(acc, plan.accumulator) for acc in first]) as loop:
        loop.yield_(*_k_block(b, plan, smem, loop.iv, loop.args, a_descriptor, b_descriptor, leader, False))
    return loop.results


def _k_block(
    b: NvvmKernelBuilder,
    plan: Sm90GemmPlan,
    smem: str,
    k_block: str,
    accumulators: list[str],
    a_descriptor: str,
    b_descriptor: str,
    leader: str,
    first: bool,
) -> list[str]:
    """One k-block of a consumer: wait for its stage, block_k / 16 K-steps of WGMMAs, release the stage."""
    stage, parity = _stage_and_parity(b, plan, k_block)
    _wait(b, _barrier(b, smem, plan.full_barrier(0), stage), parity)
    stage_wide = b.let("d", f"arith.extui {stage} : i32 to i64")
    a_stage = _advance(b, a_descriptor, b.mul(stage_wide, b.const(str(plan.x_tile_bytes >> 4), "i64"), "i64"))
    b_stage = _advance(b, b_descriptor, b.mul(stage_wide, b.const(str(plan.w_tile_bytes >> 4), "i64"), "i64"))
    b.emit("nvvm.wgmma.fence.aligned")
    accumulators = list(accumulators)
    shape = f"#nvvm.shape<m = {WGMMA_M}, n = {plan.mma_n}, k = {WGMMA_K}>"
    for step in range(plan.block_k // WGMMA_K):
        k_units = step * K_STEP_BYTES >> 4
        a = _advance(b, a_stage, k_units)
        scale_d = "zero" if first and step == 0 else "one"
        for chunk in range(len(accumulators)):
            w = _advance(b, b_stage, (chunk * plan.mma_n * SWIZZLE_BYTES >> 4) + k_units)
            accumulators[chunk] = b.let(
                "acc",
                f"nvvm.wgmma.mma_async {a}, {w}, {accumulators[chunk]}, {shape}, D[<f32>, <{scale_d}>, <wrapped>], "
                f"A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>] : {plan.accumulator} -> {plan.accumulator}",
            )
    b.emit("nvvm.wgmma.commit.group.sync.aligned")
    b.emit("nvvm.wgmma.wait.group.sync.aligned 0")
    with b.if_else(leader):
        b.emit(f"nvvm.mbarrier.arrive {_barrier(b, smem, plan.empty_barrier(0), stage)} : !llvm.ptr<3>")
    return accumulators


def _epilogue(
    b: NvvmKernelBuilder,
    plan: Sm90GemmPlan,
    accumulators: list[str],
    tid: str,
    consumer: str,
    m0: str,
    n0: str,
    n: int,
    bias: bool,
    row_scale: bool,
    epilogue: str,
    y_dtype: str,
) -> None:
    """Each thread's fragment elements, scaled, biased and combined with y, stored where inside y."""
    lane = b.rem(tid, b.index(32))
    warp = b.rem(b.div(tid, b.index(32)), b.index(4))
    tokens = b.to_index(b.tokens)
    row_base = b.add(
        b.add(m0, b.mul(consumer, b.index(WGMMA_M))), b.add(b.mul(warp, b.index(16)), b.div(lane, b.index(4)))
    )
    col_base = b.add(n0, b.mul(b.rem(lane, b.index(4)), b.index(2)))
    rows, row_inside, row_scales = [], [], []
    for half in range(2):
        row = b.add(row_base, b.index(8 * half))
        rows.append(row)
        row_inside.append(b.lt(row, tokens))
        if row_scale:
            last = b.add(tokens, b.index(-1))
            row_scales.append(b.gload("row_scale", b.to_i32(b.min_(row, last))))
    for chunk, accumulator in enumerate(accumulators):
        for column_group in range(plan.mma_n // 8):
            for pair in range(2):
                col = b.add(col_base, b.index(chunk * plan.mma_n + 8 * column_group + pair))
                col_inside = b.lt(col, b.index(n))
                bias_value = b.gload("bias", b.to_i32(b.min_(col, b.index(n - 1)))) if bias else None
                for half in range(2):
                    register = 4 * column_group + 2 * half + pair
                    inside = b.let("p", f"arith.andi {row_inside[half]}, {col_inside} : i1")
                    with b.if_else(inside):
                        value = b.let("v", f"llvm.extractvalue {accumulator}[{register}] : {plan.accumulator}")
                        if row_scale:
                            value = b.fmul(value, row_scales[half])
                        if bias_value is not None:
                            value = b.fadd(value, bias_value)
                        offset = b.to_i32(b.add(b.mul(rows[half], b.index(n)), col))
                        b.store_epilogue(value, "y", offset, epilogue, y_dtype)
