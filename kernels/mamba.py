"""The Mamba-2 mixer's kernels written once (the chunked prefill scan is still a per-target emitter).
Notation as lowering/x86/mamba.py: H heads of P channels, G groups of state size N (head h reads group
h // (H / G)), I = H P, conv channels C = I + 2 G N, K conv taps; in_proj's row zxbcdt [T, W],
W = 2 I + 2 G N + H: z = columns [0, I), xBC = [I, I + C) (x, then B = [I, I + G N) and C within xBC),
dt_raw = [I + C, I + C + H).

    conv_silu(zxbcdt f32 [T, W], conv_weight f32 [C, K], [conv_bias f32 [C]], conv_state f32 [C, K - 1],
              xbc f32 [T, C])
        one program per panel of `panel` channels (`block` at a time), walking the call's tokens row by row
        over the whole panel (rows are contiguous: a CPU streams them; a GPU's panel is one wave's block):
        with input = [conv_state^T ; xBC] (the carried inputs, oldest first, then this call's rows),
        xbc[t, c] = silu(bias[c] + sum_k w[c, k] input[t + k, c]) (k ascending), then
        conv_state[c, :] := the last K - 1 rows of input, for any T (T < K - 1 and T = 0 included). The taps
        and the carried inputs, columns of their buffers (tiles along dimension 0), are staged once per
        program as rows of two scratch buffers.

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

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from xdsl.dialects.builtin import MemRefType, bf16, f32
from xdsl.ir import Attribute, Block, SSAValue

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.rows import rows


@dataclass(frozen=True)
class _Mixer:
    """The mixer's sizes, read from a kernel's dims."""

    heads: int
    head_dim: int
    groups: int
    state: int

    @classmethod
    def of(cls, dims: Dims) -> _Mixer:
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
    m, taps, block = _Mixer.of(dims), int(dims["conv_kernel"]), tiles["block"]
    panel, channels, carried = tiles.get("panel", block), m.channels, taps - 1
    has_bias = bool(int(dims.get("conv_bias", 1)))
    buffers = {"zxbcdt": rows(m.width, f32), "conv_weight": MemRefType(f32, [channels, taps])}
    if has_bias:
        buffers["conv_bias"] = MemRefType(f32, [channels])
    buffers |= {"conv_state": MemRefType(f32, [channels, carried]), "xbc": rows(channels, f32)}
    k = KernelBuilder(buffers)
    zxbcdt, weight, *bias_buffer, state, xbc = k.buffers
    first = k.muli(k.program_id, k.index(panel))
    last = k.minsi(k.addi(first, k.index(panel)), k.index(channels))
    bound = None if channels % block == 0 else k.index(channels)
    input_bound = None if bound is None else k.index(m.inner + channels)
    tokens = k.size(xbc)

    @contextmanager
    def blocks() -> Iterator[tuple[SSAValue, SSAValue]]:
        """The panel's channel blocks: (first channel c, its column in the scratch buffers)."""
        with k.loop(first, last, k.index(block)) as each:
            yield each.iv, k.subi(each.iv, first)

    def inputs(row: SSAValue, c: SSAValue, row_bound: SSAValue | None = None) -> SSAValue:
        return k.load(zxbcdt, [row, k.addi(c, k.index(m.inner))], [block], row_bound or input_bound)

    def carried_or_input(back: int, row: SSAValue, c: SSAValue, column: SSAValue) -> SSAValue:
        """Input row `row - back` of [carried ; this call's rows]: history[K - 1 + row - back] while that is
        negative. Both are loaded at clamped rows and the select keeps the right one; the call's row is
        masked whole when not wanted (the call may have no rows at all)."""
        from_history = k.cmpi("ult", row, k.index(back))
        history_row = k.minsi(k.addi(row, k.index(carried - back)), k.index(carried - 1))
        input_row = k.subi(k.maxsi(row, k.index(back)), k.index(back))
        row_bound = k.select(from_history, k.index(0), input_bound or k.index(m.inner + channels))
        carried_value = k.load(history, [history_row, column], [block])
        return k.select(from_history, carried_value, inputs(input_row, c, row_bound))

    def convolve(row: SSAValue, tap_input: Callable[[int, SSAValue, SSAValue], SSAValue]) -> None:
        with blocks() as (c, column):
            acc = k.load(bias_buffer[0], [c], [block], bound) if has_bias else None
            for j in range(taps):
                w, value = k.load(taps_t, [k.index(j), column], [block]), tap_input(j, c, column)
                if acc is None:
                    acc = k.map([w, value], lambda e, w, v: e.mulf(w, v))
                else:
                    acc = k.map([acc, w, value], lambda e, a, w, v: e.addf(a, e.mulf(w, v)))
            assert acc is not None
            k.store(k.map([acc], lambda e, a: e.silu(a)), xbc, [row, c], bound)

    # The taps and the carried inputs, columns of their buffers, staged once as rows of the panel's scratch.
    taps_t, history = k.alloc("taps", [taps, panel], f32), k.alloc("history", [max(carried, 1), panel], f32)
    with blocks() as (c, column):
        for j in range(taps):
            k.store(k.load(weight, [c, k.index(j)], [block], bound, axes=[0]), taps_t, [k.index(j), column])
        for j in range(carried):
            k.store(k.load(state, [c, k.index(j)], [block], bound, axes=[0]), history, [k.index(j), column])
    # Row by row over the whole panel (rows of zxbcdt and xbc are contiguous); the first K - 1 rows reach back
    # into the carried inputs.
    warm = k.minsi(tokens, k.index(carried))
    with k.loop(k.index(0), warm, k.index(1)) as row:
        convolve(row.iv, lambda j, c, column: carried_or_input(carried - j, row.iv, c, column))
    with k.loop(warm, tokens, k.index(1)) as row:
        convolve(row.iv, lambda j, c, column: inputs(k.subi(row.iv, k.index(carried - j)), c))
    # conv_state := the last K - 1 inputs of [carried ; this call's rows], oldest first.
    with blocks() as (c, column):
        kept = [carried_or_input(carried - j, tokens, c, column) for j in range(carried)]
        for j, value in enumerate(kept):
            k.store(value, state, [c, k.index(j)], bound, axes=[0])
    return k.finish()


