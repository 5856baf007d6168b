"""The Mamba-2 mixer's kernels written once. Notation: H heads of P channels, G groups of state size N (head
h reads group h // (H / G)), I = H P, conv channels C = I + 2 G N, K conv taps, chunk L; in_proj's row zxbcdt
[T, W], W = 2 I + 2 G N + H: z = columns [0, I), xBC = [I, I + C) (x, then B = [I, I + G N) and C within
xBC), dt_raw = [I + C, I + C + H).

    conv_silu(zxbcdt f32 [T, W], conv_weight f32 [C, K], [conv_bias f32 [C]], conv_state f32 [C, K - 1],
              xbc f32 [T, C])
        one program per panel of `panel` channels, `block` at a time (a CPU's panel is several blocks, a GPU's
        one wave's block): with input = [conv_state^T ; xBC] (the carried inputs, oldest first, then this
        call's rows), xbc[t, c] = silu(bias[c] + sum_k w[c, k] input[t + k, c]) (k ascending), then
        conv_state[c, :] := the last K - 1 rows of input, for any T (T < K - 1 and T = 0 included). The rows
        pass in chunks of `chunk`; within a chunk each block walks the rows holding its taps and a sliding
        window of its last K - 1 inputs in registers (loop-carried tiles), so each input is read once, and
        leaves its window in scratch for the next chunk. The taps and the carried inputs, columns of their
        buffers (tiles along dimension 0), are staged once as rows of the panel's scratch.

    ssd_scan(zxbcdt, xbc f32 [T, C], dt_bias, A_log, D f32 [H], ssm_state (f32 | bf16) [H, P, N], y f32 [T, I])
        prefill: the chunked SSD (reference.mamba2.ssd_chunked) of the heads [first, end) (a ranged body; the
        runtime splits it on group boundaries), resuming from ssm_state and writing the final state back:
        dt = max(softplus(dt_raw + dt_bias), time_step_min), A = -exp(A_log), y = ssd + D[h] x. Loop order:
        group, chunk, head. The group's head states live transposed, st [H / G, N, P] f32, for the call.
        Per (group, chunk): bt = Bᵀ [N, L] and cb = C·Bᵀ [L, L] (rows of `mr`, columns in pieces of `nr` up
        to the diagonal), shared by the group's heads. Per head: cum = the cumulative dt A, summed as an f32
        pair hi + lo (Knuth's TwoSum: each segment sum cum[l] - cum[s] = (hi_l - hi_s) + (lo_l - lo_s) keeps
        its precision however large |cum| grows); scores S[l, s] = cb[l, s] exp(cum[l] - cum[s]) for s <= l,
        else 0 (the exponent selected to 0 first: never exp of a positive difference), `lanes` columns at a
        time up to the diagonal; y rows = exp(cum[l]) C[l]·st + S·(x dt) + D x; then st = exp(cum[-1]) st +
        Bᵀ·(x dt exp(cum[-1] - cum)). Each product is register blocks of mr rows x nr columns (a narrower
        piece of P, more rows: as many accumulators), one mma per step of its reduction. A bf16 state is
        widened on entry and rounded once at the end of the call.

    ssd_step(zxbcdt, xbc f32 [T, C], dt_bias, A_log, D f32 [H], ssm_state (f32 | bf16) [H, P, N], y f32 [T, I])
        the decode step of the SSD recurrence, one program per head h, for each token t in order:
        dt = softplus(dt_raw[t, h] + dt_bias[h]) (no time_step_min clamp: HF's decode step has none),
        decay = exp(dt A), A = -exp(A_log[h]); for each row p of the head's state, in tiles of `block` along N:
        state[h, p, :] = decay state[h, p, :] + (dt x[t, p]) B[t, :] (stored rounded when the state is bf16,
        and the stored value is the one y uses), y[t, h P + p] = D[h] x[t, p] + sum_n state[h, p, n] C[t, n].

    gated_rmsnorm(zxbcdt f32 [T, W], y f32 [T, I], norm_weight f32 [I], out (f32 | bf16) [T, I])
        one program per token t, for each group g of I / G columns c:
        gated[c] = y[t, c] * silu(z[t, c]); s = sum_c gated[c]^2;
        out[t, c] = (gated[c] * rsqrt(s / (I / G) + eps)) * norm_weight[c], rounded once when out is bf16.
        The second pass recomputes gated (the same ops give the same bits) rather than storing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from xdsl.dialects.builtin import MemRefType, bf16, f32, i32
from xdsl.ir import Attribute, Block, SSAValue

from tessera.dialects.tile import TileType
from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.gemm import row_blocks, stripe_width
from tessera.kernels.rows import rows
from tessera.kernels.ssd_blocks import BlockScan


@dataclass(frozen=True)
class Mixer:
    """The mixer's sizes, read from a kernel's dims."""

    heads: int
    head_dim: int
    groups: int
    state: int

    @classmethod
    def of(cls, dims: Dims) -> Mixer:
        return cls(*(int(dims[key]) for key in ("num_heads", "head_dim", "n_groups", "state_size")))

    @property
    def inner(self) -> int:  # I
        return self.heads * self.head_dim

    @property
    def channels(self) -> int:  # C
        return self.inner + 2 * self.groups * self.state

    @property
    def width(self) -> int:  # W
        return self.inner + self.channels + self.heads


def _element(dims: Dims, key: str) -> Attribute:
    return bf16 if dims.get(key, "f32") == "bf16" else f32


def conv_silu(dims: Dims, tiles: Mapping[str, int]) -> Block:
    if "rows" in tiles:
        return conv_silu_token_blocks(dims, tiles)
    m, taps, block = Mixer.of(dims), int(dims["conv_kernel"]), tiles["block"]
    panel, channels, carried = tiles.get("panel", block), m.channels, taps - 1
    chunk = tiles.get("chunk", 2**30)  # rows a block walks before the next block (default: all of them)
    has_bias = bool(int(dims.get("conv_bias", 1)))
    k = KernelBuilder(_conv_buffers(m, taps, has_bias))
    zxbcdt, weight, *bias_buffer, state, xbc = k.buffers
    first = k.muli(k.program_id, k.index(panel))
    last = k.minsi(k.addi(first, k.index(panel)), k.index(channels))
    bound = None if channels % block == 0 else k.index(channels)
    input_bound = None if bound is None else k.index(m.inner + channels)

    def column(buffer: SSAValue, c: SSAValue, j: int) -> SSAValue:
        """Column j of a [C, n] buffer at channels c.. (a tile along dimension 0)."""
        return k.load(buffer, [c, k.index(j)], [block], bound, axes=[0])

    @contextmanager
    def blocks() -> Iterator[tuple[SSAValue, SSAValue]]:
        """The panel's channel blocks: (first channel c, its column in the scratch buffers)."""
        with k.loop(first, last, k.index(block)) as each:
            yield each.iv, k.subi(each.iv, first)

    # The taps and the window of each block (its last K - 1 inputs, oldest first; the carried ones to start),
    # columns of their buffers, staged once as rows of the panel's scratch.
    taps_t, history = k.alloc("taps", [taps, panel], f32), k.alloc("history", [max(carried, 1), panel], f32)
    with blocks() as (c, col):
        for j in range(taps):
            k.store(column(weight, c, j), taps_t, [k.index(j), col])
        for j in range(carried):
            k.store(column(state, c, j), history, [k.index(j), col])
    # Chunks of `chunk` rows, block by block within a chunk (the chunk's rows of the panel stay in cache
    # while its blocks pass): each block walks the chunk with its taps and its window in registers
    # (loop-carried tiles), so that each input is read once, whatever K.
    tokens = k.size(xbc)
    with k.loop(k.index(0), tokens, k.index(chunk)) as rows_from:
        rows_to = k.minsi(k.addi(rows_from.iv, k.index(chunk)), tokens)
        with blocks() as (c, col):
            w = [k.load(taps_t, [k.index(j), col], [block]) for j in range(taps)]
            bias = k.load(bias_buffer[0], [c], [block], bound) if has_bias else None
            window = [k.load(history, [k.index(j), col], [block]) for j in range(carried)]
            with k.loop(rows_from.iv, rows_to, k.index(1), window) as row:
                newest = k.load(zxbcdt, [row.iv, k.addi(c, k.index(m.inner))], [block], input_bound)
                inputs = [*row.args, newest]
                k.store(_conv_row(k, w, bias, inputs), xbc, [row.iv, c], bound)
                row.yield_(*inputs[1:])
            for j, value in enumerate(row.results):
                k.store(value, history, [k.index(j), col])
    # conv_state := the last K - 1 inputs of [carried ; this call's rows] (the carried ones when T = 0).
    with blocks() as (c, col):
        for j in range(carried):
            k.store(k.load(history, [k.index(j), col], [block]), state, [c, k.index(j)], bound, axes=[0])
    return k.finish()


