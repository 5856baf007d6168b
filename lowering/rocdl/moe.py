"""ROCDL kernels: moe (tiles: tiling/gpu_moe.py). moe_experts, the routed experts of an MoE layer,
expert-major, with the semantics of the x86 kernel (lowering/x86/moe.py, moe_expert_outputs):

    for every slot (t, j) with ids[t, j] == e:  contrib[t, j*L:(j+1)*L] = down[e] @ relu(up[e] @ x[t])^2

Notation: E experts, K = top_k, F = ffn, L = latent, T = %tokens; slot (t, j) has the number s = t*K + j,
so its x row is s / K and its contrib row starts at element s*L. No other contrib element is written (an
id outside [0, E) matches no expert), as on x86; moe_combine reads the slots of valid ids, all written.

Operands (launch order = the step's ins, then outs): x [T, L] (f32 | bf16), ids [T, K] i64, experts_up
[E, F, L], experts_down [E, L, F] (both row-major as in Schedule-IR, held as the matrix element: bf16 under
precision bf16, f32 under fp32), contrib [T, K*L] f32.

Grid: x = the expert e, y = the token group p, tokens [p*P, min((p+1)*P, T)) with P = tokens_per_group.
Every slot belongs to one workgroup, so no two write the same contrib element. 8 waves (512 threads).

1. Slots. The group's slots routed to e are listed in LDS `slots`, in slot order: per scan step the threads
   read 512 consecutive ids (one each); a wave ranks its matches with ballot + mbcnt, the waves' counts pass
   through `slot_counts`, and a match writes its slot number at pending + (earlier waves' matches) + rank.
   Scan steps repeat until 16 slots are pending or the group is scanned; then a block of n = min(16,
   pending) rows is computed, the list moves down by 16, and so on until nothing is pending.
2. Up product, transposed so that its accumulators are already the down product's A operand:
   Hᵀ[f, r] = sum_k up[e, f, k] x[r, k]. Per K block (block_k columns) thread i stages one 16-byte vector
   of row i / (block_k / G) of the block's x rows into LDS `x` (as the matrix element; zeros for rows >= n
   and columns >= L); then MFMA with A = up rows, read straight from global memory, and B = x from LDS.
   ffn is cut into groups of 4G (G = 16 bytes / element: 8 bf16, 4 f32); wave w owns groups w, w + 8,
   ... and keeps their accumulators through the whole K loop.
   Lane vectors: lane l = (q, c), q = l / 16, c = l % 16, holds G consecutive elements [Gq, Gq + G) of a
   step of 4G along K. The instruction's k index is matched to them the same way for A and B, so that it
   sums over the same k: bf16 (16x16x16, 4 k per lane) issues two instructions per step, the s-th taking
   elements [4s, 4s + 4) (its kk = 4q + i is k = Gq + 4s + i); f32 (16x16x4, 1 k per lane) issues four,
   the s-th taking element s (its kk = q is k = 4q + s).
   In a group (first row f0) tile u (0 <= u < G/4) gives its A row m the ffn row f0 + G (m / 4) + 4u + m % 4,
   so that the accumulator lane (q, c) — element i is D[4q + i][c] — holds H[c, f0 + Gq + 4u + i]: the G
   values of one lane over its tiles are the ffn columns f0 + Gq + [0, G) of token row c.
3. Down product OUT[r, l] = sum_f H[r, f] down[e, l, f] with H = relu(Hᵀ)^2 kept in registers (rounded to
   bf16 under bf16). Lane (q, n) loads the B vector down[e, l0 + n, f0 + Gq + [0, G)]; bf16: tile u is the
   A fragment as it stands (A[c][4q + i] = H[c, f0 + Gq + 4u + i]) against B elements [4u, 4u + 4);
   f32: the s-th of four instructions takes accumulator element s (A[c][q] = H[c, f0 + 4q + s]) and B
   element s. A wave sums over its own ffn groups only, block_l = 32 columns (2 tiles) at a time, into
   LDS `partial[w]` (D lane (q, n): rows 4q + i, column n); after a barrier thread i adds row i / 32,
   column i % 32 over the 8 waves (in wave order) and stores it at contrib[s*L + l] for the row's slot s,
   when the row is one of the n and l < L.
Rows past n, ffn rows past F and latent columns past L are zeros in both products (their loads are
predicated to zero; predicates are emitted only where the dimensions leave a partial tile), so they add
nothing; outputs past n or L are not stored. Global offsets are i32 element indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tessera.lowering.mlir_text import f32_to_bf16_bits
from tessera.lowering.rocdl import mfma
from tessera.lowering.rocdl.kernel_text import GLOBAL, GpuKernel, GpuKernelBuilder, Grid, KernelInfo

WAVE = 64
ROWS = 16
OPERANDS = ["x", "ids", "experts_up", "experts_down", "contrib"]
_STORAGE = {"f32": "f32", "bf16": "i16"}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class _Plan:
    """The kernel's dimensions and tiles, and what follows from them."""

    experts: int
    top_k: int
    ffn: int
    latent: int
    x_dtype: str
    element: str  # of the matrix operands, and of the weights in memory
    threads: int
    block_k: int
    block_l: int
    group: int  # G: elements of one 16-byte lane vector
    tokens_per_group: int
    capacity: int

    @property
    def waves(self) -> int:
        return self.threads // WAVE

    @property
    def span(self) -> int:
        """Elements of one step along K (and of one ffn group): 4 lanes of G."""
        return 4 * self.group

    @property
    def stride(self) -> int:
        """ffn rows from one of a wave's groups to its next."""
        return self.waves * self.span

    @property
    def groups_per_wave(self) -> int:
        return _ceil_div(_ceil_div(self.ffn, self.span), self.waves)

    @property
    def tiles_per_group(self) -> int:
        return self.group // 4

    @property
    def storage(self) -> str:
        return _STORAGE[self.element]

    @property
    def vector(self) -> str:
        """A lane vector of the matrix element, as stored."""
        return f"vector<{self.group}x{self.storage}>"


