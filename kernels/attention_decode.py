"""The decode step's attention on the GPUs, split over the keys (flash-decoding): one token's query heads
against the KV cache, in `splits` independent pieces combined in a fixed order — every SM streams the cache
instead of one program per head walking all of it.

attention_split(qkv f32 [T, (Hq + 2 Hkv) D], k_cache, v_cache (f32 | bf16) [S, Hkv, D],
                partials f32 [Hq splits, D + 2]; position)
    one token (T = 1, at position q: keys [0, q] are visible), one program (a wave) per query head h and
    split s (program h splits + s): the keys [lo, hi) of its share, per = ceil((q + 1) / splits),
    lo = min(s per, q + 1), hi = min(lo + per, q + 1), one key a step with the online softmax:
        x = (Q_h D^-0.5) · K[j, g]        (g = h / (Hq / Hkv); lanes along D, reduced across the wave)
        m' = max(m, x), alpha = exp(m - m'), p = exp(x - m'), l' = l alpha + p, acc' = acc alpha + p V[j, g]
    partials[h splits + s] = (acc [D], m, l): m = -inf, l = 0, acc = 0 for a split with no keys.
attention_combine(partials f32 [Hq splits, D + 2], out (f32 | bf16) [T, Hq D])
    one program per query head h, the splits in order 0, 1, ...: M = max m_s, w_s = exp(m_s - M),
    out[0, h D : (h + 1) D] = sum w_s acc_s / sum w_s l_s, rounded once when out is bf16 — the same bits
    every run (a fixed order, no atomics).

Arithmetic is f32, K and V widened exactly from a bf16 cache; the partials are a state of the decode program
(lowering/decode_kernels.py), written and read within one step.
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import MemRefType, bf16, f32
from xdsl.ir import Block

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.rows import rows


def _sizes(dims: Dims) -> tuple[int, int, int, int]:
    """(query heads, kv heads, head_dim, splits)."""
    return tuple(int(dims[key]) for key in ("num_heads", "num_kv_heads", "head_dim", "splits"))  # type: ignore[return-value]


def partials_type(dims: Dims) -> MemRefType:
    """Each (head, split)'s acc [D], m and l: a row of D + 2."""
    heads, _, head_dim, splits = _sizes(dims)
    return MemRefType(f32, [heads * splits, head_dim + 2])


def attention_split(dims: Dims, tiles: Mapping[str, int]) -> Block:
    heads, kv_heads, head_dim, splits = _sizes(dims)
    cache_element = bf16 if dims.get("cache_dtype", "f32") == "bf16" else f32
    cache = MemRefType(cache_element, [int(dims["max_seq_len"]), kv_heads, head_dim])
    buffers = {"qkv": rows((heads + 2 * kv_heads) * head_dim, f32), "k_cache": cache, "v_cache": cache,
               "partials": partials_type(dims)}  # fmt: skip
    k = KernelBuilder(buffers, scalars=("position",))
    qkv, k_cache, v_cache, partials = k.buffers
    program, zero = k.program_id, k.index(0)
    head = k.divsi(program, k.index(splits))
    split = k.subi(program, k.muli(head, k.index(splits)))
    group = k.divsi(head, k.index(heads // kv_heads))
    seen = k.addi(k.scalars["position"], k.index(1))  # the token's keys: [0, position]
    per = k.divsi(k.addi(seen, k.index(splits - 1)), k.index(splits))
    lo = k.minsi(k.muli(split, per), seen)
    hi = k.minsi(k.addi(lo, per), seen)
    scale = head_dim**-0.5
    query = k.map(
        [k.load(qkv, [zero, k.muli(head, k.index(head_dim))], [head_dim])], lambda e, v: e.mulf(v, e.f32(scale))
    )
    carried = [k.f32(float("-inf")), k.f32(0.0), k.splat(k.f32(0.0), [head_dim])]
    with k.loop(lo, hi, k.index(1), carried) as keys:
        peak, total, acc = keys.args
        key = k.convert(k.load(k_cache, [keys.iv, group, zero], [head_dim]), f32)
        score = k.reduce("add", k.map([query, key], lambda e, q, x: e.mulf(q, x)))
        new_peak = k.maximumf(peak, score)
        alpha, weight = k.exp(k.subf(peak, new_peak)), k.exp(k.subf(score, new_peak))
        value = k.convert(k.load(v_cache, [keys.iv, group, zero], [head_dim]), f32)
        acc = k.map([acc, value, alpha, weight], lambda e, a, v, r, w: e.addf(e.mulf(a, r), e.mulf(w, v)))
        keys.yield_(new_peak, k.addf(k.mulf(total, alpha), weight), acc)
    peak, total, acc = keys.results
    k.store(acc, partials, [program, zero])
    k.store(peak, partials, [program, k.index(head_dim)])
    k.store(total, partials, [program, k.index(head_dim + 1)])
    return k.finish()


def attention_combine(dims: Dims, tiles: Mapping[str, int]) -> Block:
    heads, _, head_dim, splits = _sizes(dims)
    out_element = bf16 if dims.get("out_dtype", "f32") == "bf16" else f32
    k = KernelBuilder({"partials": partials_type(dims), "out": rows(heads * head_dim, out_element)})
    partials, out = k.buffers
    head, zero = k.program_id, k.index(0)
    first = k.muli(head, k.index(splits))
    peak_at, total_at = k.index(head_dim), k.index(head_dim + 1)
    with k.loop(zero, k.index(splits), k.index(1), [k.f32(float("-inf"))]) as peaks:
        peaks.yield_(k.maximumf(peaks.args[0], k.load(partials, [k.addi(first, peaks.iv), peak_at])))
    (peak,) = peaks.results
    with k.loop(zero, k.index(splits), k.index(1), [k.f32(0.0), k.splat(k.f32(0.0), [head_dim])]) as parts:
        row = k.addi(first, parts.iv)
        weight = k.exp(k.subf(k.load(partials, [row, peak_at]), peak))
        total = k.addf(parts.args[0], k.mulf(weight, k.load(partials, [row, total_at])))
        values = k.load(partials, [row, zero], [head_dim])
        parts.yield_(total, k.map([parts.args[1], values, weight], lambda e, a, v, w: e.addf(a, e.mulf(w, v))))
    total, acc = parts.results
    result = k.map([acc, total], lambda e, a, z: e.divf(a, z))
    k.store(k.convert(result, out_element), out, [zero, k.muli(head, k.index(head_dim))])
    return k.finish()


KERNELS = {"attention_split": attention_split, "attention_combine": attention_combine}
SCALARS = {"attention_split": ("position",)}
