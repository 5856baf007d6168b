"""The attention kernels written once.

attention(qkv f32 [T, (Hq + 2 Hkv) D], k_cache, v_cache (f32 | bf16) [S, Hkv, D], out (f32 | bf16) [T, Hq D];
          position)
    causal grouped-query attention of this call's queries over the KV cache (HF's NemotronHAttention: no
    RoPE, no QK norm, no bias; kv_append ran first, so rows [0, position + T) of the caches hold every key
    this call's queries see). One program per token t, at absolute position q = position + t; for each query
    head h (kv head g = h / (Hq / Hkv)) it walks the keys [0, q] in blocks of block_k with the online softmax:
        s = (q_h D^-0.5) · K_blockᵀ            a [1, block_k] mma with K given by rows (rhs_transposed)
        s = -inf where the key is past q       (a block's keys past the cache's rows read as 0, then masked)
        m' = max(m, max s), alpha = exp(m - m'), p = exp(s - m'), l' = l alpha + sum p
        acc' = acc alpha + p · V_block         (m starts at -inf: key 0 is in every query's first block, so
                                               alpha = exp(-inf) = 0 there and m is finite from then on)
    out[t, h D : (h + 1) D] = acc / l, rounded once when out is bf16; K and V widened exactly from bf16, all
    arithmetic f32. The K and V blocks are [block_k, D] tiles of the cache along its dimensions 0 and 2, masked
    along their rows (bound_axis 0) at q + 1.

kv_append(qkv f32 [T, (Hq + 2 Hkv) D], k_cache, v_cache (f32 | bf16) [S, Hkv, D]; position)
    one program per token t, for every kv head g:
    k_cache[position + t, g, :] = qkv[t, (Hq + g) D : (Hq + g + 1) D]
    v_cache[position + t, g, :] = qkv[t, (Hq + Hkv + g) D : (Hq + Hkv + g + 1) D]
    (rounded to nearest even once when the cache is bf16; the runtime keeps position + T <= S)
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import MemRefType, bf16, f32, i32
from xdsl.ir import Block

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.rows import columns, rows


def kv_append(dims: Dims, tiles: Mapping[str, int]) -> Block:
    heads, kv_heads, head_dim = (int(dims[key]) for key in ("num_heads", "num_kv_heads", "head_dim"))
    block = tiles["block"]
    cache_element = bf16 if dims.get("cache_dtype", "f32") == "bf16" else f32
    cache = MemRefType(cache_element, [int(dims["max_seq_len"]), kv_heads, head_dim])
    qkv_type = rows((heads + 2 * kv_heads) * head_dim, f32)
    k = KernelBuilder({"qkv": qkv_type, "k_cache": cache, "v_cache": cache}, scalars=("position",))
    qkv, k_cache, v_cache = k.buffers
    t = k.program_id
    cache_row = k.addi(k.scalars["position"], t)
    start, stop, bound = columns(k, head_dim, block)
    for g in range(kv_heads):
        for target, first_head in ((k_cache, heads), (v_cache, heads + kv_heads)):
            base = (first_head + g) * head_dim
            with k.loop(start, stop, k.index(block)) as chunk:
                column = k.addi(chunk.iv, k.index(base))
                source_bound = None if bound is None else k.index(base + head_dim)
                values = k.load(qkv, [t, column], [block], source_bound)
                k.store(k.convert(values, cache_element), target, [cache_row, k.index(g), chunk.iv], bound)
    return k.finish()


def attention(dims: Dims, tiles: Mapping[str, int]) -> Block:
    heads, kv_heads, head_dim = (int(dims[key]) for key in ("num_heads", "num_kv_heads", "head_dim"))
    group, block = heads // kv_heads, tiles["block_k"]
    cache_element = bf16 if dims.get("cache_dtype", "f32") == "bf16" else f32
    out_element = bf16 if dims.get("out_dtype", "f32") == "bf16" else f32
    cache = MemRefType(cache_element, [int(dims["max_seq_len"]), kv_heads, head_dim])
    buffers = {
        "qkv": rows((heads + 2 * kv_heads) * head_dim, f32),
        "k_cache": cache,
        "v_cache": cache,
        "out": rows(heads * head_dim, out_element),
    }
    k = KernelBuilder(buffers, scalars=("position",))
    qkv, k_cache, v_cache, out = k.buffers
    t, zero = k.program_id, k.index(0)
    seen = k.addi(k.addi(k.scalars["position"], t), k.index(1))  # keys [0, position + t]
    scale, minus_infinity = head_dim**-0.5, float("-inf")
    with k.loop(zero, k.index(heads), k.index(1)) as head:
        g = k.divsi(head.iv, k.index(group))
        column = k.muli(head.iv, k.index(head_dim))
        query = k.map([k.load(qkv, [t, column], [1, head_dim])], lambda e, v: e.mulf(v, e.f32(scale)))
        carried = [k.splat(k.f32(minus_infinity), [1]), k.splat(k.f32(0.0), [1]), k.splat(k.f32(0.0), [1, head_dim])]
        with k.loop(zero, seen, k.index(block), carried) as keys:
            peak, total, acc = keys.args
            rows_at = [keys.iv, g, zero]
            key_rows = k.load(k_cache, rows_at, [block, head_dim], seen, axes=(0, 2), bound_axis=0)
            scores = k.mma(query, k.convert(key_rows, f32), k.splat(k.f32(0.0), [1, block]), rhs_transposed=True)
            visible = k.cast(k.subi(seen, keys.iv), i32)  # keys of the block before this are visible
            positions = k.broadcast(k.iota(block), 0, 1)
            scores = k.map(
                [scores, positions, visible],
                lambda e, s, at, limit: e.select(e.cmpi("slt", at, limit), s, e.f32(minus_infinity)),
            )
            new_peak = k.map([peak, k.reduce("max", scores, axis=1)], lambda e, m, b: e.maximumf(m, b))
            alpha = k.map([peak, new_peak], lambda e, m, n: e.exp(e.subf(m, n)))
            probabilities = k.map([scores, k.broadcast(new_peak, 1, block)], lambda e, s, m: e.exp(e.subf(s, m)))
            total = k.map(
                [total, alpha, k.reduce("add", probabilities, axis=1)], lambda e, z, a, p: e.addf(e.mulf(z, a), p)
            )
            value_rows = k.load(v_cache, rows_at, [block, head_dim], seen, axes=(0, 2), bound_axis=0)
            rescaled = k.map([acc, k.broadcast(alpha, 1, head_dim)], lambda e, x, a: e.mulf(x, a))
            keys.yield_(new_peak, total, k.mma(probabilities, k.convert(value_rows, f32), rescaled))
        _, total, acc = keys.results
        result = k.map([acc, k.broadcast(total, 1, head_dim)], lambda e, x, z: e.divf(x, z))
        k.store(k.convert(result, out_element), out, [t, column])
    return k.finish()


KERNELS = {"kv_append": kv_append, "attention": attention}
SCALARS = {"kv_append": ("position",), "attention": ("position",)}
