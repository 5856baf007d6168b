"""The attention kernels written once (attention itself is still a per-target emitter).

kv_append(qkv f32 [T, (Hq + 2 Hkv) D], k_cache, v_cache (f32 | bf16) [S, Hkv, D]; position)
    one program per token t, for every kv head g:
    k_cache[position + t, g, :] = qkv[t, (Hq + g) D : (Hq + g + 1) D]
    v_cache[position + t, g, :] = qkv[t, (Hq + Hkv + g) D : (Hq + Hkv + g + 1) D]
    (rounded to nearest even once when the cache is bf16; the runtime keeps position + T <= S)
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import MemRefType, bf16, f32
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


KERNELS = {"kv_append": kv_append}
SCALARS = {"kv_append": ("position",)}