def emit_moe_experts(info: KernelInfo) -> GpuKernel:
    element = info.mma_element or "f32"
    plan = _Plan(
        experts=info.dim("num_experts"),
        top_k=info.dim("top_k"),
        ffn=info.dim("ffn"),
        latent=info.dim("latent"),
        x_dtype=str(info.dims.get("x_dtype", "f32")),
        element=element,
        threads=info.tile("threads"),
        block_k=info.tile("block_k"),
        block_l=info.tile("block_l"),
        group=info.tile("group"),
        tokens_per_group=info.tile("tokens_per_group"),
        capacity=info.tile("slot_capacity"),
    )
    lds = {tile.name: tile for tile in info.lds}
    assert info.arch.wave_size == WAVE and plan.group * (2 if element == "bf16" else 4) == 16, (info.name, plan)
    assert plan.block_k * ROWS == plan.threads * plan.group and plan.block_l * ROWS == plan.threads, plan
    assert lds["x"].shape == (ROWS, plan.block_k) and lds["x"].element == element, lds["x"]
    assert lds["partial"].shape == (plan.waves, ROWS, plan.block_l) and lds["slot_counts"].shape == (plan.waves,)
    assert lds["slots"].shape == (plan.capacity,) and plan.capacity >= plan.threads + ROWS, lds["slots"]

    b = GpuKernelBuilder(info.name, OPERANDS, info.lds, plan.threads)
    _Kernel(b, plan, mfma.Mfma.for_element(info.arch, element)).emit()
    grid = Grid(x=(plan.experts, 1), y=("tokens", plan.tokens_per_group))
    return GpuKernel(info.name, b.render(), plan.threads, grid, sum(tile.bytes for tile in info.lds))


