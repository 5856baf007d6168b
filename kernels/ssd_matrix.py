"""ssd_scan for a CPU's matrix unit (AMX, --precision bf16): kernels/mamba.py's chunked SSD with every product
a bf16 matrix product in the shape lowering/tile_to_amx.py puts on tile registers — a loop over k carrying
[2 mt, nt] f32 accumulators from zero, its operands bf16 tiles of scratch, the right one in k pairs (what
`interleave` builds), its results stored whole into f32 scratch. A ranged body over heads, a group at a time
(the group's heads share C·Bᵀ), as ChunkedScan; the group's states live as st [H / G, N, P] f32 for the call.

Per group and chunk of L tokens, rows padded to Lp (a multiple of 2 mt), every operand zero past L:

    cs = bf16(C) [Lp, N]    bt = bf16(Bᵀ) [N, Lp]    bp = bt in k pairs [N / 2, 2 Lp]
    cb = cs · bt's pairs     [Lp, Lp] f32, each row pair's blocks up to the diagonal

and per head of the group (dt and cum = hi + lo as ChunkedScan; rows past L: dt 0, cum the chunk's last):

    ya = [bf16(exp(cum_l) C_l) | bf16(S)]       [Lp, N + Lp]   S = cb ∘ exp(cum_l - cum_s), 0 for s > l
    yb = [st in k pairs ; bf16(x dt) in pairs]   [(N + Lp) / 2, 2 P]
    y = ya · yb + D x                            each row pair's k up to N + its end (S is 0 beyond)
    st = exp(cum_end) st + bt · pairs of bf16(x dt exp(cum_end - cum))

The state's product and the chunk's own tokens are one product: exp(cum_l) scales C's row before rounding, so
y needs no second accumulator. Rounded to bf16, as the GPU scan's operand_bf16 rounds them: C, B, the state
the outputs read, the scores, x dt and x dt exp(cum_end - cum); sums and the state stay f32.

Requires N a multiple of 2 mt and P of nt (tiling/x86.py builds this variant only then: every Nemotron-H).
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import bf16, f32, i32
from xdsl.ir import SSAValue

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.mamba import Mixer, cumulative_decay, groups_of, move_states, row_pieces

WIDEST = 64  # columns of the epilogues' and operands' row blocks (a head of 80: 64 + 16)


def fits(dims: Dims, tiles: Mapping[str, int]) -> bool:
    """Whether the mixer's N and P are whole tiles of the matrix unit (the kernel's requirement)."""
    m = Mixer.of(dims)
    return m.state % (2 * tiles["mt"]) == 0 and m.head_dim % tiles["nt"] == 0


class MatrixScan:
    """The body above for a ranged kernel: `heads_of(first, end)`."""

    def __init__(self, k: KernelBuilder, dims: Dims, tiles: Mapping[str, int]) -> None:
        assert fits(dims, tiles), f"ssd_scan on a matrix unit: N and P must be whole tiles, got {dict(dims)}"
        self.kb, self.m = k, Mixer.of(dims)
        self.chunk, self.mt, self.nt, self.kt = (tiles[key] for key in ("chunk", "mt", "nt", "kt"))
        self.pair = 2 * self.mt  # rows of a product's block: two row tiles
        self.time_step_min = float(dims["time_step_min"])
        self.per_group = self.m.heads // self.m.groups
        self.zxbcdt, self.xbc, self.dt_bias, self.a_log, self.d, self.state, self.y = k.buffers
        n, p = self.m.state, self.m.head_dim
        rows = -(-self.chunk // self.pair) * self.pair
        self.st = k.alloc("st", [self.per_group, n, p], f32)
        self.cs = k.alloc("cs", [rows, n], bf16)
        self.bt = k.alloc("bt", [n, rows], bf16)
        self.bp = k.alloc("bp", [n // 2, 2 * rows], bf16)
        self.cb = k.alloc("cb", [rows, rows], f32)
        self.ya = k.alloc("ya", [rows, n + rows], bf16)
        self.yb = k.alloc("yb", [(n + rows) // 2, 2 * p], bf16)
        self.xw = k.alloc("xw", [rows // 2, 2 * p], bf16)
        self.out = k.alloc("out", [self.pair, p], f32)  # a row pair's product: y's rows, or the state's
        self.dt, self.hi, self.lo, self.decay = (k.alloc(name, [rows], f32) for name in ("dt", "hi", "lo", "ecum"))

    def heads_of(self, first: SSAValue, end: SSAValue) -> None:
        """The heads [first, end), a group at a time."""
        k, m = self.kb, self.m
        with groups_of(k, self.per_group, first, end) as (group, base, heads):
            move_states(k, m, (self.state, self.st), heads, base, load=True)
            tokens = k.size(self.xbc)
            with k.loop(k.index(0), tokens, k.index(self.chunk)) as chunk:
                length = k.minsi(k.index(self.chunk), k.subi(tokens, chunk.iv))
                padded = k.muli(k.divsi(k.addi(length, k.index(self.pair - 1)), k.index(self.pair)), k.index(self.pair))
                b_column = k.addi(k.muli(group, k.index(m.state)), k.index(m.inner))
                c_column = k.addi(b_column, k.index(m.groups * m.state))
                self.stage_group(chunk.iv, length, padded, b_column, c_column)
                self.chunk_cb(padded)
                with k.loop(*heads, k.index(1)) as head:
                    local = k.subi(head.iv, base)
                    end_hi, end_lo = self.head_decay(head.iv, chunk.iv, length, padded)
                    self.head_operands(head.iv, local, chunk.iv, length, padded, c_column, (end_hi, end_lo))
                    self.outputs(head.iv, chunk.iv, length, padded)
                    self.update_state(local, padded, k.exp(end_hi))
            move_states(k, m, (self.state, self.st), heads, base, load=False)

    # --- the group's operands -----------------------------------------------------------------------------

    def stage_group(self, start: SSAValue, length: SSAValue, padded: SSAValue, b_column: SSAValue,
                    c_column: SSAValue) -> None:  # fmt: skip
        """cs = bf16(C) and bt = bf16(Bᵀ) of the chunk (zero from `length` to `padded`), bp = bt's k pairs."""
        k, n = self.kb, self.m.state
        zero = k.index(0)
        zeros = k.convert(k.splat(k.f32(0.0), [n]), bf16)
        with k.loop(zero, length, k.index(1)) as row:
            values = k.load(self.xbc, [k.addi(start, row.iv), c_column], [n])
            k.store(k.convert(values, bf16), self.cs, [row.iv, zero])
        whole = k.muli(k.divsi(length, k.index(16)), k.index(16))
        with k.loop(zero, whole, k.index(16)) as block:  # Bᵀ by 16 x 16 blocks stored transposed
            rows = k.addi(start, block.iv)

            def transpose(n0: SSAValue, width: int) -> None:
                values = k.convert(k.load(self.xbc, [rows, k.addi(b_column, n0)], [16, width]), bf16)
                k.store(values, self.bt, [n0, block.iv], axes=(1, 0))

            k.blocks(n, 16, transpose)
        with k.loop(whole, length, k.index(1)) as s:
            values = k.load(self.xbc, [k.addi(start, s.iv), b_column], [n])
            k.store(k.convert(values, bf16), self.bt, [zero, s.iv], axes=(0,))
        with k.loop(length, padded, k.index(1)) as s:
            k.store(zeros, self.cs, [s.iv, zero])
            k.store(zeros, self.bt, [zero, s.iv], axes=(0,))
        with k.loop(zero, k.index(n // 2), k.index(1)) as i:
            with k.loop(zero, padded, k.index(self.pair)) as j:  # bp[i, 2 s + t] = bt[2 i + t, s]
                even = k.load(self.bt, [k.muli(i.iv, k.index(2)), j.iv], [self.pair])
                odd = k.load(self.bt, [k.addi(k.muli(i.iv, k.index(2)), k.index(1)), j.iv], [self.pair])
                k.store(k.interleave(even, odd), self.bp, [i.iv, k.muli(j.iv, k.index(2))])

    def chunk_cb(self, padded: SSAValue) -> None:
        """cb[l, s] = C_l·B_s for each row pair's column pairs up to its diagonal."""
        k, step = self.kb, self.pair
        with k.loop(k.index(0), padded, k.index(step)) as row:
            diagonal_end = k.addi(row.iv, k.index(step))
            with k.loop(k.index(0), diagonal_end, k.index(2 * self.nt)) as column:
                self.product(self.cs, row.iv, self.bp, column.iv, 2, k.index(self.m.state), (self.cb, row.iv))

    def product(self, a: SSAValue, row: SSAValue, b: SSAValue, column: SSAValue, panels: int, depth: SSAValue,
                out: tuple[SSAValue, SSAValue]) -> None:  # fmt: skip
        """out = (buffer, first row): its rows [first, first + 2 mt) x columns [column, column + panels nt) =
        a[row : row + 2 mt, :depth] · b (k pairs, its columns from `column`): the AMX pattern's loop, 2 x
        `panels` accumulators."""
        k, nt, kt = self.kb, self.nt, self.kt
        zero = k.splat(k.f32(0.0), [self.pair, nt])
        with k.loop(k.index(0), depth, k.index(kt), [zero] * panels) as step:
            lhs = k.load(a, [row, step.iv], [self.pair, kt])
            pair_row = k.divsi(step.iv, k.index(2))
            accs = []
            for j, acc in enumerate(step.args):
                pair_column = k.muli(k.addi(column, k.index(j * nt)), k.index(2))
                accs.append(k.mma(lhs, k.load(b, [pair_row, pair_column], [kt // 2, 2 * nt]), acc, rhs_pairs=True))
            step.yield_(*accs)
        buffer, first = out
        for j, acc in enumerate(step.results):
            k.store(acc, buffer, [first, k.addi(column, k.index(j * nt))])

    def column_products(self, a: SSAValue, row: SSAValue, b: SSAValue, depth: SSAValue) -> None:
        """self.out = the row pair of a from `row` times b, every column of P: panel pairs, then the odd last."""
        k, nt, p = self.kb, self.nt, self.m.head_dim
        panels, out = p // nt, (self.out, k.index(0))
        if panels >= 2:
            with k.loop(k.index(0), k.index(panels // 2 * 2 * nt), k.index(2 * nt)) as column:
                self.product(a, row, b, column.iv, 2, depth, out)
        if panels % 2:
            self.product(a, row, b, k.index((panels - 1) * nt), 1, depth, out)

    # --- each head ------------------------------------------------------------------------------------------

    def head_decay(self, head: SSAValue, start: SSAValue, length: SSAValue,
                   padded: SSAValue) -> tuple[SSAValue, SSAValue]:  # fmt: skip
        """dt, hi, lo and exp(cum) of the chunk's rows (ChunkedScan's), the padding rows dt 0 and the last cum;
        returns the chunk's last (hi, lo)."""
        k = self.kb
        rows = (self.dt, self.hi, self.lo, self.decay)
        end = cumulative_decay(k, self.m, k.buffers, head, start, length, self.time_step_min, rows)
        with k.loop(length, padded, k.index(1)) as row:
            for value, buffer in zip((k.f32(0.0), *end, k.f32(0.0)), rows, strict=True):
                k.store(value, buffer, [row.iv])
        return end

    def head_operands(self, head: SSAValue, local: SSAValue, start: SSAValue, length: SSAValue, padded: SSAValue,
                      c_column: SSAValue, end: tuple[SSAValue, SSAValue]) -> None:  # fmt: skip
        """ya, yb and xw of the head (the module docstring's)."""
        k, m = self.kb, self.m
        n, p, zero = m.state, m.head_dim, k.index(0)
        with k.loop(zero, padded, k.index(1)) as row:  # ya's left: exp(cum_l) C_l (cs's zero rows past L)
            source = k.addi(start, k.minsi(row.iv, k.subi(length, k.index(1))))
            c = k.load(self.xbc, [source, c_column], [n])
            scaled = k.map([c, k.load(self.decay, [row.iv])], lambda e, v, w: e.mulf(v, w))
            k.store(k.convert(scaled, bf16), self.ya, [row.iv, zero])
        self.scores(padded)
        with k.loop(zero, k.index(n // 2), k.index(1)) as i:  # yb's top: the state's k pairs
            for c0, width in row_pieces(p, WIDEST):
                even, odd = (k.load(self.st, [local, k.addi(k.muli(i.iv, k.index(2)), k.index(t)), k.index(c0)], [width])
                             for t in (0, 1))  # fmt: skip
                pair = k.interleave(k.convert(even, bf16), k.convert(odd, bf16))
                k.store(pair, self.yb, [i.iv, k.index(2 * c0)])
        head_column = k.muli(head, k.index(p))
        end_hi, end_lo = end
        with k.loop(zero, k.divsi(padded, k.index(2)), k.index(1)) as i:  # x dt and x dt exp(cum_end - cum)
            sources, dts, weights = [], [], []
            for t in (0, 1):
                chunk_row = k.addi(k.muli(i.iv, k.index(2)), k.index(t))
                sources.append(k.addi(start, k.minsi(chunk_row, k.subi(length, k.index(1)))))  # dt is 0 past L
                dts.append(k.load(self.dt, [chunk_row]))
                to_end = k.addf(
                    k.subf(end_hi, k.load(self.hi, [chunk_row])), k.subf(end_lo, k.load(self.lo, [chunk_row]))
                )
                weights.append(k.exp(to_end))
            for c0, width in row_pieces(p, WIDEST):
                xs, xw = [], []
                for source, dt, weight in zip(sources, dts, weights, strict=True):
                    x = k.load(self.xbc, [source, k.addi(head_column, k.index(c0))], [width])
                    value = k.map([x, dt], lambda e, v, d: e.mulf(v, d))
                    xs.append(k.convert(value, bf16))
                    xw.append(k.convert(k.map([value, weight], lambda e, v, w: e.mulf(v, w)), bf16))
                k.store(k.interleave(*xs), self.yb, [k.addi(i.iv, k.index(n // 2)), k.index(2 * c0)])
                k.store(k.interleave(*xw), self.xw, [i.iv, k.index(2 * c0)])

    def scores(self, padded: SSAValue) -> None:
        """ya[l, N + s] = bf16(cb[l, s] exp((hi_l - hi_s) + (lo_l - lo_s))) for s <= l, else 0, over the
        columns of l's row pair up to its end (what the outputs' product reads): blocks of 16 up to the one
        holding the diagonal, then one block of zeros where the pair's end lies past it."""
        k, lanes, step = self.kb, 16, self.pair
        n = self.m.state
        zeros = k.convert(k.splat(k.f32(0.0), [lanes]), bf16)
        with k.loop(k.index(0), padded, k.index(1)) as row:
            l = row.iv  # noqa: E741
            hi, lo, diagonal = k.load(self.hi, [l]), k.load(self.lo, [l]), k.cast(l, i32)
            diagonal_end = k.muli(k.addi(k.divsi(l, k.index(lanes)), k.index(1)), k.index(lanes))
            pair_end = k.muli(k.addi(k.divsi(l, k.index(step)), k.index(1)), k.index(step))
            with k.when(k.cmpi("slt", diagonal_end, pair_end)):  # one block (a loop of stores: a memset call,
                k.store(zeros, self.ya, [l, k.addi(diagonal_end, k.index(n))])  # and AMX's ldtilecfg after it)
            with k.loop(k.index(0), diagonal_end, k.index(lanes)) as block:
                s0 = block.iv
                inputs = [k.load(self.cb, [l, s0], [lanes]), k.load(self.hi, [s0], [lanes]),
                          k.load(self.lo, [s0], [lanes]), k.iota(lanes), hi, lo, k.cast(s0, i32), diagonal]  # fmt: skip

                def score(e: KernelBuilder, cb: SSAValue, hi_s: SSAValue, lo_s: SSAValue, at: SSAValue,
                          hi_l: SSAValue, lo_l: SSAValue, first: SSAValue, last: SSAValue) -> SSAValue:  # fmt: skip
                    causal = e.cmpi("sle", e.addi(at, first), last)
                    exponent = e.select(causal, e.addf(e.subf(hi_l, hi_s), e.subf(lo_l, lo_s)), e.f32(0.0))
                    return e.select(causal, e.mulf(cb, e.exp(exponent)), e.f32(0.0))

                k.store(k.convert(k.map(inputs, score), bf16), self.ya, [l, k.addi(s0, k.index(n))])

    def outputs(self, head: SSAValue, start: SSAValue, length: SSAValue, padded: SSAValue) -> None:
        """y rows of the chunk = ya · yb + D x, a row pair at a time."""
        k, m = self.kb, self.m
        d = k.load(self.d, [head])
        head_column = k.muli(head, k.index(m.head_dim))
        with k.loop(k.index(0), padded, k.index(self.pair)) as pair:
            depth = k.addi(k.index(m.state), k.addi(pair.iv, k.index(self.pair)))
            self.column_products(self.ya, pair.iv, self.yb, depth)
            rows = k.minsi(k.index(self.pair), k.subi(length, pair.iv))
            with k.loop(k.index(0), rows, k.index(1)) as r:
                row = k.addi(pair.iv, r.iv)
                token = k.addi(start, row)
                for c0, width in row_pieces(m.head_dim, WIDEST):
                    column = k.addi(head_column, k.index(c0))
                    acc = k.load(self.out, [r.iv, k.index(c0)], [width])
                    x = k.load(self.xbc, [token, column], [width])
                    k.store(k.map([acc, x, d], lambda e, a, v, dd: e.addf(a, e.mulf(dd, v))), self.y, [token, column])

    def update_state(self, local: SSAValue, padded: SSAValue, end_decay: SSAValue) -> None:
        """st = exp(cum_end) st + bt · xw, a row pair of N at a time."""
        k, m = self.kb, self.m
        with k.loop(k.index(0), k.index(m.state), k.index(self.pair)) as pair:
            self.column_products(self.bt, pair.iv, self.xw, padded)
            with k.loop(k.index(0), k.index(self.pair), k.index(1)) as r:
                n = k.addi(pair.iv, r.iv)
                for c0, width in row_pieces(m.head_dim, WIDEST):
                    at = [local, n, k.index(c0)]
                    old, new = k.load(self.st, at, [width]), k.load(self.out, [r.iv, k.index(c0)], [width])
                    k.store(k.map([old, new, end_decay], lambda e, s, u, w: e.addf(e.mulf(w, s), u)), self.st, at)