def _conv_row(k: KernelBuilder, taps: list[SSAValue], bias: SSAValue | None, inputs: list[SSAValue]) -> SSAValue:
    """SiLU(bias + Σ_j taps[j] inputs[j]): one output row of the channels (inputs oldest first, the row's own
    last)."""
    acc = bias
    for tap, value in zip(taps, inputs, strict=True):
        if acc is None:
            acc = k.map([tap, value], lambda e, t, v: e.mulf(t, v))
        else:
            acc = k.map([acc, tap, value], lambda e, a, t, v: e.addf(a, e.mulf(t, v)))
    assert acc is not None
    return k.map([acc], lambda e, a: e.silu(a))


def _conv_buffers(m: Mixer, taps: int, has_bias: bool) -> dict[str, MemRefType]:
    buffers = {"zxbcdt": rows(m.width, f32), "conv_weight": MemRefType(f32, [m.channels, taps])}
    if has_bias:
        buffers["conv_bias"] = MemRefType(f32, [m.channels])
    return buffers | {"conv_state": MemRefType(f32, [m.channels, taps - 1]), "xbc": rows(m.channels, f32)}


def conv_silu_token_blocks(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """conv_silu with the call's rows walked in parallel (a GPU's form, tiles `rows`): a program per `block`
    channels and block of `rows` tokens (rows >= K - 1), its window the K - 1 inputs before its first row —
    conv_state's columns for block 0, the call's rows before it for the others. Block 0 alone touches
    conv_state: having read it, it writes the last K - 1 inputs of [carried ; the call's rows] — column j
    the call's row T - (K - 1) + j, or before the call's first row the carried column j + T (read before
    that column is written: columns are written in order), so no program reads a column another writes."""
    m, taps, block, per_block = Mixer.of(dims), int(dims["conv_kernel"]), tiles["block"], tiles["rows"]
    carried, has_bias = taps - 1, bool(int(dims.get("conv_bias", 1)))
    assert per_block >= carried, "a block's window lies in the call's rows or in conv_state, not both"
    k = KernelBuilder(_conv_buffers(m, taps, has_bias), token_blocks=True)
    zxbcdt, weight, *bias_buffer, state, xbc = k.buffers
    c = k.muli(k.program_id, k.index(block))
    bound = None if m.channels % block == 0 else k.index(m.channels)
    input_bound = None if bound is None else k.index(m.inner + m.channels)
    tokens, zero = k.size(xbc), k.index(0)
    start = k.muli(k.token_block_id, k.index(per_block))
    end = k.minsi(k.addi(start, k.index(per_block)), tokens)
    first_block = k.cmpi("eq", k.token_block_id, zero)

    def column(buffer: SSAValue, j: SSAValue | int) -> SSAValue:
        """Column j of a [C, n] buffer at the program's channels (a tile along dimension 0)."""
        return k.load(buffer, [c, k.index(j) if isinstance(j, int) else j], [block], bound, axes=[0])

    def input_row(row: SSAValue) -> SSAValue:
        return k.load(zxbcdt, [row, k.addi(c, k.index(m.inner))], [block], input_bound)

    def either(condition: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
        return k.map([x, y, condition], lambda e, a, b, pick: e.select(pick, a, b))

    w = [column(weight, j) for j in range(taps)]
    bias = k.load(bias_buffer[0], [c], [block], bound) if has_bias else None
    window = []
    for j in range(carried):  # the call's row start - (K - 1) + j: conv_state's column j where start = 0
        before = k.maxsi(k.subi(start, k.index(carried - j)), zero)
        window.append(either(first_block, column(state, j), input_row(before)))
    with k.loop(start, end, k.index(1), window) as row:
        inputs = [*row.args, input_row(row.iv)]
        k.store(_conv_row(k, w, bias, inputs), xbc, [row.iv, c], bound)
        row.yield_(*inputs[1:])
    with k.when(first_block):
        for j in range(carried):
            at = k.subi(k.addi(tokens, k.index(j)), k.index(carried))  # the call's row T - (K - 1) + j
            in_call = k.cmpi("sge", at, zero)
            old = column(state, k.minsi(k.addi(tokens, k.index(j)), k.index(carried - 1)))
            k.store(either(in_call, input_row(k.maxsi(at, zero)), old), state, [c, k.index(j)], bound, axes=[0])
    return k.finish()


def row_pieces(width: int, widest: int) -> list[tuple[int, int]]:
    """(first column, columns) of the blocks across a row of `width` columns (a multiple of the lanes): `widest`
    wide, then the rest in powers of two (80 = 64 + 16, 48 = 32 + 16: a row of another width costs the x86
    lowering several times over, LLVM splitting it in halves down to partial vectors)."""
    pieces, c0 = [], 0
    while c0 < width:
        size = min(widest, 1 << (width - c0).bit_length() - 1)
        pieces.append((c0, size))
        c0 += size
    return pieces


@contextmanager
def groups_of(k: KernelBuilder, per_group: int, first: SSAValue,
              end: SSAValue) -> Iterator[tuple[SSAValue, SSAValue, tuple[SSAValue, SSAValue]]]:  # fmt: skip
    """A loop over the groups holding the heads [first, end) (groups of `per_group`): yields the group, its
    first head and the range's heads in it."""
    size = k.index(per_group)
    first_group = k.divsi(first, size)
    last_group = k.divsi(k.addi(end, k.index(per_group - 1)), size)
    last_group = k.select(k.cmpi("slt", first, end), last_group, first_group)  # an empty range: no group
    with k.loop(first_group, last_group, k.index(1)) as g:
        base = k.muli(g.iv, size)
        yield g.iv, base, (k.maxsi(first, base), k.minsi(end, k.addi(base, size)))


def move_states(k: KernelBuilder, m: Mixer, buffers: tuple[SSAValue, SSAValue], heads: tuple[SSAValue, SSAValue],
                base: SSAValue, load: bool) -> None:  # fmt: skip
    """ssm_state[h, p, :] (f32 or bf16) <-> st[h - base, :, p] (f32) for the heads [heads) of the group from
    `base`; `buffers`: (ssm_state, st). Where P and N are multiples of 16, by 16 x 16 blocks, each stored
    transposed (16 vector shuffles' worth of work, where a row stored along a strided dimension is an element
    at a time: measured, a prompt of 5 tokens took 1.6x the emitter's time that way)."""
    state, st = buffers
    assert isinstance(state.type, MemRefType)
    state_element, zero = state.type.element_type, k.index(0)

    def by_rows(head: SSAValue, local: SSAValue) -> None:
        with k.loop(zero, k.index(m.head_dim), k.index(1)) as p:
            if load:
                row = k.convert(k.load(state, [head, p.iv, zero], [m.state]), f32)
                k.store(row, st, [local, zero, p.iv], axes=(1,))
            else:
                row = k.load(st, [local, zero, p.iv], [m.state], axes=(1,))
                k.store(k.convert(row, state_element), state, [head, p.iv, zero])

    def by_blocks(head: SSAValue, local: SSAValue) -> None:
        def rows(p0: SSAValue, _: int) -> None:
            def block(n0: SSAValue, _: int) -> None:
                if load:
                    values = k.convert(k.load(state, [head, p0, n0], [16, 16]), f32)
                    k.store(values, st, [local, n0, p0], axes=(2, 1))
                else:
                    values = k.convert(k.load(st, [local, n0, p0], [16, 16]), state_element)
                    k.store(values, state, [head, p0, n0], axes=(2, 1))

            k.blocks(m.state, 16, block)

        k.blocks(m.head_dim, 16, rows)

    with k.loop(*heads, k.index(1)) as head:
        move = by_rows if m.head_dim % 16 or m.state % 16 else by_blocks
        move(head.iv, k.subi(head.iv, base))


def cumulative_decay(k: KernelBuilder, m: Mixer, buffers: Sequence[SSAValue], head: SSAValue, start: SSAValue,
                     length: SSAValue, time_step_min: float, rows: Sequence[SSAValue]) -> tuple[SSAValue, SSAValue]:  # fmt: skip
    """Into `rows` (dt, hi, lo, exp(cum): f32 [>= length] each), for the chunk's rows l < length of head:
    dt = max(softplus(dt_raw + dt_bias), time_step_min) and cum = the cumulative dt A as hi + lo; returns
    the chunk's last (hi, lo). `buffers`: ssd_scan's launch buffers. dt and exp(cum) 16 rows at a time (dt_raw
    a column of zxbcdt), so that only the TwoSum's chain of additions runs a row at a time (the scalar
    softplus and exp measured 13% of the AMX scan's time)."""
    zxbcdt, _, dt_bias, a_log = buffers[:4]
    dt_rows, hi_rows, lo_rows, decay_rows = rows
    zero, lanes = k.f32(0.0), 16
    a = k.negf(k.exp(k.load(a_log, [head])))
    bias = k.load(dt_bias, [head])
    raw_column = k.addi(head, k.index(m.inner + m.channels))
    with k.loop(k.index(0), length, k.index(lanes)) as block:
        raw = k.load(zxbcdt, [k.addi(start, block.iv), raw_column], [lanes], k.addi(start, length), axes=(0,))
        dt = k.map([raw, bias], lambda e, r, b: e.maximumf(e.softplus(e.addf(r, b)), e.f32(time_step_min)))
        k.store(dt, dt_rows, [block.iv], length)
    with k.loop(k.index(0), length, k.index(1), [zero, zero]) as row:
        step, (hi, lo) = k.mulf(k.load(dt_rows, [row.iv]), a), row.args
        # TwoSum: total + error = hi + step exactly; the errors gather in lo.
        total = k.addf(hi, step)
        step_part = k.subf(total, hi)
        error = k.addf(k.subf(hi, k.subf(total, step_part)), k.subf(step, step_part))
        lo = k.addf(lo, error)
        k.store(total, hi_rows, [row.iv])
        k.store(lo, lo_rows, [row.iv])
        row.yield_(total, lo)
    with k.loop(k.index(0), length, k.index(lanes)) as block:
        decay = k.map([k.load(hi_rows, [block.iv], [lanes], length)], lambda e, cum: e.exp(cum))
        k.store(decay, decay_rows, [block.iv], length)
    return row.results[0], row.results[1]


@dataclass(frozen=True)
class _Walk:
    """A product's operand along its reduction index j: the tiles of `buffer` at `start` with j added to the
    index of dimension `axis`."""

    buffer: SSAValue
    start: list[SSAValue]
    axis: int

    def at(self, k: KernelBuilder, j: SSAValue) -> list[SSAValue]:
        return [k.addi(index, j) if i == self.axis else index for i, index in enumerate(self.start)]


class ChunkedScan:
    """ssd_scan as the module docstring says: `heads_of(first, end)` builds the body of a ranged kernel."""

    def __init__(self, k: KernelBuilder, dims: Dims, tiles: Mapping[str, int]) -> None:
        self.kb, self.m = k, Mixer.of(dims)
        self.chunk, self.mr, self.lanes = (tiles[key] for key in ("chunk", "mr", "lanes"))
        # The products' register blocks: mr x nr where their accumulators fit the target's registers, else
        # narrower (AVX2's 16 ymm registers: 4 x 16).
        self.nr = stripe_width(self.mr, tiles)
        # A row's scores reach its lanes block's end: a row block must not straddle two (powers of two).
        assert self.lanes % self.mr == 0 and self.mr & (self.mr - 1) == 0, f"ssd_scan: mr {self.mr}, lanes {self.lanes}"
        self.state_element = _element(dims, "state_dtype")
        self.time_step_min = float(dims["time_step_min"])
        self.per_group = self.m.heads // self.m.groups
        self.padded_p = -(-self.m.head_dim // self.lanes) * self.lanes
        padded_chunk = -(-self.chunk // self.lanes) * self.lanes
        self.zxbcdt, self.xbc, self.dt_bias, self.a_log, self.d, self.state, self.y = k.buffers
        m, chunk = self.m, self.chunk
        self.st = k.alloc("st", [self.per_group, m.state, self.padded_p], f32)  # the group's states, [N, P] each
        self.bt = k.alloc("bt", [m.state, padded_chunk], f32)  # Bᵀ of the chunk
        self.cb = k.alloc("cb", [chunk, padded_chunk], f32)  # C·Bᵀ of the chunk, up to the diagonal
        self.scores = k.alloc("sc", [chunk, padded_chunk], f32)  # one head's C·Bᵀ ∘ decay
        self.xs = k.alloc("xs", [chunk, self.padded_p], f32)  # x dt
        self.xw = k.alloc("xw", [chunk, self.padded_p], f32)  # x dt exp(cum[-1] - cum)
        self.hi, self.lo = (k.alloc(name, [padded_chunk], f32) for name in ("hi", "lo"))  # cum = hi + lo
        self.decay = k.alloc("ecum", [chunk], f32)  # exp(cum)
        self.dt = k.alloc("dt", [chunk], f32)

    def heads_of(self, first: SSAValue, end: SSAValue) -> None:
        """The heads [first, end), a group at a time."""
        k = self.kb
        with groups_of(k, self.per_group, first, end) as (group, base, heads):
            move_states(k, self.m, (self.state, self.st), heads, base, load=True)
            tokens = k.size(self.xbc)
            with k.loop(k.index(0), tokens, k.index(self.chunk)) as chunk:
                length = k.minsi(k.index(self.chunk), k.subi(tokens, chunk.iv))
                b_column = k.addi(k.muli(group, k.index(self.m.state)), k.index(self.m.inner))
                c_column = k.addi(b_column, k.index(self.m.groups * self.m.state))
                self.transpose_b(chunk.iv, length, b_column)
                self.chunk_cb(chunk.iv, length, c_column)
                with k.loop(*heads, k.index(1)) as head:
                    local = k.subi(head.iv, base)
                    end_decay = self.head_decay(head.iv, chunk.iv, length)
                    self.causal_scores(length)
                    self.outputs(head.iv, local, chunk.iv, length, c_column)
                    self.update_state(local, length, end_decay)
            move_states(k, self.m, (self.state, self.st), heads, base, load=False)

    def transpose_b(self, start: SSAValue, length: SSAValue, b_column: SSAValue) -> None:
        """bt[n, s] = B[start + s, n] for s < length: blocks of 16 tokens by 16 states, then tokens alone."""
        k, n, zero = self.kb, self.m.state, self.kb.index(0)
        whole = k.muli(k.divsi(length, k.index(16)), k.index(16))
        with k.loop(zero, whole, k.index(16)) as block:
            rows = k.addi(start, block.iv)

            def transpose(n0: SSAValue, width: int) -> None:
                values = k.load(self.xbc, [rows, k.addi(b_column, n0)], [16, width])
                k.store(values, self.bt, [n0, block.iv], axes=(1, 0))

            k.blocks(n, 16, transpose)  # a loop: each 16 x 16 block is 64 shuffles, costly to compile unrolled
        with k.loop(whole, length, k.index(1)) as s:
            row = k.load(self.xbc, [k.addi(start, s.iv), b_column], [n])
            k.store(row, self.bt, [zero, s.iv], axes=(0,))

    def product(self, acc: SSAValue, lo: SSAValue, hi: SSAValue, column: _Walk, row: _Walk) -> SSAValue:
        """acc [rows, columns] + the sum over j in [lo, hi) of column's tile [rows, 1] times row's [1, columns]
        at j: a register block, one mma per step."""
        k = self.kb
        assert isinstance(acc.type, TileType)
        rows, columns = acc.type.get_shape()
        with k.loop(lo, hi, k.index(1), [acc]) as step:
            a = k.load(column.buffer, column.at(k, step.iv), [rows, 1])
            b = k.load(row.buffer, row.at(k, step.iv), [1, columns])
            step.yield_(k.mma(a, b, step.args[0]))
        return step.results[0]

    def pieces(self, width: int) -> list[tuple[int, int]]:
        return row_pieces(width, self.nr)

    def rows_for(self, width: int) -> int:
        """The rows of a register block `width` columns wide: as many accumulators as mr x nr (a narrow
        piece takes more rows, so that its FMA chains still cover the latency), at most `lanes`."""
        return min(self.lanes, self.mr * max(1, self.nr // width))

    def chunk_cb(self, start: SSAValue, length: SSAValue, c_column: SSAValue) -> None:
        """cb[l, s] = C[start + l]·B[start + s] for the column pieces at or left of each row block's diagonal."""
        k = self.kb
        assert isinstance(self.cb.type, MemRefType)
        zero, columns = k.index(0), self.cb.type.get_shape()[1]

        def block(l0: SSAValue, size: int) -> None:
            rows = k.addi(start, l0)
            for c0, width in self.pieces(columns):
                with k.when(k.cmpi("slt", k.index(c0), k.addi(l0, k.index(size)))):
                    acc = self.product(
                        k.splat(k.f32(0.0), [size, width]), zero, k.index(self.m.state),
                        _Walk(self.xbc, [rows, c_column], 1), _Walk(self.bt, [zero, k.index(c0)], 0),
                    )  # fmt: skip
                    k.store(acc, self.cb, [l0, k.index(c0)])

        row_blocks(k, zero, length, self.mr, block)

    def head_decay(self, head: SSAValue, start: SSAValue, length: SSAValue) -> SSAValue:
        """dt, cum (hi, lo) and exp(cum) of the chunk's rows, then x dt and x dt exp(cum[-1] - cum); returns
        exp(cum[-1])."""
        k, m = self.kb, self.m
        rows = (self.dt, self.hi, self.lo, self.decay)
        end_hi, end_lo = cumulative_decay(k, m, self.kb.buffers, head, start, length, self.time_step_min, rows)
        head_column = k.muli(head, k.index(m.head_dim))
        bound = None if m.head_dim == self.padded_p else k.addi(head_column, k.index(m.head_dim))
        with k.loop(k.index(0), length, k.index(1)) as row:
            to_end = k.addf(k.subf(end_hi, k.load(self.hi, [row.iv])), k.subf(end_lo, k.load(self.lo, [row.iv])))
            x = k.load(self.xbc, [k.addi(start, row.iv), head_column], [self.padded_p], bound)
            xs = k.map([x, k.load(self.dt, [row.iv])], lambda e, v, dt: e.mulf(v, dt))
            k.store(xs, self.xs, [row.iv, k.index(0)])
            k.store(k.map([xs, k.exp(to_end)], lambda e, v, w: e.mulf(v, w)), self.xw, [row.iv, k.index(0)])
        return k.exp(end_hi)

    def causal_scores(self, length: SSAValue) -> None:
        """scores[l, s] = cb[l, s] exp((hi_l - hi_s) + (lo_l - lo_s)) for s <= l, else 0, `lanes` columns at a
        time up to the diagonal."""
        k, lanes = self.kb, self.lanes
        with k.loop(k.index(0), length, k.index(1)) as row:
            l = row.iv  # noqa: E741
            hi, lo, diagonal = k.load(self.hi, [l]), k.load(self.lo, [l]), k.cast(l, i32)
            blocks = k.addi(k.divsi(l, k.index(lanes)), k.index(1))
            with k.loop(k.index(0), blocks, k.index(1)) as block:
                s0 = k.muli(block.iv, k.index(lanes))
                first = k.cast(s0, i32)
                inputs = [k.load(self.cb, [l, s0], [lanes]), k.load(self.hi, [s0], [lanes]),
                          k.load(self.lo, [s0], [lanes]), k.iota(lanes), hi, lo, first, diagonal]  # fmt: skip

                def score(e: KernelBuilder, cb: SSAValue, hi_s: SSAValue, lo_s: SSAValue, at: SSAValue,
                          hi_l: SSAValue, lo_l: SSAValue, s0: SSAValue, row: SSAValue) -> SSAValue:  # fmt: skip
                    causal = e.cmpi("sle", e.addi(at, s0), row)
                    exponent = e.select(causal, e.addf(e.subf(hi_l, hi_s), e.subf(lo_l, lo_s)), e.f32(0.0))
                    return e.select(causal, e.mulf(cb, e.exp(exponent)), e.f32(0.0))

                k.store(k.map(inputs, score), self.scores, [l, s0])

    def outputs(self, head: SSAValue, local: SSAValue, start: SSAValue, length: SSAValue,
                c_column: SSAValue) -> None:  # fmt: skip
        """y[start + l] = exp(cum[l]) C[l]·st + sum_{s <= l} scores[l, s] xs[s] + D x[l]."""
        k, m = self.kb, self.m
        zero = k.index(0)
        d = k.load(self.d, [head])
        head_column = k.muli(head, k.index(m.head_dim))
        bound = None if m.head_dim == self.padded_p else k.addi(head_column, k.index(m.head_dim))

        def piece(c0: int, width: int) -> Callable[[SSAValue, int], None]:
            def block(l0: SSAValue, size: int) -> None:
                rows, diagonal_end = k.addi(start, l0), k.addi(l0, k.index(size))
                acc = self.product(
                    k.splat(k.f32(0.0), [size, width]), zero, k.index(m.state),
                    _Walk(self.xbc, [rows, c_column], 1), _Walk(self.st, [local, zero, k.index(c0)], 1),
                )  # fmt: skip
                decays = k.broadcast(k.load(self.decay, [l0], [size]), 1, width)
                acc = k.map([acc, decays], lambda e, a, w: e.mulf(a, w))
                acc = self.product(
                    acc, zero, diagonal_end, _Walk(self.scores, [l0, zero], 1), _Walk(self.xs, [zero, k.index(c0)], 0)
                )
                column = k.addi(head_column, k.index(c0))
                x = k.load(self.xbc, [rows, column], [size, width], bound)
                k.store(k.map([acc, x, d], lambda e, a, v, d: e.addf(a, e.mulf(d, v))), self.y, [rows, column], bound)

            return block

        for c0, width in self.pieces(self.padded_p):
            row_blocks(k, zero, length, self.rows_for(width), piece(c0, width))

    def update_state(self, local: SSAValue, length: SSAValue, end_decay: SSAValue) -> None:
        """st[n, p] = exp(cum[-1]) st[n, p] + sum_s bt[n, s] xw[s, p]."""
        k = self.kb
        zero = k.index(0)

        def piece(c0: int, width: int) -> Callable[[SSAValue, int], None]:
            def block(n0: SSAValue, size: int) -> None:
                at = [local, n0, k.index(c0)]
                acc = k.map([k.load(self.st, at, [size, width]), end_decay], lambda e, s, w: e.mulf(s, w))
                acc = self.product(
                    acc, zero, length, _Walk(self.bt, [n0, zero], 1), _Walk(self.xw, [zero, k.index(c0)], 0)
                )
                k.store(acc, self.st, at)

            return block

        for c0, width in self.pieces(self.padded_p):
            row_blocks(k, zero, k.index(self.m.state), self.rows_for(width), piece(c0, width))


def _ssd_buffers(m: Mixer, state_element: Attribute) -> dict[str, MemRefType]:
    """ssd_scan's and ssd_step's launch buffers."""
    heads = MemRefType(f32, [m.heads])
    return {
        "zxbcdt": rows(m.width, f32),
        "xbc": rows(m.channels, f32),
        "dt_bias": heads,
        "A_log": heads,
        "D": heads,
        "ssm_state": MemRefType(state_element, [m.heads, m.head_dim, m.state]),
        "y": rows(m.inner, f32),
    }


def ssd_step(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """The decode recurrence of the module docstring, a program per head."""
    m, block = Mixer.of(dims), tiles["block"]
    k = KernelBuilder(_ssd_buffers(m, _element(dims, "state_dtype")))
    zxbcdt, xbc, dt_bias, a_log, d, state, y = k.buffers
    h = k.program_id
    assert isinstance(state.type, MemRefType)
    element = state.type.element_type
    a = k.negf(k.exp(k.load(a_log, [h])))
    bias, d_head = k.load(dt_bias, [h]), k.load(d, [h])
    group_start = k.muli(k.divsi(h, k.index(m.heads // m.groups)), k.index(m.state))
    b_start = k.addi(group_start, k.index(m.inner))
    c_start = k.addi(b_start, k.index(m.groups * m.state))
    masked = m.state % block != 0
    state_bound = k.index(m.state) if masked else None
    head_column = k.muli(h, k.index(m.head_dim))
    with k.loop(k.index(0), k.size(xbc), k.index(1)) as token:
        t = token.iv
        raw = k.load(zxbcdt, [t, k.addi(h, k.index(m.inner + m.channels))])
        dt = k.softplus(k.addf(raw, bias))
        decay = k.exp(k.mulf(dt, a))
        with k.loop(k.index(0), k.index(m.head_dim), k.index(1)) as row:
            column = k.addi(head_column, row.iv)
            x = k.load(xbc, [t, column])
            coefficient = k.mulf(dt, x)
            with k.loop(k.index(0), k.index(m.state), k.index(block), [k.splat(k.f32(0.0), [block])]) as piece:
                n = piece.iv
                at = [h, row.iv, n]
                b_column, c_column = k.addi(b_start, n), k.addi(c_start, n)
                old = k.convert(k.load(state, at, [block], state_bound), f32)
                b = k.load(xbc, [t, b_column], [block], k.addi(b_start, k.index(m.state)) if masked else None)
                c = k.load(xbc, [t, c_column], [block], k.addi(c_start, k.index(m.state)) if masked else None)
                new = k.map([old, b, decay, coefficient], lambda e, s, b, g, q: e.addf(e.mulf(g, s), e.mulf(q, b)))
                stored = k.convert(new, element)
                k.store(stored, state, at, state_bound)
                kept = k.convert(stored, f32)
                piece.yield_(k.map([piece.args[0], kept, c], lambda e, acc, s, c: e.addf(acc, e.mulf(s, c))))
            total = k.reduce("add", piece.results[0])
            k.store(k.addf(k.mulf(d_head, x), total), y, [t, column])
    return k.finish()


def ssd_scan(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """The form the tiles ask for: a GPU's matrix tiles (`block_rows`: kernels/ssd_blocks.py, a program per
    head and block of channels), or a CPU's, a ranged body over heads: on its matrix unit (`kt`, its k depth:
    kernels/ssd_matrix.py) or its vectors."""
    from tessera.kernels.ssd_matrix import MatrixScan  # it builds on this module's pieces

    m, state_element = Mixer.of(dims), _element(dims, "state_dtype")
    if "block_rows" in tiles:
        k = KernelBuilder(_ssd_buffers(m, state_element))
        BlockScan(k, m, state_element, float(dims["time_step_min"]), tiles).scan()
        return k.finish()
    k = KernelBuilder(_ssd_buffers(m, state_element), ranged=True)
    scan = MatrixScan(k, dims, tiles) if "kt" in tiles else ChunkedScan(k, dims, tiles)
    scan.heads_of(*k.program_range)
    return k.finish()


def gated_rmsnorm(dims: Dims, tiles: Mapping[str, int]) -> Block:
    m, block = Mixer.of(dims), tiles["block"]
    width = m.inner // m.groups
    out_element = _element(dims, "out_dtype")
    k = KernelBuilder(
        {
            "zxbcdt": rows(m.width, f32),
            "y": rows(m.inner, f32),
            "norm_weight": MemRefType(f32, [m.inner]),
            "out": rows(m.inner, out_element),
        }
    )
    zxbcdt, y, norm_weight, out = k.buffers
    t = k.program_id
    with k.loop(k.index(0), k.index(m.inner), k.index(width)) as group:
        end = k.addi(group.iv, k.index(width))
        bound = None if width % block == 0 else end

        def gated(column: SSAValue) -> SSAValue:
            z = k.load(zxbcdt, [t, column], [block], bound)
            values = k.load(y, [t, column], [block], bound)
            return k.map([values, z], lambda e, v, g: e.mulf(v, e.silu(g)))

        with k.loop(group.iv, end, k.index(block), [k.splat(k.f32(0.0), [block])]) as chunk:
            g = gated(chunk.iv)
            chunk.yield_(k.map([chunk.args[0], g], lambda e, acc, v: e.addf(acc, e.mulf(v, v))))
        total = k.reduce("add", chunk.results[0])
        scale = k.rsqrt(k.addf(k.divf(total, k.f32(float(width))), k.f32(float(dims["epsilon"]))))
        with k.loop(group.iv, end, k.index(block)) as chunk:
            gains = k.load(norm_weight, [chunk.iv], [block], bound)
            normed = k.map([gated(chunk.iv), scale, gains], lambda e, v, s, w: e.mulf(e.mulf(v, s), w))
            k.store(k.convert(normed, out_element), out, [t, chunk.iv], bound)
    return k.finish()


KERNELS = {"conv_silu": conv_silu, "ssd_scan": ssd_scan, "ssd_step": ssd_step, "gated_rmsnorm": gated_rmsnorm}
