"""The Mamba-2 mixer's kernels written once (the chunked prefill scan is still a per-target emitter).
Notation as lowering/x86/mamba.py: H heads of P channels, G groups of state size N (head h reads group
h // (H / G)), I = H P, conv channels C = I + 2 G N, K conv taps; in_proj's row zxbcdt [T, W],
W = 2 I + 2 G N + H: z = columns [0, I), xBC = [I, I + C) (x, then B = [I, I + G N) and C within xBC),
dt_raw = [I + C, I + C + H).

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

from collections.abc import Iterator, Mapping
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
    chunk = tiles.get("chunk", 2**30)  # rows a block walks before the next block (default: all of them)
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
                acc = bias
                for tap, value in zip(w, inputs, strict=True):
                    if acc is None:
                        acc = k.map([tap, value], lambda e, t, v: e.mulf(t, v))
                    else:
                        acc = k.map([acc, tap, value], lambda e, a, t, v: e.addf(a, e.mulf(t, v)))
                assert acc is not None
                k.store(k.map([acc], lambda e, a: e.silu(a)), xbc, [row.iv, c], bound)
                row.yield_(*inputs[1:])
            for j, value in enumerate(row.results):
                k.store(value, history, [k.index(j), col])
    # conv_state := the last K - 1 inputs of [carried ; this call's rows] (the carried ones when T = 0).
    with blocks() as (c, col):
        for j in range(carried):
            k.store(k.load(history, [k.index(j), col], [block]), state, [c, k.index(j)], bound, axes=[0])
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
