"""The x86 attention kernel (kernels/attention.py's row-blocked form through convert-tessera-tile-to-x86) built
to machine code and run against a float64
numpy reference of HF NemotronHAttention's core (no RoPE, causal, GQA, scale head_dim**-0.5) on random
inputs: prefill at several cache offsets, decode after prefill, head ranges split across calls and threads,
bf16 caches, odd dimensions and tile sizes, and a build for the x86-64 baseline."""

from __future__ import annotations

import itertools
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tile_kernels import tile_kernel

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from tessera.dialects.tile import plain_dict
from tessera.lowering.convert_tile_to_x86 import avx2_kernel, emit_kernel
from tessera.lowering.x86.pipeline import build_library
from tessera.passes.tile_choose_tiles import write_body
from tessera.runtime.native import KernelLibrary
from tessera.runtime.weights import bf16_bits, bf16_to_f32
from tessera.tiling.choice import TileChoice

TOLERANCE = 1e-5


@dataclass(frozen=True)
class AttentionDims:
    """One test shape; block_q / block_k replace the x86 policy's tiles where given."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_seq_len: int
    block_q: int | None = None
    block_k: int | None = None

    @property
    def group(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def qkv_cols(self) -> int:
        return (self.num_heads + 2 * self.num_kv_heads) * self.head_dim

    @property
    def out_cols(self) -> int:
        return self.num_heads * self.head_dim


CASES = [(tokens, past) for tokens in (1, 7, 64, 130) for past in (0, 5, 100)]
CAPACITY = max(tokens + past for tokens, past in CASES)  # the largest case fills the cache exactly

DIMS = {
    "gqa4_d16": AttentionDims(8, 2, 16, CAPACITY),
    "kv1_d10": AttentionDims(4, 1, 10, CAPACITY),
    "mha_d12": AttentionDims(3, 3, 12, CAPACITY),
    "gqa4_d128": AttentionDims(8, 2, 128, CAPACITY, block_q=32, block_k=64),
    "odd_tiles_d72": AttentionDims(6, 2, 72, CAPACITY, block_q=7, block_k=5),
    "d33_bk40": AttentionDims(2, 1, 33, CAPACITY, block_q=20, block_k=40),
}
BF16_DIMS = ("gqa4_d16", "kv1_d10")
BF16_OUT_DIMS = ("kv1_d10", "odd_tiles_d72", "d33_bk40")  # also built with out_dtype="bf16" (suffix _out_bf16)


@dataclass
class Kernels:
    """The kernels of one AttentionDims in a built library."""

    dims: AttentionDims
    library: KernelLibrary
    suffix: str

    def append(self, qkv: np.ndarray, k: np.ndarray, v: np.ndarray, past: int, begin: int, end: int) -> None:
        """Tokens [begin, end) of the call into the cache (kv_append's programs are tokens)."""
        self.library.kernel(f"kv_append_{self.suffix}")(qkv, k, v, past, begin, end)

    def attend(self, qkv: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray, past: int, begin: int, end: int) -> None:  # fmt: skip
        self.library.kernel(f"attention_{self.suffix}")(qkv, k, v, out, past, begin, end)


def _dims(d: AttentionDims, cache_dtype: str, out_dtype: str = "f32") -> dict[str, int | float | str]:
    return {"num_heads": d.num_heads, "num_kv_heads": d.num_kv_heads, "head_dim": d.head_dim,
            "max_seq_len": d.max_seq_len, "cache_dtype": cache_dtype, "out_dtype": out_dtype}  # fmt: skip


def emit_kv_append(name: str, d: AttentionDims, cache_dtype: str = "f32") -> str:
    return emit_kernel(tile_kernel("kv_append", _dims(d, cache_dtype), "x86", name=name))


def attention_kernel(name: str, d: AttentionDims, cache_dtype: str = "f32", out_dtype: str = "f32") -> Any:
    """The x86 attention kernel, its block sizes replaced where `d` gives them."""
    kernel = tile_kernel("attention", _dims(d, cache_dtype, out_dtype), "x86", name=name)
    assert kernel.tiles is not None
    tiles = {key: int(value) for key, value in plain_dict(kernel.tiles).items()}
    tiles.update({key: value for key, value in (("block_q", d.block_q), ("block_k", d.block_k)) if value})
    write_body(kernel, TileChoice(tiles, ranged=True), [])
    return kernel


def emit_attention(name: str, d: AttentionDims, cache_dtype: str = "f32", out_dtype: str = "f32") -> str:
    return emit_kernel(attention_kernel(name, d, cache_dtype, out_dtype))


def _module(dims: dict[str, AttentionDims], bf16: tuple[str, ...], bf16_out: tuple[str, ...] = ()) -> str:
    parts = []
    for key, d in dims.items():
        parts += [emit_kv_append(f"kv_append_{key}", d), emit_attention(f"attention_{key}", d)]
        if key in bf16:
            parts += [emit_kv_append(f"kv_append_{key}_bf16", d, "bf16"), emit_attention(f"attention_{key}_bf16", d, "bf16")]  # fmt: skip
        for suffix in ("", "_bf16") if key in bf16 else ("",):
            if key in bf16_out:
                cache_dtype = "bf16" if suffix else "f32"
                parts.append(emit_attention(f"attention_{key}{suffix}_out_bf16", d, cache_dtype, out_dtype="bf16"))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> KernelLibrary:
    return build_library(_module(DIMS, BF16_DIMS, BF16_OUT_DIMS), tmp_path_factory.mktemp("attention") / "attention.so")


@pytest.fixture(scope="module")
def baseline_library(tmp_path_factory: pytest.TempPathFactory) -> KernelLibrary:
    dims = {key: DIMS[key] for key in ("kv1_d10", "gqa4_d128")}
    path = tmp_path_factory.mktemp("attention_baseline") / "attention.so"
    return build_library(_module(dims, ("kv1_d10",), ("kv1_d10",)), path, host=False)


# --- reference and data ---------------------------------------------------------------------------------------


def reference(qkv: np.ndarray, keys: np.ndarray, values: np.ndarray, d: AttentionDims, past: int) -> np.ndarray:
    """float64 causal GQA attention of this call's queries over cache rows [0, past + T) (keys/values f32)."""
    tokens, group = qkv.shape[0], d.num_heads // d.num_kv_heads
    q = qkv[:, : d.num_heads * d.head_dim].astype(np.float64).reshape(tokens, d.num_heads, d.head_dim)
    k = np.repeat(keys[: past + tokens].astype(np.float64), group, axis=1)
    v = np.repeat(values[: past + tokens].astype(np.float64), group, axis=1)
    scores = np.einsum("thd,shd->hts", q, k) * d.head_dim**-0.5
    visible = np.arange(past + tokens)[None, :] <= (past + np.arange(tokens))[:, None]
    scores = np.where(visible[None], scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    return np.einsum("hts,shd->thd", probs, v).reshape(tokens, d.num_heads * d.head_dim)


def new_keys_values(qkv: np.ndarray, d: AttentionDims) -> tuple[np.ndarray, np.ndarray]:
    tokens, start = qkv.shape[0], d.num_heads * d.head_dim
    shape = (tokens, d.num_kv_heads, d.head_dim)
    width = d.num_kv_heads * d.head_dim
    return qkv[:, start : start + width].reshape(shape), qkv[:, start + width :].reshape(shape)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


@dataclass
class Cache:
    """A layer's K/V cache as the kernels see it (NaN beyond what was written), and its f32 values."""

    k: np.ndarray
    v: np.ndarray

    @staticmethod
    def empty(d: AttentionDims, dtype: str = "f32") -> Cache:
        shape = (d.max_seq_len, d.num_kv_heads, d.head_dim)
        if dtype == "bf16":
            return Cache(np.full(shape, 0x7FC0, np.uint16), np.full(shape, 0x7FC0, np.uint16))  # bf16 NaN
        return Cache(np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32))

    def fill(self, rng: np.random.Generator, rows: int) -> None:
        for array in (self.k, self.v):
            values = rng.standard_normal(array[:rows].shape).astype(np.float32)
            array[:rows] = to_bf16(values) if array.dtype == np.uint16 else values

    def f32(self) -> tuple[np.ndarray, np.ndarray]:
        if self.k.dtype == np.uint16:
            return from_bf16(self.k), from_bf16(self.v)
        return self.k, self.v


def draw_qkv(rng: np.random.Generator, d: AttentionDims, tokens: int) -> np.ndarray:
    return rng.standard_normal((tokens, d.qkv_cols)).astype(np.float32)


def relative_error(out: np.ndarray, expected: np.ndarray) -> float:
    assert not np.isnan(out).any(), "output not fully written (or NaN)"
    return float(np.abs(out - expected).max() / np.abs(expected).max())


def run_step(kernels: Kernels, cache: Cache, qkv: np.ndarray, past: int, splits: tuple[int, ...] = ()) -> np.ndarray:
    """Append this call's keys/values (its tokens in two calls), then attend; head ranges cut at `splits`,
    each range its own call."""
    d = kernels.dims
    tokens = qkv.shape[0]
    for begin, end in itertools.pairwise(sorted({0, tokens // 2, tokens})):
        kernels.append(qkv, cache.k, cache.v, past, begin, end)
    out = np.full((qkv.shape[0], d.out_cols), np.nan, np.float32)
    cuts = sorted({0, d.num_heads, *splits})
    for begin, end in itertools.pairwise(cuts):
        kernels.attend(qkv, cache.k, cache.v, out, past, begin, end)
    return out


def kernels_for(library: KernelLibrary, key: str, dtype: str = "f32") -> Kernels:
    return Kernels(DIMS[key], library, key if dtype == "f32" else f"{key}_bf16")


# --- tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", DIMS)
@pytest.mark.parametrize(("tokens", "past"), CASES)
def test_prefill_matches_reference(library: KernelLibrary, rng: np.random.Generator, key: str, tokens: int,
                                   past: int) -> None:  # fmt: skip
    kernels = kernels_for(library, key)
    d = kernels.dims
    cache = Cache.empty(d)
    cache.fill(rng, past)
    qkv = draw_qkv(rng, d, tokens)
    out = run_step(kernels, cache, qkv, past)
    k_new, v_new = new_keys_values(qkv, d)
    assert np.array_equal(cache.k[past : past + tokens], k_new) and np.array_equal(cache.v[past : past + tokens], v_new)
    assert np.isnan(cache.k[past + tokens :]).all() and np.isnan(cache.v[past + tokens :]).all()
    assert relative_error(out, reference(qkv, cache.k, cache.v, d, past)) <= TOLERANCE


def _prefill_then_decode(rng: np.random.Generator, kernels: Kernels, dtype: str, splits: tuple[int, ...], prompt: int,
                         steps: int) -> None:  # fmt: skip
    d = kernels.dims
    cache = Cache.empty(d, dtype)
    position = 0
    for tokens in (prompt, *([1] * steps)):
        qkv = draw_qkv(rng, d, tokens)
        out = run_step(kernels, cache, qkv, position, splits)
        keys, values = cache.f32()
        if dtype == "bf16":
            k_new, v_new = new_keys_values(qkv, d)
            rows = slice(position, position + tokens)
            assert np.array_equal(cache.k[rows], to_bf16(k_new)) and np.array_equal(cache.v[rows], to_bf16(v_new))
        assert relative_error(out, reference(qkv, keys, values, d, position)) <= TOLERANCE
        position += tokens


@pytest.mark.parametrize("key", DIMS)
def test_decode_after_prefill_with_split_head_ranges(
    library: KernelLibrary, rng: np.random.Generator, key: str
) -> None:
    d = DIMS[key]
    # one cut inside a kv group where groups have more than one head, one on a group boundary
    splits = tuple(sorted({d.num_heads // 2 + (1 if d.group > 1 else 0), d.group})) if d.num_heads > 1 else ()
    _prefill_then_decode(rng, kernels_for(library, key), "f32", splits, prompt=37, steps=4)
    _prefill_then_decode(rng, kernels_for(library, key), "f32", (), prompt=1, steps=3)  # decode from an empty cache


@pytest.mark.parametrize("key", BF16_DIMS)
def test_bf16_cache(library: KernelLibrary, rng: np.random.Generator, key: str) -> None:
    _prefill_then_decode(rng, kernels_for(library, key, "bf16"), "bf16", (1,), prompt=70, steps=3)


def _check_bf16_output(rng: np.random.Generator, library: KernelLibrary, key: str, dtype: str) -> None:
    """out_dtype="bf16" over a prefill and decode steps (odd token counts, head ranges split inside a kv group and
    on a group boundary): the f32-output kernel's result rounded to nearest even, within one bf16 ulp."""
    kernels = kernels_for(library, key, dtype)
    d = kernels.dims
    attend_bf16 = library.kernel(f"attention_{kernels.suffix}_out_bf16")
    cuts = sorted({0, d.num_heads, 1, d.group})
    cache = Cache.empty(d, dtype)
    position = 0
    for tokens in (37, 1, 5):
        qkv = draw_qkv(rng, d, tokens)
        out = run_step(kernels, cache, qkv, position, tuple(cuts))
        out_bf16 = np.full(out.shape, 0x7FC0, np.uint16)  # bf16 NaN: an unwritten element fails
        for begin, end in itertools.pairwise(cuts):
            attend_bf16(qkv, cache.k, cache.v, out_bf16, position, begin, end)
        assert not np.isnan(bf16_to_f32(out_bf16)).any(), "output not fully written (or NaN)"

        def ordered(bits: np.ndarray) -> np.ndarray:  # bf16 bits as integers in value order: 1 apart = 1 ulp
            signed = bits.astype(np.int32)
            return np.where(signed & 0x8000, 0x8000 - signed, signed)

        assert int(np.abs(ordered(out_bf16) - ordered(bf16_bits(out))).max()) <= 1
        keys, values = cache.f32()
        assert relative_error(bf16_to_f32(out_bf16), reference(qkv, keys, values, d, position)) <= 1e-2
        position += tokens


@pytest.mark.parametrize(
    ("key", "dtype"), [("kv1_d10", "f32"), ("odd_tiles_d72", "f32"), ("d33_bk40", "f32"), ("kv1_d10", "bf16")]
)
def test_bf16_output(library: KernelLibrary, rng: np.random.Generator, key: str, dtype: str) -> None:
    _check_bf16_output(rng, library, key, dtype)


def test_ranges_write_only_their_heads(library: KernelLibrary, rng: np.random.Generator) -> None:
    kernels = kernels_for(library, "gqa4_d16")
    d = kernels.dims
    cache = Cache.empty(d)
    qkv = draw_qkv(rng, d, 9)
    kernels.append(qkv, cache.k, cache.v, 0, 4, 9)  # tokens 4..8 only
    assert np.isnan(cache.k[:4]).all() and not np.isnan(cache.k[4:9]).any() and np.isnan(cache.k[9:]).all()
    kernels.append(qkv, cache.k, cache.v, 0, 0, 4)
    out = np.full((9, d.out_cols), np.nan, np.float32)
    kernels.attend(qkv, cache.k, cache.v, out, 0, 3, 3)  # empty range
    assert np.isnan(out).all()
    kernels.attend(qkv, cache.k, cache.v, out, 0, 3, 6)  # heads 3..5 straddle kv groups 0 and 1
    written = np.zeros(d.num_heads, bool)
    written[3:6] = True
    heads = out.reshape(9, d.num_heads, d.head_dim)
    assert not np.isnan(heads[:, written]).any() and np.isnan(heads[:, ~written]).all()
    expected = reference(qkv, cache.k, cache.v, d, 0).reshape(9, d.num_heads, d.head_dim)
    assert relative_error(heads[:, written], expected[:, written]) <= TOLERANCE


def test_two_threads_on_disjoint_ranges(library: KernelLibrary, rng: np.random.Generator) -> None:
    """The runtime's split: two threads call one kernel at once (ctypes releases the GIL)."""
    kernels = kernels_for(library, "gqa4_d128")
    d = kernels.dims
    cache = Cache.empty(d)
    past = 60
    cache.fill(rng, past)
    qkv = draw_qkv(rng, d, 150)
    out = np.full((150, d.out_cols), np.nan, np.float32)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda r: kernels.append(qkv, cache.k, cache.v, past, *r), [(0, 75), (75, 150)]))
        list(pool.map(lambda r: kernels.attend(qkv, cache.k, cache.v, out, past, *r), [(0, 4), (4, 8)]))
    assert relative_error(out, reference(qkv, cache.k, cache.v, d, past)) <= TOLERANCE


@pytest.mark.parametrize(("key", "dtype"), [("kv1_d10", "f32"), ("kv1_d10", "bf16"), ("gqa4_d128", "f32")])
def test_baseline_x86_64_build(baseline_library: KernelLibrary, rng: np.random.Generator, key: str, dtype: str) -> None:
    kernels = kernels_for(baseline_library, key, dtype)
    _prefill_then_decode(rng, kernels, dtype, (1,), prompt=67, steps=2)


@pytest.mark.parametrize("key", ["gqa4_d128", "odd_tiles_d72", "kv1_d10"])
def test_avx2_variant(tmp_path: Path, rng: np.random.Generator, key: str) -> None:
    """The AVX2 variant (p · V in 16-column stripes of D: 128 in eight, 72 in four and a narrow one, 10 in
    one; scores as the GEMM's AVX2 blocks): prefill, then decode, heads split."""
    d = DIMS[key]
    variant = avx2_kernel(attention_kernel(f"attention_{key}", d))
    text = "\n".join([emit_kv_append(f"kv_append_{key}__avx2", d), emit_kernel(variant)])
    kernels = Kernels(d, build_library(text, tmp_path / "avx2.so"), f"{key}__avx2")
    _prefill_then_decode(rng, kernels, "f32", (1,), prompt=67, steps=2)


def test_baseline_x86_64_bf16_output(baseline_library: KernelLibrary, rng: np.random.Generator) -> None:
    _check_bf16_output(rng, baseline_library, "kv1_d10", "f32")


def test_scratch_fits_the_policy() -> None:
    """The policy's block_q keeps a query block's scratch (queries, output rows, scores) in half of L2, for a
    group of 4 (64 tokens) and of 16 (fewer)."""
    from tessera.tiling.x86 import ATTENTION_SCRATCH_BYTES

    for heads, block_q in ((8, 64), (32, 25)):
        kernel = attention_kernel("a", AttentionDims(heads, 2, 128, 4096))
        assert kernel.tiles is not None and plain_dict(kernel.tiles)["block_q"] == block_q
        assert kernel.ranged is not None
        rows = heads // 2 * block_q
        assert rows * (2 * 128 + 64) * 4 <= ATTENTION_SCRATCH_BYTES


def test_kernel_text_is_upstream_mlir_only() -> None:
    d = AttentionDims(8, 2, 128, 4096)
    text = emit_attention("attention", d) + emit_attention("o", d, out_dtype="bf16")
    dialects = set(re.findall(r'"([a-z]+)\.[a-z_]+"\(', text))  # generic form: "dialect.op"(
    assert (
        {"func", "scf", "arith", "memref", "vector"} <= dialects <= {"func", "scf", "arith", "memref", "vector", "math"}
    )