def ssd_step(dims: Dims, tiles: Mapping[str, int]) -> Block:
    m, block = _Mixer.of(dims), tiles["block"]
    state_element = _element(dims, "state_dtype")
    heads = MemRefType(f32, [m.heads])
    k = KernelBuilder(
        {
            "zxbcdt": rows(m.width, f32),
            "xbc": rows(m.channels, f32),
            "dt_bias": heads,
            "A_log": heads,
            "D": heads,
            "ssm_state": MemRefType(state_element, [m.heads, m.head_dim, m.state]),
            "y": rows(m.inner, f32),
        }
    )
    zxbcdt, xbc, dt_bias, a_log, d, state, y = k.buffers
    h = k.program_id
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
                b_column, c_column = k.addi(b_start, n), k.addi(c_start, n)
                old = k.convert(k.load(state, [h, row.iv, n], [block], state_bound), f32)
                b = k.load(xbc, [t, b_column], [block], k.addi(b_start, k.index(m.state)) if masked else None)
                c = k.load(xbc, [t, c_column], [block], k.addi(c_start, k.index(m.state)) if masked else None)
                new = k.map([old, b, decay, coefficient], lambda e, s, b, g, q: e.addf(e.mulf(g, s), e.mulf(q, b)))
                stored = k.convert(new, state_element)
                k.store(stored, state, [h, row.iv, n], state_bound)
                kept = k.convert(stored, f32)
                piece.yield_(k.map([piece.args[0], kept, c], lambda e, acc, s, c: e.addf(acc, e.mulf(s, c))))
            total = k.reduce("add", piece.results[0])
            k.store(k.addf(k.mulf(d_head, x), total), y, [t, column])
    return k.finish()


def gated_rmsnorm(dims: Dims, tiles: Mapping[str, int]) -> Block:
    m, block = _Mixer.of(dims), tiles["block"]
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


KERNELS = {"conv_silu": conv_silu, "ssd_step": ssd_step, "gated_rmsnorm": gated_rmsnorm}
