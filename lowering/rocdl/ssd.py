"""ROCDL kernels: ssd (see tiling/gpu_ssd.py for their tiles).

ssd_scan — a prefill's chunked SSD (reference.mamba2.ssd_chunked; kernels/mamba.py ChunkedScan on x86), resuming
from ssm_state and writing the final state back:

    operands (launch order)  zxbcdt [T, W] f32, xbc [T, C] f32, dt_bias [H], A_log [H], D [H] f32,
                             ssm_state [H, P, N] (f32 | bf16), y [T, I] f32;  then %tokens (T), %position
    per token t, head h      dt = max(softplus(zxbcdt[t, I + C + h] + dt_bias[h]), time_step_min),
                             A = -exp(A_log[h]), x = xbc[t, h P + p], B / C = xbc[t, I (+ G N) + g N + n]
                             with g = h / (H / G);  y = ssd + D[h] x

Grid x = heads, y = ceil(P / block_p): workgroup (h, j) owns channels p0 = j block_p .. p0 + block_p of head h
(y[:, p] needs only x[:, p] and state[p, :]), 4 waves, and walks the chunks [start, start + L) in order.
Symbols below: R = block_rows, Np = N padded to 16, Lp = L padded to R, `len` = min(L, T - start); rows of
a chunk at or past `len` (and channels p >= P, states n >= N) of C, B and x are staged as zeros and never
stored (the state there holds finite copies of its edge, multiplied only by those zeros); global offsets are i32 (lowering/rocdl/kernel_text.py), so zxbcdt must stay below 2^31 elements (T W).

Per chunk:
 1. dt of each row into LDS (one row per thread; 0 past `len`). Wave 0 then scans dt·A in f64: lane k sums its
    Lp/64 consecutive rows, an inclusive shuffle-up scan adds the lanes before it, and each row's cumulative
    log-decay cum[l] is stored as an f32 pair hi = f32(cum), lo = f32(cum - hi), so that a segment sum
    cum[l] - cum[s] = (hi_l - hi_s) + (lo_l - lo_s) keeps its precision however large |cum| grows (as x86).
    Rows past `len` add 0, so cum[Lp - 1] is the chunk's total. The f32 state, held in the state update's
    MFMA accumulators, is scaled by exp(cum[Lp - 1]). softplus and exp are f32 (no f64 math library here).
 2. For each row block I (rows I0 .. I0 + R, I0 < len): stage C_I; Y_I = exp(cum[l]) (C_I · stateᵀ)[l], the
    state entering the chunk being the LDS operand copy `ssm_state`; then for each J <= I stage B_J and
    x_J = (dt x) transposed, S = C_I · B_Jᵀ, S[l, s] *= exp(cum[l] - cum[s]) for s <= l else 0 (the
    exponent zeroed first, never exp of a positive difference), S to LDS, Y_I += S · x_J. Then
    y[t, h P + p] = Y_I + D[h] x for the rows < len, channels < P.
 3. State update: for each J, stage B_J and x_J = (dt x exp(cum[Lp - 1] - cum[s])) transposed, and
    state[p, n] += sum_s x_J[p, s] B_J[s, n]. Then the accumulators are copied (in the operand element) to
    the LDS `ssm_state` for the next chunk's C · stateᵀ.
After the last chunk the accumulators are stored to ssm_state (bf16: rounded to nearest even once).

The four products on MFMA (D[m, n] += A[m, k] B[k, n]; mfma.py's fragment reads; 16x16 tiles, the tiles of a
product dealt to the waves round robin, tile t to wave t mod 4; K in steps of 16):

    S = C_I · B_Jᵀ           m = l, n = s, k = state n:  A = C [l][n]  read_k_contiguous;
                             B = B [s][n] (B transposed)  read_k_contiguous
    Y_I += S · x_J           m = l, n = p, k = s:        A = scores [l][s]  read_k_contiguous;
                             B = x [p][s] (x_J stored transposed)  read_k_contiguous
    Y_I = C_I · stateᵀ       m = l, n = p, k = state n:  A = C [l][n]  read_k_contiguous;
                             B = ssm_state [p][n]  read_k_contiguous
    state += x_Jᵀ·B_J        m = p, n = state n, k = s:  A = x [p][s]  read_k_contiguous;
                             B = B [s][n]  read_k_strided
The state accumulators (lane l of tile (p / 16, n / 16) holds p % 16 = 4 (l / 16) + i, n % 16 = l % 16) live
across the whole call. Barriers, per chunk: after dt, after the scan; per row block after staging C; per (I, J)
after staging B and x, after the scores, after Y += S·x; per J of the update after staging, after the MFMAs.
fp32 uses the f32 16x16x4 MFMA on f32 tiles; bf16 the 16x16x16 bf16 MFMA on bf16 tiles (C, B, dt x,
scores and the state operand rounded to nearest even), accumulation in f32 either way. dt, the decays and
the state stay f32 (cum in f64 while it is summed). No barrier sits inside a branch: every wave runs every
loop (bounds depend on the chunk only) and a wave without a tile skips its MFMAs in a wave-uniform scf.if.
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.lowering.mlir_text import float_literal
from tessera.lowering.rocdl import mfma
from tessera.lowering.rocdl.kernel_text import GpuKernel, GpuKernelBuilder, Grid, KernelInfo

_WAVES = 4
_K_STEP = 16  # K per loop iteration of a product: 4 f32 MFMAs or 1 bf16 MFMA
_OPERANDS = ["zxbcdt", "xbc", "dt_bias", "A_log", "D", "ssm_state", "y"]


class _Scan:
    """One ssd_scan kernel; the methods follow the module docstring's steps."""

    def __init__(self, info: KernelInfo) -> None:
        self.info = info
        self.heads, self.p = info.dim("num_heads"), info.dim("head_dim")
        self.groups, self.n, self.chunk = info.dim("n_groups"), info.dim("state_size"), info.dim("chunk_size")
        self.state_dtype = str(info.dims["state_dtype"])
        self.rows, self.block_p = info.tile("block_rows"), info.tile("block_p")
        self.padded_n, self.padded_chunk = info.tile("padded_state"), info.tile("padded_chunk")
        self.threads = info.tile("threads")
        assert self.threads == _WAVES * 64 and self.rows % 16 == 0 and self.block_p % 16 == 0, info.tiles
        self.inner = self.heads * self.p
        self.conv = self.inner + 2 * self.groups * self.n
        self.width = 2 * self.inner + 2 * self.groups * self.n + self.heads
        self.element = info.mma_element or "f32"
        self.op = mfma.Mfma.for_element(info.arch, self.element)
        self.b = b = GpuKernelBuilder(info.name, _OPERANDS, info.lds, self.threads)

        self.tid = b.thread_id()
        self.wave = b.div(self.tid, b.index(64))
        self.lanes = mfma.WaveLanes(b, b.rem(self.tid, b.index(64)))
        self.head = b.block_id("x")
        self.p0 = b.mul(b.block_id("y"), b.index(self.block_p))
        group = b.div(self.head, b.index(self.heads // self.groups))
        self.x_col = b.add(b.mul(self.head, b.index(self.p)), self.p0)
        self.b_col = b.add(b.index(self.inner), b.mul(group, b.index(self.n)))
        self.c_col = b.add(self.b_col, b.index(self.groups * self.n))
        self.tokens = b.to_index(b.tokens)
        head = b.to_i32(self.head)
        self.dt_bias, self.skip = b.gload("dt_bias", head), b.gload("D", head)
        negated = b.let("f", f"arith.negf {b.math('exp', b.gload('A_log', head))} : f32")
        self.a = b.let("d", f"arith.extf {negated} : f32 to f64")  # A = -exp(A_log), summed in f64
        self.start = self.length = ""  # the chunk's first token and row count, set per chunk

    # --- small helpers -------------------------------------------------------------------------------------

    def f64(self, op: str, x: str, y: str) -> str:
        return self.b.let("d", f"arith.{op} {x}, {y} : f64")

    def select(self, cond: str, x: str, y: str, type_: str = "f32") -> str:
        return self.b.let("s", f"arith.select {cond}, {x}, {y} : {type_}")

    def both(self, x: str, y: str) -> str:
        return self.b.let("p", f"arith.andi {x}, {y} : i1")

    def gload_or_zero(self, operand: str, valid: str, offset: str) -> str:
        """operand[offset] (f32) where valid, else 0 (the load itself reads element 0 then)."""
        b = self.b
        at = b.to_i32(self.select(valid, offset, b.index(0), "index"))
        return self.select(valid, b.gload(operand, at), b.f32(0.0))

    def gload4_or_zero(self, valid: str, offset: str) -> list[str]:
        """xbc[offset .. offset + 4] (one aligned load) where valid, else zeros."""
        b = self.b
        raw = b.gload_vector("xbc", b.to_i32(self.select(valid, offset, b.index(0), "index")), "f32", 4)
        loaded = [b.let("e", f"vector.extract {raw}[{i}] : f32 from vector<4xf32>") for i in range(4)]
        return [self.select(valid, value, b.f32(0.0)) for value in loaded]

    def each_thread(self, count: int, body: Callable[[str], None]) -> None:
        """body(item) for items 0 .. count, item = tid + threads k (checked only in the last, partial round)."""
        b = self.b
        for first in range(0, count, self.threads):
            item = b.add(self.tid, b.index(first))
            if first + self.threads <= count:
                body(item)
            else:
                with b.if_else(b.lt(item, b.index(count))):
                    body(item)

    def origin(self, tile: str, per_row: int) -> tuple[str, str]:
        """(first row, first column) of 16x16 tile `tile` of a product with `per_row` tiles per row."""
        b = self.b
        return (b.mul(b.div(tile, b.index(per_row)), b.index(16)),
                b.mul(b.rem(tile, b.index(per_row)), b.index(16)))  # fmt: skip

    def tile_of(self, slot: int) -> str:
        return self.b.add(self.wave, self.b.index(_WAVES * slot))

    def with_tile(self, slot: int, count: int, accs: list[str], work: Callable[[str], list[str]]) -> list[str]:
        """work(tile) for this wave's tile of `slot` (tile = wave + 4 slot) when that tile exists, else `accs`
        unchanged. The check is wave-uniform, emitted only for a slot that some wave lacks."""
        tile = self.tile_of(slot)
        if _WAVES * (slot + 1) <= count:
            return work(tile)
        types = [mfma.ACC] * len(accs)
        return self.b.if_yield(self.b.lt(tile, self.b.index(count)), types, lambda: work(tile), lambda: accs)

    def each_tile(self, count: int, work: Callable[[int, str], None]) -> None:
        """work(slot, tile) for each of this wave's tiles among `count` (a wave-uniform check, as with_tile)."""
        b = self.b
        for slot in range(-(-count // _WAVES)):
            tile = self.tile_of(slot)
            if _WAVES * (slot + 1) <= count:
                work(slot, tile)
            else:
                with b.if_else(b.lt(tile, b.index(count))):
                    work(slot, tile)

    def product(self, acc: str, k: int, a: Callable[[str], str], b_operand: Callable[[str], str]) -> str:
        """acc + the sum over k0 < k of the fragments a(k0) · b_operand(k0)."""
        b, op = self.b, self.op
        with b.loop(b.index(0), b.index(k), b.index(_K_STEP), [(acc, mfma.ACC)]) as loop:
            value = loop.args[0]
            for kk in range(0, _K_STEP, op.k):
                k0 = b.add(loop.iv, b.index(kk))
                value = mfma.multiply(b, op, a(k0), b_operand(k0), value)
            loop.yield_(value)
        return loop.results[0]

    def cum(self, row: str) -> tuple[str, str]:
        return self.b.lds_load("cum_hi", [row]), self.b.lds_load("cum_lo", [row])

    def segment(self, later: tuple[str, str], earlier: tuple[str, str]) -> str:
        """cum[later] - cum[earlier] from the hi/lo pairs, each difference rounded relative to itself."""
        b = self.b
        return b.fadd(b.let("f", f"arith.subf {later[0]}, {earlier[0]} : f32"),
                      b.let("f", f"arith.subf {later[1]}, {earlier[1]} : f32"))  # fmt: skip

    # --- the kernel ------------------------------------------------------------------------------------------

    def emit(self) -> GpuKernel:
        b = self.b
        state_tiles = (self.block_p // 16) * (self.padded_n // 16)
        states = self.load_state(state_tiles)
        with b.loop(b.index(0), self.tokens, b.index(self.chunk), [(s, mfma.ACC) for s in states]) as chunk:
            self.start = chunk.iv
            self.length = b.min_(b.index(self.chunk), b.let("o", f"arith.subi {self.tokens}, {chunk.iv} : index"))
            end_decay = self.decays()
            decayed = [b.let("v", f"arith.mulf {s}, {end_decay} : {mfma.ACC}") for s in chunk.args]
            blocks = b.div(b.add(self.length, b.index(self.rows - 1)), b.index(self.rows))
            blocks_end = b.mul(blocks, b.index(self.rows))
            with b.loop(b.index(0), blocks_end, b.index(self.rows)) as block:
                self.outputs(block.iv)
            updated = self.update_state(blocks_end, decayed, state_tiles)
            self.copy_state(updated, state_tiles)
            chunk.yield_(*updated)
        self.store_state(chunk.results, state_tiles)
        grid = Grid(x=(self.heads, 1), y=(self.p, self.block_p))
        return GpuKernel(self.info.name, b.render(), self.threads, grid, sum(t.bytes for t in self.info.lds))

    # --- the state: global -> accumulators -> LDS operand, accumulators -> global ----------------------------

    def state_place(self, tile: str, item: int) -> tuple[str, str]:
        """(channel p within the block, state n) of accumulator element `item` of a state tile."""
        b = self.b
        p0, n0 = self.origin(tile, self.padded_n // 16)
        return b.add(p0, mfma.accumulator_row(b, self.lanes, item)), b.add(n0, self.lanes.col)

    def state_offset(self, channel: str, n: str) -> str:
        """The element [h, channel, n] of ssm_state [H, P, N]."""
        b = self.b
        return b.add(b.mul(b.add(b.mul(self.head, b.index(self.p)), channel), b.index(self.n)), n)

    def load_state(self, count: int) -> list[str]:
        """The block's f32 state into accumulators, and its LDS operand copy. Outside the state (p >= P,
        n >= N) an accumulator holds the nearest state element rather than 0: finite, it meets only zeros of C
        (n >= N) and of x (p >= P) and is never stored, and a clamp keeps no lane mask live across the call."""
        b = self.b
        accs: list[str] = []
        for slot in range(-(-count // _WAVES)):

            def work(tile: str) -> list[str]:
                values = []
                for item in range(4):
                    p, n = self.state_place(tile, item)
                    channel = b.min_(b.add(self.p0, p), b.index(self.p - 1))
                    offset = self.state_offset(channel, b.min_(n, b.index(self.n - 1)))
                    values.append(b.gload("ssm_state", b.to_i32(offset), self.state_dtype))
                return [b.let("v", f"vector.from_elements {', '.join(values)} : {mfma.ACC}")]

            accs += self.with_tile(slot, count, [mfma.zero_accumulator(b)], work)
        self.copy_state(accs, count)
        return accs

    def copy_state(self, accs: list[str], count: int) -> None:
        """LDS ssm_state[p][n] = the accumulators, as the operand element (read after the next barrier)."""
        b = self.b

        def work(slot: int, tile: str) -> None:
            for item in range(4):
                value = b.to_storage(mfma.element(b, accs[slot], item), self.element)
                b.lds_store(value, "ssm_state", list(self.state_place(tile, item)))

        self.each_tile(count, work)

    def store_state(self, accs: list[str], count: int) -> None:
        """ssm_state[h, p0 + p, n] = the accumulators, for p0 + p < P and n < N."""
        b = self.b

        def work(slot: int, tile: str) -> None:
            for item in range(4):
                p, n = self.state_place(tile, item)
                channel = b.add(self.p0, p)
                with b.if_else(self.both(b.lt(channel, b.index(self.p)), b.lt(n, b.index(self.n)))):
                    offset = b.to_i32(self.state_offset(channel, n))
                    b.gstore(mfma.element(b, accs[slot], item), "ssm_state", offset, self.state_dtype)

        self.each_tile(count, work)

    # --- step 1: dt and the cumulative log-decay ------------------------------------------------------------

    def softplus(self, x: str) -> str:
        """torch's softplus (threshold 20) as x86's: log1p(e) = log(u) e / (u - 1), u = 1 + e (e when u is 1)."""
        b = self.b
        threshold, one = b.f32(20.0), b.f32(1.0)
        e = b.math("exp", b.let("f", f"arith.minimumf {x}, {threshold} : f32"))
        u = b.fadd(e, one)
        ratio = b.let("f", f"arith.divf {e}, {b.let('f', f'arith.subf {u}, {one} : f32')} : f32")
        log1p = self.select(b.let("p", f"arith.cmpf oeq, {u}, {one} : f32"), e, b.fmul(b.math("log", u), ratio))
        return self.select(b.let("p", f"arith.cmpf ogt, {x}, {threshold} : f32"), x, log1p)

    def decays(self) -> str:
        """dt and cum (hi, lo) of the chunk's rows into LDS; returns exp(cum[Lp - 1]) splat to an accumulator."""
        b = self.b
        dt_col = b.add(b.index(self.inner + self.conv), self.head)
        dt_min = b.f32(float(self.info.dims["time_step_min"]))

        def dt_row(row: str) -> None:
            valid = b.lt(row, self.length)
            raw = self.gload_or_zero("zxbcdt", valid, b.add(b.mul(b.add(self.start, row), b.index(self.width)), dt_col))
            dt = b.fmax(self.softplus(b.fadd(raw, self.dt_bias)), dt_min)
            b.lds_store(self.select(valid, dt, b.f32(0.0)), "dt", [row])

        self.each_thread(self.padded_chunk, dt_row)
        b.barrier()
        with b.if_else(b.let("p", f"arith.cmpi eq, {self.wave}, {b.index(0)} : index")):
            self.scan_wave()
        b.barrier()
        decay = b.math("exp", b.fadd(*self.cum(b.index(self.padded_chunk - 1))))
        return b.let("v", f"vector.broadcast {decay} : f32 to {mfma.ACC}")

    def scan_wave(self) -> None:
        """Wave 0: cum[row] = sum_{r <= row} dt[r] A in f64, `per` = ceil(Lp / 64) consecutive rows a lane."""
        b = self.b
        lane = self.lanes.lane
        per = -(-self.padded_chunk // 64)
        last = b.index(self.padded_chunk - 1)
        running, partial = b.const(float_literal(0.0), "f64"), []
        for i in range(per):
            row = b.add(b.mul(lane, b.index(per)), b.index(i))
            inside = b.lt(row, b.index(self.padded_chunk))
            dt = self.select(inside, b.lds_load("dt", [b.min_(row, last)]), b.f32(0.0))
            running = self.f64("addf", running, self.f64("mulf", b.let("d", f"arith.extf {dt} : f32 to f64"), self.a))
            partial.append((row, inside, running))
        scanned, offset = running, 1
        while offset < 64:
            shifted = b.fresh("s")
            b.emit(f"{shifted}, {b.fresh('ok')} = gpu.shuffle up {scanned}, {b.i32(offset)}, {b.i32(64)} : f64")
            later = b.let("p", f"arith.cmpi uge, {lane}, {b.index(offset)} : index")
            scanned = self.select(later, self.f64("addf", scanned, shifted), scanned, "f64")
            offset *= 2
        before = self.f64("subf", scanned, running)  # the sum of the lanes before this one
        for row, inside, value in partial:

            def store(row: str = row, value: str = value) -> None:
                cum = self.f64("addf", before, value)
                hi = b.let("f", f"arith.truncf {cum} : f64 to f32")
                rest = self.f64("subf", cum, b.let("d", f"arith.extf {hi} : f32 to f64"))
                b.lds_store(hi, "cum_hi", [row])
                b.lds_store(b.let("f", f"arith.truncf {rest} : f64 to f32"), "cum_lo", [row])

            if 64 * per == self.padded_chunk:
                store()
            else:
                with b.if_else(inside):
                    store()

    # --- staging -----------------------------------------------------------------------------------------------

    def stage_rows(self, tile: str, column: str, row0: str) -> None:
        """tile[r][n] = xbc[start + row0 + r, column + n] for r < R, n < Np (0 past `len` or N), 4 n a thread."""
        b = self.b
        quads = self.padded_n // 4
        aligned = self.n % 4 == 0 and self.conv % 4 == 0 and self.inner % 4 == 0
        storage = "vector<4xi16>" if self.element == "bf16" else "vector<4xf32>"

        def stage(item: str) -> None:
            r, n = b.div(item, b.index(quads)), b.mul(b.rem(item, b.index(quads)), b.index(4))
            row = b.add(row0, r)
            offset = b.add(b.mul(b.add(self.start, row), b.index(self.conv)), b.add(column, n))
            in_chunk = b.lt(row, self.length)
            if aligned:  # the 4 states are inside N together
                values = self.gload4_or_zero(self.both(in_chunk, b.lt(n, b.index(self.n))), offset)
            else:
                values = [
                    self.gload_or_zero(
                        "xbc",
                        self.both(in_chunk, b.lt(b.add(n, b.index(i)), b.index(self.n))),
                        b.add(offset, b.index(i)),
                    )
                    for i in range(4)
                ]
            stored = [b.to_storage(value, self.element) for value in values]
            b.lds_store_vector(b.let("v", f"vector.from_elements {', '.join(stored)} : {storage}"), tile, [r, n], 4)

        self.each_thread(self.rows * quads, stage)

    def stage_x(self, row0: str, total: tuple[str, str] | None) -> None:
        """x[p][s] = xbc[start + row0 + s, h P + p0 + p] dt[row0 + s], times exp(cum[Lp - 1] - cum[row0 + s])
        when `total` is cum[Lp - 1]; 0 past `len` or P. A thread loads 4 channels of a row."""
        b = self.b
        quads = self.block_p // 4
        aligned = self.p % 4 == 0 and self.conv % 4 == 0

        def stage(item: str) -> None:
            s, p = b.div(item, b.index(quads)), b.mul(b.rem(item, b.index(quads)), b.index(4))
            row = b.add(row0, s)
            factor = b.lds_load("dt", [row])
            if total is not None:
                factor = b.fmul(factor, b.math("exp", self.segment(total, self.cum(row))))
            offset = b.add(b.mul(b.add(self.start, row), b.index(self.conv)), b.add(self.x_col, p))
            in_chunk = b.lt(row, self.length)
            if aligned:  # the 4 channels are inside P together
                values = self.gload4_or_zero(self.both(in_chunk, b.lt(b.add(self.p0, p), b.index(self.p))), offset)
            else:
                values = []
                for i in range(4):
                    channel = b.add(self.p0, b.add(p, b.index(i)))
                    valid = self.both(in_chunk, b.lt(channel, b.index(self.p)))
                    values.append(self.gload_or_zero("xbc", valid, b.add(offset, b.index(i))))
            for i, value in enumerate(values):
                b.lds_store(b.to_storage(b.fmul(value, factor), self.element), "x", [b.add(p, b.index(i)), s])

        self.each_thread(self.rows * quads, stage)

    # --- step 2: outputs --------------------------------------------------------------------------------------

    def outputs(self, i0: str) -> None:
        """y of the row block starting at chunk row i0."""
        b, lanes, op = self.b, self.lanes, self.op
        p_tiles = self.block_p // 16
        y_count = (self.rows // 16) * p_tiles
        zero = mfma.zero_accumulator(b)
        self.stage_rows("C", self.c_col, i0)
        b.barrier()

        def entering(tile: str) -> list[str]:
            row0, col0 = self.origin(tile, p_tiles)
            acc = self.product(
                zero, self.padded_n,
                lambda k0: mfma.read_k_contiguous(b, op, "C", lanes, row0, k0),
                lambda k0: mfma.read_k_contiguous(b, op, "ssm_state", lanes, col0, k0),
            )  # fmt: skip
            scaled = []
            for item in range(4):
                row = b.add(i0, b.add(row0, mfma.accumulator_row(b, lanes, item)))
                scaled.append(b.fmul(mfma.element(b, acc, item), b.math("exp", b.fadd(*self.cum(row)))))
            return [b.let("v", f"vector.from_elements {', '.join(scaled)} : {mfma.ACC}")]

        accs: list[str] = []
        for slot in range(-(-y_count // _WAVES)):
            accs += self.with_tile(slot, y_count, [zero], entering)
        with b.loop(b.index(0), b.add(i0, b.index(self.rows)), b.index(self.rows),
                    [(acc, mfma.ACC) for acc in accs]) as block:  # fmt: skip
            j0 = block.iv
            self.stage_rows("B", self.b_col, j0)
            self.stage_x(j0, None)
            b.barrier()
            self.each_tile((self.rows // 16) ** 2, lambda slot, tile: self.scores(tile, i0, j0))
            b.barrier()
            updated: list[str] = []
            for slot, acc in enumerate(block.args):

                def intra(tile: str, acc: str = acc) -> list[str]:
                    row0, col0 = self.origin(tile, p_tiles)
                    return [
                        self.product(
                            acc, self.rows,
                            lambda k0: mfma.read_k_contiguous(b, op, "scores", lanes, row0, k0),
                            lambda k0: mfma.read_k_contiguous(b, op, "x", lanes, col0, k0),
                        )
                    ]  # fmt: skip

                updated += self.with_tile(slot, y_count, [acc], intra)
            b.barrier()
            block.yield_(*updated)
        results = block.results
        self.each_tile(y_count, lambda slot, tile: self.store_y(tile, i0, results[slot]))

    def scores(self, tile: str, i0: str, j0: str) -> None:
        """LDS scores = C_I·B_Jᵀ ∘ exp(cum[l] - cum[s]) where s <= l, else 0, for one 16x16 tile."""
        b, lanes, op = self.b, self.lanes, self.op
        row0, col0 = self.origin(tile, self.rows // 16)
        acc = self.product(
            mfma.zero_accumulator(b), self.padded_n,
            lambda k0: mfma.read_k_contiguous(b, op, "C", lanes, row0, k0),
            lambda k0: mfma.read_k_contiguous(b, op, "B", lanes, col0, k0),
        )  # fmt: skip
        column = b.add(col0, lanes.col)
        source = b.add(j0, column)
        at_source = self.cum(source)
        zero = b.f32(0.0)
        for item in range(4):
            row = b.add(row0, mfma.accumulator_row(b, lanes, item))
            target = b.add(i0, row)
            causal = b.let("p", f"arith.cmpi ule, {source}, {target} : index")
            exponent = self.select(causal, self.segment(self.cum(target), at_source), zero)
            score = self.select(causal, b.fmul(mfma.element(b, acc, item), b.math("exp", exponent)), zero)
            b.lds_store(b.to_storage(score, self.element), "scores", [row, column])

    def store_y(self, tile: str, i0: str, acc: str) -> None:
        """y[start + l, h P + p] = acc + D[h] x for the rows l < len and channels p < P of one tile."""
        b, lanes = self.b, self.lanes
        row0, col0 = self.origin(tile, self.block_p // 16)
        channel = b.add(self.p0, b.add(col0, lanes.col))
        column = b.add(b.mul(self.head, b.index(self.p)), channel)
        for item in range(4):
            row = b.add(i0, b.add(row0, mfma.accumulator_row(b, lanes, item)))
            with b.if_else(self.both(b.lt(row, self.length), b.lt(channel, b.index(self.p)))):
                token = b.add(self.start, row)
                x = b.gload("xbc", b.to_i32(b.add(b.mul(token, b.index(self.conv)), column)))
                value = b.fadd(mfma.element(b, acc, item), b.fmul(self.skip, x))
                b.gstore(value, "y", b.to_i32(b.add(b.mul(token, b.index(self.inner)), column)))

    # --- step 3: the state update -----------------------------------------------------------------------------

    def update_state(self, blocks_end: str, states: list[str], count: int) -> list[str]:
        """state[p, n] += sum_s x[p][s] B[s][n] over the chunk's row blocks, x = dt x exp(cum[Lp - 1] - cum[s])."""
        b, lanes, op = self.b, self.lanes, self.op
        total = self.cum(b.index(self.padded_chunk - 1))
        with b.loop(b.index(0), blocks_end, b.index(self.rows), [(s, mfma.ACC) for s in states]) as block:
            j0 = block.iv
            self.stage_rows("B", self.b_col, j0)
            self.stage_x(j0, total)
            b.barrier()
            updated: list[str] = []
            for slot, acc in enumerate(block.args):

                def add(tile: str, acc: str = acc) -> list[str]:
                    row0, col0 = self.origin(tile, self.padded_n // 16)
                    return [
                        self.product(
                            acc, self.rows,
                            lambda k0: mfma.read_k_contiguous(b, op, "x", lanes, row0, k0),
                            lambda k0: mfma.read_k_strided(b, op, "B", lanes, k0, col0),
                        )
                    ]  # fmt: skip

                updated += self.with_tile(slot, count, [acc], add)
            b.barrier()
            block.yield_(*updated)
        return block.results


def emit_ssd_scan(info: KernelInfo) -> GpuKernel:
    return _Scan(info).emit()


EMITTERS: dict[str, Callable[[KernelInfo], GpuKernel]] = {"ssd_scan": emit_ssd_scan}
