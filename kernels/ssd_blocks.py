"""ssd_scan as a GPU workgroup runs it: the chunked SSD of kernels/mamba.py's module docstring (the same
semantics, dt clamp, TwoSum cumulative decay and state rounding), in matrix tiles whose products are `mma`s
(kernels/mamba.py's ssd_scan builds this body for tiles with `block_rows`). One program per head h and block
of `block_p` of its P channels (columns of y and of the state are independent of one another): grid
H x ceil(P / block_p). The program's state lives in scratch transposed, Sᵀ [N, block_p], as f32 for the call
(widened on entry, rounded once at the end) — so that the state update's product has N as its rows (a
multiple of the matrix instruction's M, where block_p need not be: 80 channels a head on Nano-12B). Per chunk
of L tokens (padded to Lp, a whole number of row blocks of R):

    dt = max(softplus(dt_raw + dt_bias), time_step_min), 0 past the call's tokens   (a tile, into scratch)
    hi + lo = the cumulative dt A, a TwoSum pair (one lane-uniform pass; rows past the tokens add 0)
    for each row block I:
        y_I = exp(cum_I) ∘ (C_I · Sᵀ)                        N in blocks of bn (the product's depth)
        for each row block J <= I:
            scores = C_I · B_Jᵀ ∘ exp(cum_I - cum_J), 0 above the diagonal    (the exponent selected to 0
                                                                            first: never exp of a positive)
            y_I += scores · (dt x)_J
        y[I] = y_I + D x_I                                    masked past the tokens and the head's channels
    Sᵀ = exp(cum_end) Sᵀ + Σ_J B_Jᵀ · (x dt exp(cum_end - cum))_J      per block of bn state rows

Where `operand_bf16` is set (--precision bf16), every mma operand is rounded to bf16 (C, B, the state read by
C·Sᵀ, the scores, dt x and the state update's right side); sums and the state stay f32. Every load is masked
past the call's tokens, the head's channels and N (N padded to Np, a multiple of bn). Hopper under bf16 runs
every product on WGMMA (tiling/gpu_ssd.py: R = bn = 64, a warpgroup)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import bf16, f32, i32
from xdsl.ir import Attribute, SSAValue

from tessera.kernels.builder import KernelBuilder

if TYPE_CHECKING:
    from tessera.kernels.mamba import Mixer


class BlockScan:
    """The body above for one program (`scan()`), on ssd_scan's launch buffers in `k`."""

    def __init__(self, k: KernelBuilder, m: Mixer, state_element: Attribute, time_step_min: float,
                 tiles: Mapping[str, int]) -> None:  # fmt: skip
        self.kb, self.m = k, m
        self.chunk, self.padded_chunk, self.rows, self.block_p, self.block_n, self.padded_n = (
            tiles[key] for key in ("chunk", "padded_chunk", "block_rows", "block_p", "block_state", "padded_state")
        )
        self.operand = bf16 if tiles.get("operand_bf16") else f32
        self.state_element, self.time_step_min = state_element, time_step_min
        self.zxbcdt, self.xbc, self.dt_bias, self.a_log, self.d, self.state, self.y = k.buffers
        self.s = k.alloc("state", [self.padded_n, self.block_p], f32)  # Sᵀ
        self.dt, self.hi, self.lo = (k.alloc(name, [self.padded_chunk], f32) for name in ("dt", "hi", "lo"))

    def scan(self) -> None:
        k, m = self.kb, self.m
        blocks = k.index(-(-m.head_dim // self.block_p))
        self.h = k.divsi(k.program_id, blocks)
        first_channel = k.muli(k.subi(k.program_id, k.muli(self.h, blocks)), k.index(self.block_p))
        self.head_column = k.addi(k.muli(self.h, k.index(m.head_dim)), first_channel)
        self.head_end = k.addi(k.muli(self.h, k.index(m.head_dim)), k.index(m.head_dim))
        group = k.divsi(self.h, k.index(m.heads // m.groups))
        self.b_column = k.addi(k.muli(group, k.index(m.state)), k.index(m.inner))
        self.c_column = k.addi(self.b_column, k.index(m.groups * m.state))
        self.a = k.negf(k.exp(k.load(self.a_log, [self.h])))
        self.move_state(first_channel, load=True)
        tokens = k.size(self.xbc)
        with k.loop(k.index(0), tokens, k.index(self.chunk)) as chunk:
            self.start = chunk.iv
            self.end_row = k.minsi(k.addi(chunk.iv, k.index(self.chunk)), tokens)
            end_hi, end_lo = self.cumulative_decay()
            with k.loop(k.index(0), k.index(self.padded_chunk), k.index(self.rows)) as block:
                self.outputs(block.iv)
            self.update_state(end_hi, end_lo)
        self.move_state(first_channel, load=False)

    def move_state(self, first_channel: SSAValue, load: bool) -> None:
        """ssm_state[h, channels, :] (f32 or bf16) <-> Sᵀ (f32), masked past P and N, bn state rows at a time."""
        k, m = self.kb, self.m
        bound = {1: k.index(m.head_dim)}
        if m.state % self.block_n:
            bound[0] = k.index(m.state)
        shape, axes = [self.block_n, self.block_p], (2, 1)  # Sᵀ's rows run along the buffer's N
        with k.loop(k.index(0), k.index(self.padded_n), k.index(self.block_n)) as piece:
            at, local = [self.h, first_channel, piece.iv], [piece.iv, k.index(0)]
            if load:
                k.store(k.convert(k.load(self.state, at, shape, bound, axes), f32), self.s, local)
            else:
                k.store(k.convert(k.load(self.s, local, shape), self.state_element), self.state, at, bound, axes)

    def cumulative_decay(self) -> tuple[SSAValue, SSAValue]:
        """dt of the chunk's rows into scratch (0 past the tokens), then hi + lo = the cumulative dt A by Knuth's
        TwoSum, row by row (each segment sum (hi_l - hi_s) + (lo_l - lo_s) keeps its precision however large
        |cum| grows). Returns (hi, lo) of the chunk's end."""
        k, m = self.kb, self.m
        raw_column = k.addi(self.h, k.index(m.inner + m.channels))
        raw = k.load(self.zxbcdt, [self.start, raw_column], [self.padded_chunk], {0: self.end_row}, axes=(0,))
        inside = k.cast(k.subi(self.end_row, self.start), i32)
        bias, floor = k.load(self.dt_bias, [self.h]), k.f32(self.time_step_min)
        dt = k.map(
            [raw, k.iota(self.padded_chunk), inside, bias, floor],
            lambda e, r, row, rows, b, low: e.select(
                e.cmpi("slt", row, rows), e.maximumf(e.softplus(e.addf(r, b)), low), e.f32(0.0)
            ),
        )
        k.store(dt, self.dt, [k.index(0)])
        zero = k.f32(0.0)
        with k.loop(k.index(0), k.index(self.padded_chunk), k.index(1), [zero, zero]) as row:
            step, (hi, lo) = k.mulf(k.load(self.dt, [row.iv]), self.a), row.args
            total = k.addf(hi, step)
            step_part = k.subf(total, hi)
            lo = k.addf(lo, k.addf(k.subf(hi, k.subf(total, step_part)), k.subf(step, step_part)))
            k.store(total, self.hi, [row.iv])
            k.store(lo, self.lo, [row.iv])
            row.yield_(total, lo)
        end_hi, end_lo = row.results
        return end_hi, end_lo

    def rows_at(self, first: SSAValue, column: SSAValue, width: int, limit: SSAValue | None,
                transposed: bool = False) -> SSAValue:  # fmt: skip
        """xbc[start + first .. + R, column .. + width] ([width, R] where `transposed`), masked past the chunk's
        tokens and `limit` (None: the columns never pass it)."""
        k = self.kb
        rows, columns = (1, 0) if transposed else (0, 1)
        bound = {rows: self.end_row} if limit is None else {rows: self.end_row, columns: limit}
        shape = [width, self.rows] if transposed else [self.rows, width]
        return k.load(self.xbc, [k.addi(self.start, first), column], shape, bound, axes=(1, 0) if transposed else None)

    def group_rows(self, row: SSAValue, column: SSAValue, n0: SSAValue, transposed: bool = False) -> SSAValue:
        """B or C (the group's columns from `column`): rows [row, row + R), state columns [n0, n0 + bn) — as
        [R, bn], or [bn, R] where `transposed`."""
        k = self.kb
        limit = None if self.m.state % self.block_n == 0 else k.addi(column, k.index(self.m.state))
        return k.convert(self.rows_at(row, k.addi(column, n0), self.block_n, limit, transposed), self.operand)

    def x_rows(self, row: SSAValue) -> SSAValue:
        """The channels' x of rows [row, row + R): [R, block_p] (masked past the head's channels only where the
        blocks overrun them: an unmasked load reads whole vectors)."""
        whole = self.m.head_dim % self.block_p == 0
        return self.rows_at(row, self.head_column, self.block_p, None if whole else self.head_end)

    def outputs(self, i0: SSAValue) -> None:
        """y of row block I: the chunk's own tokens first (their accumulator the only one live while the scores
        are made), then the state's part in a second one, scaled and added."""
        k = self.kb
        zero = k.index(0)
        hi_i, lo_i = k.load(self.hi, [i0], [self.rows]), k.load(self.lo, [i0], [self.rows])
        with k.loop(zero, k.addi(i0, k.index(self.rows)), k.index(self.rows),
                    [k.splat(k.f32(0.0), [self.rows, self.block_p])]) as block:  # fmt: skip
            j0 = block.iv
            scores = self.scores(i0, j0)
            hi_j, lo_j = k.load(self.hi, [j0], [self.rows]), k.load(self.lo, [j0], [self.rows])
            offset = k.cast(k.subi(i0, j0), i32)  # s <= l: column s - row l <= i0 - j0

            def decayed(e: KernelBuilder, score: SSAValue, row: SSAValue, column: SSAValue, hl: SSAValue,
                        ll: SSAValue, hs: SSAValue, ls: SSAValue, diagonal: SSAValue) -> SSAValue:  # fmt: skip
                causal = e.cmpi("sle", e.subi(column, row), diagonal)
                exponent = e.select(causal, e.addf(e.subf(hl, hs), e.subf(ll, ls)), e.f32(0.0))
                return e.select(causal, e.mulf(score, e.exp(exponent)), e.f32(0.0))

            inputs = [scores, k.broadcast(k.iota(self.rows), 1, self.rows), k.broadcast(k.iota(self.rows), 0, self.rows),
                      k.broadcast(hi_i, 1, self.rows), k.broadcast(lo_i, 1, self.rows),
                      k.broadcast(hi_j, 0, self.rows), k.broadcast(lo_j, 0, self.rows), offset]  # fmt: skip
            scores = k.convert(k.map(inputs, decayed), self.operand)
            dt_j = k.broadcast(k.load(self.dt, [j0], [self.rows]), 1, self.block_p)
            dt_x = k.convert(k.map([self.x_rows(j0), dt_j], lambda e, v, dt: e.mulf(v, dt)), self.operand)
            block.yield_(k.mma(scores, dt_x, block.args[0]))
        with k.loop(zero, k.index(self.padded_n), k.index(self.block_n),
                    [k.splat(k.f32(0.0), [self.rows, self.block_p])]) as piece:  # fmt: skip
            c = self.group_rows(i0, self.c_column, piece.iv)
            s = k.convert(k.load(self.s, [piece.iv, zero], [self.block_n, self.block_p]), self.operand)
            piece.yield_(k.mma(c, s, piece.args[0]))
        decay = k.broadcast(k.map([hi_i, lo_i], lambda e, high, low: e.exp(e.addf(high, low))), 1, self.block_p)
        d = k.load(self.d, [self.h])
        y = k.map(
            [block.results[0], piece.results[0], decay, self.x_rows(i0), d],
            lambda e, own, state, w, x, d: e.addf(e.addf(own, e.mulf(state, w)), e.mulf(d, x)),
        )
        k.store(y, self.y, [k.addi(self.start, i0), self.head_column], {0: self.end_row, 1: self.head_end})

    def scores(self, i0: SSAValue, j0: SSAValue) -> SSAValue:
        """C_I · B_Jᵀ [R, R], N in blocks of bn."""
        k = self.kb
        with k.loop(k.index(0), k.index(self.padded_n), k.index(self.block_n),
                    [k.splat(k.f32(0.0), [self.rows, self.rows])]) as piece:  # fmt: skip
            c = self.group_rows(i0, self.c_column, piece.iv)
            b = self.group_rows(j0, self.b_column, piece.iv)
            piece.yield_(k.mma(c, b, piece.args[0], rhs_transposed=True))
        return piece.results[0]

    def update_state(self, end_hi: SSAValue, end_lo: SSAValue) -> None:
        """Sᵀ = exp(cum_end) Sᵀ + Σ_J B_Jᵀ · (x dt exp(cum_end - cum))_J, a block of bn state rows at a time."""
        k = self.kb
        zero = k.index(0)
        end_decay = k.exp(k.addf(end_hi, end_lo))
        with k.loop(zero, k.index(self.padded_n), k.index(self.block_n)) as piece:
            at = [piece.iv, zero]
            s = k.map([k.load(self.s, at, [self.block_n, self.block_p]), end_decay], lambda e, v, w: e.mulf(v, w))
            with k.loop(zero, k.index(self.padded_chunk), k.index(self.rows), [s]) as block:
                j0 = block.iv
                hi_j, lo_j, dt_j = (k.load(buffer, [j0], [self.rows]) for buffer in (self.hi, self.lo, self.dt))
                weights = k.map(
                    [dt_j, hi_j, lo_j, end_hi, end_lo],
                    lambda e, dt, high, low, eh, el: e.mulf(dt, e.exp(e.addf(e.subf(eh, high), e.subf(el, low)))),
                )
                right = k.convert(
                    k.map([self.x_rows(j0), k.broadcast(weights, 1, self.block_p)], lambda e, v, w: e.mulf(v, w)),
                    self.operand,
                )
                b_t = self.group_rows(j0, self.b_column, piece.iv, transposed=True)
                block.yield_(k.mma(b_t, right, block.args[0]))
            k.store(block.results[0], self.s, at)