class _Kernel:
    """The kernel body: lane coordinates and the group's slot range, then the scan / block loop."""

    def __init__(self, b: GpuKernelBuilder, plan: _Plan, op: mfma.Mfma) -> None:
        self.b, self.plan, self.op = b, plan, op
        self.tid = b.thread_id()
        self.wave = b.div(self.tid, b.index(WAVE))
        self.lane = b.rem(self.tid, b.index(WAVE))
        self.lanes = mfma.WaveLanes(b, self.lane)
        self.expert = b.to_i32(b.block_id("x"))
        self.expert_id = b.let("e", f"arith.extui {self.expert} : i32 to i64")
        first = b.mul(b.block_id("y"), b.index(plan.tokens_per_group))
        last = b.min_(b.add(first, b.index(plan.tokens_per_group)), b.to_index(b.tokens))
        self.scan_start = b.mul(first, b.index(plan.top_k))
        self.scan_end = b.mul(last, b.index(plan.top_k))

    # --- small helpers ---------------------------------------------------------------------------------------

    def i32(self, value: str) -> str:
        return self.b.to_i32(value)

    def add32(self, x: str, y: str) -> str:
        return self.b.add(x, y, "i32")

    def mul32(self, x: str, y: str) -> str:
        return self.b.mul(x, y, "i32")

    def select(self, cond: str, x: str, y: str, type_: str) -> str:
        return self.b.let("s", f"arith.select {cond}, {x}, {y} : {type_}")

    def both(self, x: str | None, y: str | None) -> str | None:
        """x and y, where None is true."""
        if x is None or y is None:
            return y if x is None else x
        return self.b.let("p", f"arith.andi {x}, {y} : i1")

    def zeros(self) -> str:
        return self.b.const("0" if self.plan.element == "bf16" else "0.0", self.plan.vector)

    # --- 1. the slot list ------------------------------------------------------------------------------------

    def emit(self) -> None:
        """while ids are left to scan or slots pending: fill the list to 16, compute one block, shift."""
        b = self.b
        c0, c16 = b.index(0), b.index(ROWS)

        def more(args: list[str]) -> str:
            scanning, pending = b.lt(args[0], self.scan_end), b.lt(c0, args[1])
            return b.let("p", f"arith.ori {scanning}, {pending} : i1")

        def step(args: list[str]) -> list[str]:
            cursor, pending = self.fill(args[0], args[1])
            at_least = b.let("o", f"arith.maxui {pending}, {c16} : index")
            left = b.let("o", f"arith.subi {at_least}, {c16} : index")  # pending after this block
            with b.if_else(b.lt(c0, pending)):
                self.block(b.min_(pending, c16))
                with b.if_else(b.lt(c0, left)):
                    self.shift(left)
            return [cursor, left]

        _while(b, [(self.scan_start, "index"), (c0, "index")], more, step)

    def fill(self, cursor: str, pending: str) -> tuple[str, str]:
        """Scan steps while fewer than 16 slots are pending and ids are left; returns (cursor, pending)."""
        b = self.b

        def more(args: list[str]) -> str:
            condition = self.both(b.lt(args[1], b.index(ROWS)), b.lt(args[0], self.scan_end))
            assert condition is not None
            return condition

        cursor, pending = _while(b, [(cursor, "index"), (pending, "index")], more, lambda args: self.scan(*args))
        return cursor, pending

    def scan(self, cursor: str, pending: str) -> list[str]:
        """One scan step over the slots [cursor, cursor + threads): append the matches in slot order."""
        b, plan = self.b, self.plan
        slot = b.add(cursor, self.tid)
        inside = b.lt(slot, self.scan_end)
        slot32 = self.i32(slot)
        expert = b.gload("ids", self.select(inside, slot32, b.i32(0), "i32"), "i64")
        match = self.both(inside, b.let("p", f"arith.cmpi eq, {expert}, {self.expert_id} : i64"))
        assert match is not None
        mask = b.let("m", f"rocdl.ballot {match} : i64")
        low = b.let("m", f"arith.trunci {mask} : i64 to i32")
        shifted = b.let("m", f"arith.shrui {mask}, {b.const('32', 'i64')} : i64")
        high = b.let("m", f"arith.trunci {shifted} : i64 to i32")
        below = b.let("m", f"rocdl.mbcnt.lo {low}, {b.i32(0)} : (i32, i32) -> i32")
        rank = b.let("m", f"rocdl.mbcnt.hi {high}, {below} : (i32, i32) -> i32")
        population = b.let("m", f"math.ctpop {mask} : i64")
        count = b.let("m", f"arith.trunci {population} : i64 to i32")
        with b.if_else(b.let("p", f"arith.cmpi eq, {self.lane}, {b.index(0)} : index")):
            b.lds_store(_as_f32(b, count), "slot_counts", [self.wave])
        b.barrier()
        earlier, total = b.i32(0), b.i32(0)
        for wave in range(plan.waves):
            n = _as_i32(b, b.lds_load("slot_counts", [b.index(wave)]))
            total = self.add32(total, n)
            if wave < plan.waves - 1:
                earlier = self.add32(earlier, self.select(b.lt(b.index(wave), self.wave), n, b.i32(0), "i32"))
        with b.if_else(match):
            at = b.add(pending, b.to_index(self.add32(earlier, rank)))
            b.lds_store(_as_f32(b, slot32), "slots", [at])
        b.barrier()  # the list is complete, and every thread has read slot_counts
        return [b.add(cursor, b.index(plan.threads)), b.add(pending, b.to_index(total))]

    def shift(self, left: str) -> None:
        """slots[0, left) = slots[16, 16 + left) (left < threads): all read, a barrier, then the writes."""
        b = self.b
        value = b.lds_load("slots", [b.add(self.tid, b.index(ROWS))])
        b.barrier()
        with b.if_else(b.lt(self.tid, left)):
            b.lds_store(value, "slots", [self.tid])
        b.barrier()

    # --- 2. and 3.: one block of n <= 16 rows ----------------------------------------------------------------

    def block(self, n: str) -> None:
        b, plan = self.b, self.plan
        # This thread stages x row stage_row, columns stage_col + [0, G) of each K block, and sums output row
        # sum_row, column sum_col of each output block.
        per_row = plan.block_k // plan.group
        stage_row = b.div(self.tid, b.index(per_row))
        stage_col = b.mul(b.rem(self.tid, b.index(per_row)), b.index(plan.group))
        sum_row, sum_col = b.div(self.tid, b.index(plan.block_l)), b.rem(self.tid, b.index(plan.block_l))
        stage_slot = _as_i32(b, b.lds_load("slots", [stage_row]))
        x_row = self.mul32(b.div(stage_slot, b.i32(plan.top_k), "i32"), b.i32(plan.latent))
        out_row = self.mul32(_as_i32(b, b.lds_load("slots", [sum_row])), b.i32(plan.latent))
        hidden = self.up(_Staging(b.lt(stage_row, n), x_row, stage_row, stage_col))
        fragments = [self.activate(acc) for acc in hidden]
        self.down(fragments, b.lt(sum_row, n), out_row, sum_row, sum_col)

    def up(self, staging: _Staging) -> list[str]:
        """Hᵀ of the block: the accumulators of this wave's ffn tiles, (group m, tile u) at m*G/4 + u."""
        b, plan, lanes = self.b, self.plan, self.lanes
        tiles = plan.groups_per_wave * plan.tiles_per_group
        # Lane (q, c) reads up row f0 + G (c / 4) + 4u + c % 4 of group f0 = (w + waves*m) * 4G.
        quarter = b.add(b.mul(b.div(lanes.col, b.index(4)), b.index(plan.group)), b.rem(lanes.col, b.index(4)))
        lane_row = b.add(b.mul(self.wave, b.index(plan.span)), quarter)
        lane_k = b.mul(lanes.quad, b.index(plan.group))
        expert_row = self.add32(self.mul32(self.expert, b.i32(plan.ffn)), self.i32(lane_row))
        up_base = self.mul32(expert_row, b.i32(plan.latent))
        k_end = b.index(_ceil_div(plan.latent, plan.span) * plan.span)
        carried = [(mfma.zero_accumulator(b), mfma.ACC)] * tiles
        with b.loop(b.index(0), b.index(plan.latent), b.index(plan.block_k), carried, unroll=False) as k_block:
            self.stage_x(k_block.iv, staging)
            b.barrier()
            steps = b.min_(b.index(plan.block_k), b.let("o", f"arith.subi {k_end}, {k_block.iv} : index"))
            inner = [(acc, mfma.ACC) for acc in k_block.args]
            with b.loop(b.index(0), steps, b.index(plan.span), inner, unroll=False) as k_step:
                x_vector = b.lds_load_vector("x", [lanes.col, b.add(k_step.iv, lane_k)], plan.group)
                k = b.add(k_block.iv, b.add(k_step.iv, lane_k))
                accs = list(k_step.args)
                for m in range(plan.groups_per_wave):
                    for u in range(plan.tiles_per_group):
                        offset = plan.stride * m + 4 * u
                        row_ok = (
                            None if self._rows_fit(m, u) else b.lt(b.add(lane_row, b.index(offset)), b.index(plan.ffn))
                        )
                        at = self.add32(self.add32(up_base, b.i32(offset * plan.latent)), self.i32(k))
                        a = self.weight_vector("experts_up", at, row_ok, k, plan.latent, plan.latent % plan.span != 0)
                        index = m * plan.tiles_per_group + u
                        accs[index] = self.multiply(a, x_vector, accs[index])
                k_step.yield_(*accs)
            b.barrier()  # every wave is done with this x block before the next is staged
            k_block.yield_(*k_step.results)
        return list(k_block.results)

    def _rows_fit(self, m: int, u: int) -> bool:
        """Whether the ffn rows of (group m, tile u) are < F for every wave and lane (no predicate needed)."""
        plan = self.plan
        last = (plan.waves - 1) * plan.span + plan.stride * m + 4 * u + 3 * plan.group + 3
        return last < plan.ffn

    def _group_fits(self, m: int) -> bool:
        """Whether group m's ffn columns are < F for every wave (no predicate on its down vectors)."""
        plan = self.plan
        return (plan.waves - 1) * plan.span + plan.stride * m + plan.span <= plan.ffn

    def stage_x(self, k0: str, staging: _Staging) -> None:
        """LDS x[stage_row, stage_col + [0, G)] = x[token, k0 + stage_col + [0, G)] as the matrix element."""
        b, plan = self.b, self.plan
        k = b.add(k0, staging.col)
        if plan.latent % plan.group == 0:  # the G columns are in range together, and aligned
            valid = self.both(staging.valid, b.lt(k, b.index(plan.latent)))
            assert valid is not None
            offset = self.select(valid, self.add32(staging.x_row, self.i32(k)), b.i32(0), "i32")
            raw = b.gload_vector("x", offset, plan.x_dtype, plan.group)
            vector = self.select(
                valid, _convert(b, raw, plan.x_dtype, plan.element, plan.group), self.zeros(), plan.vector
            )
        else:
            bits = []
            for i in range(plan.group):
                column = b.add(k, b.index(i))
                valid = self.both(staging.valid, b.lt(column, b.index(plan.latent)))
                assert valid is not None
                offset = self.select(valid, self.add32(staging.x_row, self.i32(column)), b.i32(0), "i32")
                value = self.select(valid, b.gload("x", offset, plan.x_dtype), b.f32(0.0), "f32")
                bits.append(b.to_storage(value, plan.element))
            vector = b.let("v", f"vector.from_elements {', '.join(bits)} : {plan.vector}")
        b.lds_store_vector(vector, "x", [staging.row, staging.col], plan.group)

    def weight_vector(self, operand: str, at: str, row_ok: str | None, column: str, length: int, tail: bool) -> str:
        """The G weight elements from i32 offset `at`, columns column + [0, G) of a row of `length`: zeros
        where row_ok is false or (when `tail`: the loop may pass the row's end) past the end."""
        b, plan = self.b, self.plan
        if length % plan.group == 0:  # the G columns are in range together, and 16-byte aligned
            valid = self.both(row_ok, b.lt(column, b.index(length)) if tail else None)
            if valid is None:
                return b.gload_vector(operand, at, plan.element, plan.group)
            raw = b.gload_vector(operand, self.select(valid, at, b.i32(0), "i32"), plan.element, plan.group)
            return self.select(valid, raw, self.zeros(), plan.vector)
        zero = b.const("0" if plan.element == "bf16" else "0.0", plan.storage)
        elements = []
        for i in range(plan.group):
            valid = self.both(row_ok, b.lt(b.add(column, b.index(i)), b.index(length)))
            assert valid is not None
            offset = self.select(valid, self.add32(at, b.i32(i)), b.i32(0), "i32")
            raw = b.let("v", f"llvm.load {b.gaddr(operand, offset, plan.element)} : {GLOBAL} -> {plan.storage}")
            elements.append(self.select(valid, raw, zero, plan.storage))
        return b.let("v", f"vector.from_elements {', '.join(elements)} : {plan.vector}")

    def multiply(self, a: str, b_vector: str, acc: str) -> str:
        """acc + the 4G-deep product of two lane vectors (the k matching of the module docstring)."""
        b, plan, op = self.b, self.plan, self.op
        if plan.element == "bf16":
            for s in range(plan.group // 4):
                acc = mfma.multiply(b, op, _quarter(b, a, s, plan), _quarter(b, b_vector, s, plan), acc)
            return acc
        for s in range(plan.group):
            acc = mfma.multiply(b, op, _item(b, a, s, plan.vector), _item(b, b_vector, s, plan.vector), acc)
        return acc

    def activate(self, acc: str) -> str:
        """relu(acc)^2 as the down product's A operand (vector<4xi16> of bf16 bits, or vector<4xf32>)."""
        b = self.b
        positive = b.let("h", f"arith.maximumf {acc}, {b.f32(0.0, mfma.ACC)} : {mfma.ACC}")
        square = b.let("h", f"arith.mulf {positive}, {positive} : {mfma.ACC}")
        if self.plan.element == "bf16":
            return f32_to_bf16_bits(b, square, mfma.ACC, quiet_nan=True)
        return square

    def down(self, fragments: list[str], sum_valid: str, out_row: str, sum_row: str, sum_col: str) -> None:
        """OUT = H down[e]ᵀ, block_l columns at a time: per-wave partial sums, added over the waves in LDS."""
        b, plan, lanes = self.b, self.plan, self.lanes
        lane_f = b.add(b.mul(self.wave, b.index(plan.span)), b.mul(lanes.quad, b.index(plan.group)))
        lane_row = self.add32(self.mul32(self.expert, b.i32(plan.latent)), self.i32(lanes.col))
        down_base = self.add32(self.mul32(lane_row, b.i32(plan.ffn)), self.i32(lane_f))
        with b.loop(b.index(0), b.index(plan.latent), b.index(plan.block_l), unroll=False) as l_block:
            for j in range(plan.block_l // 16):
                column = b.add(l_block.iv, b.index(16 * j))
                row_ok = None
                if plan.latent % plan.block_l:
                    row_ok = b.lt(b.add(column, lanes.col), b.index(plan.latent))
                row_start = self.add32(down_base, self.mul32(self.i32(column), b.i32(plan.ffn)))
                acc = mfma.zero_accumulator(b)
                for m in range(plan.groups_per_wave):
                    f = b.add(lane_f, b.index(plan.stride * m))
                    at = self.add32(row_start, b.i32(plan.stride * m))
                    vector = self.weight_vector("experts_down", at, row_ok, f, plan.ffn, not self._group_fits(m))
                    for u in range(plan.tiles_per_group):
                        acc = self.multiply_down(fragments[m * plan.tiles_per_group + u], vector, u, acc)
                column_in_block = b.add(b.index(16 * j), lanes.col)
                for item in range(4):
                    row = mfma.accumulator_row(b, lanes, item)
                    b.lds_store(mfma.element(b, acc, item), "partial", [self.wave, row, column_in_block])
            b.barrier()
            total = b.lds_load("partial", [b.index(0), sum_row, sum_col])
            for wave in range(1, plan.waves):
                total = b.fadd(total, b.lds_load("partial", [b.index(wave), sum_row, sum_col]))
            column = b.add(l_block.iv, sum_col)
            inside = self.both(sum_valid, b.lt(column, b.index(plan.latent)))
            assert inside is not None
            with b.if_else(inside):
                b.gstore(total, "contrib", self.add32(out_row, self.i32(column)))
            b.barrier()  # every thread has read `partial` before the next block's partial sums

    def multiply_down(self, fragment: str, vector: str, u: int, acc: str) -> str:
        """acc + H tile u (the A fragment) times B elements [4u, 4u + 4) (bf16), or in four k steps (f32)."""
        b, plan, op = self.b, self.plan, self.op
        if plan.element == "bf16":
            return mfma.multiply(b, op, fragment, _quarter(b, vector, u, plan), acc)
        for s in range(4):
            acc = mfma.multiply(b, op, _item(b, fragment, s, mfma.ACC), _item(b, vector, s, plan.vector), acc)
        return acc


@dataclass(frozen=True)
class _Staging:
    """Which 16-byte vector of the block's x rows this thread stages per K block, and where it comes from."""

    valid: str  # the row is one of the block's n
    x_row: str  # i32 offset of the row's token in x
    row: str
    col: str


# --- helpers -----------------------------------------------------------------------------------------------


def _while(
    b: GpuKernelBuilder,
    carried: list[tuple[str, str]],
    condition: Callable[[list[str]], str],
    body: Callable[[list[str]], list[str]],
) -> list[str]:
    """scf.while over `carried` (initial value, type): loops while condition(values); body returns the next."""
    types = ", ".join(type_ for _, type_ in carried)
    result = b.fresh("w")
    before = [b.fresh("wa") for _ in carried]
    inits = ", ".join(f"{arg} = {init}" for arg, (init, _) in zip(before, carried, strict=True))
    arity = "" if len(carried) == 1 else f":{len(carried)}"
    b.emit(f"{result}{arity} = scf.while ({inits}) : ({types}) -> ({types}) {{")
    b.depth += 1
    b.emit(f"scf.condition({condition(before)}) {', '.join(before)} : {types}")
    b.depth -= 1
    b.emit("} do {")
    after = [b.fresh("wb") for _ in carried]
    arguments = ", ".join(f"{arg}: {type_}" for arg, (_, type_) in zip(after, carried, strict=True))
    b.emit(f"^bb0({arguments}):")
    b.depth += 1
    b.emit(f"scf.yield {', '.join(body(after))} : {types}")
    b.depth -= 1
    b.emit("}")
    return [result] if len(carried) == 1 else [f"{result}#{i}" for i in range(len(carried))]


def _as_f32(b: GpuKernelBuilder, value: str) -> str:
    """An i32 as the f32 word holding its bits (the LDS tiles of a Tile-IR body are f32 or bf16)."""
    return b.let("c", f"arith.bitcast {value} : i32 to f32")


def _as_i32(b: GpuKernelBuilder, value: str) -> str:
    return b.let("c", f"arith.bitcast {value} : f32 to i32")


def _quarter(b: GpuKernelBuilder, vector: str, part: int, plan: _Plan) -> str:
    """Elements [4 part, 4 part + 4) of a bf16 lane vector: one MFMA operand."""
    picked = ", ".join(str(4 * part + i) for i in range(4))
    return b.let("f", f"vector.shuffle {vector}, {vector} [{picked}] : {plan.vector}, {plan.vector}")


def _item(b: GpuKernelBuilder, vector: str, item: int, type_: str) -> str:
    return b.let("f", f"vector.extract {vector}[{item}] : f32 from {type_}")


def _convert(b: GpuKernelBuilder, raw: str, dtype: str, element: str, count: int) -> str:
    """`count` loaded elements of `dtype` (as stored) -> the matrix element's storage: f32 rounded to bf16
    (nearest even), or bf16 widened exactly."""
    if dtype == element:
        return raw
    if element == "bf16":
        return f32_to_bf16_bits(b, raw, f"vector<{count}xf32>", quiet_nan=True)
    wide = b.let("h", f"arith.extui {raw} : vector<{count}xi16> to vector<{count}xi32>")
    high = b.let("h", f"arith.shli {wide}, {b.const('16', f'vector<{count}xi32>')} : vector<{count}xi32>")
    return b.let("h", f"arith.bitcast {high} : vector<{count}xi32> to vector<{count}xf32>")


EMITTERS: dict[str, Callable[[KernelInfo], GpuKernel]] = {"moe_experts": emit_moe_experts}
