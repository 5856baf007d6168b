"""Every kernel of kernels/ run by the Tile-IR interpreter (interpreters/tile.py) against a float64 reference:
the kernel's algorithm checked once, before any target lowering, for each target's tile choice.

Each kernel is built the way the compiler builds it (a `tessera.tile.kernel` of the kind's dims, given its
body by tessera-tile-choose-tiles for x86 and for the GPUs: 64-wide tiles on x86 and gfx942, 32-wide on
sm_90a), at hidden sizes that leave a masked tail (72, 130) and one that does not (64), for several token
counts. Inputs are drawn from the test's seed; outputs start as NaN, so an unwritten element fails, and are
exactly as wide as the kernel's memrefs, so a tail written past its bound is an access the interpreter
rejects. Every kind of kernels.KERNELS must have a check here (test_every_kernel_kind_is_interpreted).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np
import pytest
from router_cases import router_case
from tile_kernels import tile_kernel
from xdsl.dialects import test as test_dialect
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    DictionaryAttr,
    IntegerAttr,
    MemRefType,
    StringAttr,
    bf16,
    f32,
    i32,
    i64,
)
from xdsl.ir import Block, Region
from xdsl.utils.exceptions import VerifyException

from tessera.dialects import tile
from tessera.dialects.tile import plain_dict
from tessera.errors import TesseraError
from tessera.interpreters import TileInterpreterError, run_kernel
from tessera.interpreters.elements import narrow
from tessera.kernels import KERNELS
from tessera.kernels.builder import KernelBuilder
from tessera.reference.common import embedding, rmsnorm, softplus
from tessera.reference.mamba2 import gated_rmsnorm
from tessera.runtime.weights import bf16_bits, bf16_to_f32

TARGETS = ("x86", "gfx942", "sm_90a")
TOKENS = (1, 5, 37)
HIDDENS = (64, 72, 130)
EPSILON = 1e-5
F32_UNIT = 2.0**-24  # f32's unit roundoff: one rounding's relative error is at most this

Dims = dict[str, int | float | str]


# --- building -------------------------------------------------------------------------------------------------


@functools.cache
def _built(kind: str, dims: tuple[tuple[str, int | float | str], ...], target: str) -> tile.KernelOp:
    return tile_kernel(kind, dict(dims), target)


def build(kind: str, dims: Mapping[str, int | float | str], target: str) -> tile.KernelOp:
    """The kernel of `kind` with its body (and grid) for `target`, as the compiler builds it."""
    return _built(kind, tuple(sorted(dims.items())), target)


def nan(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, np.float32)


# --- bounds -----------------------------------------------------------------------------------------------------
#
# The kernels compute in f32 from f32 inputs, the references in float64 from the same inputs (their own error,
# about 1e-16, is negligible). Each rounding has a relative error of at most u; to first order, errors add.
# rstd: each lane of the tile squares (1 rounding) and adds (the first add, to 0, is exact) over the row's
# `chain` = ceil(hidden / block) tiles, and the tile's sum is rounded once (the interpreter's reduce): all terms
# are non-negative, so the sum is within (chain + 1) u. The mean and + eps add 2 u, sqrt halves it all and
# rounds (u), the reciprocal rounds (u): (chain + 3) / 2 u + 2 u. One more u covers the second-order terms and
# eps's own rounding to f32 (relative to the mean, 1e-6 of a u). rmsnorm's x * rstd * weight rounds twice more,
# elementwise (products: no cancellation).


def chain(kernel: tile.KernelOp) -> int:
    """The tiles of a row: the adds on each lane's chain of partial sums."""
    assert kernel.tiles is not None
    hidden, block = int(plain_dict(kernel.dims)["hidden"]), int(plain_dict(kernel.tiles)["block"])
    return -(-hidden // block)


def rstd_bound(kernel: tile.KernelOp) -> float:
    return ((chain(kernel) + 3) / 2 + 3) * F32_UNIT


def rmsnorm_bound(kernel: tile.KernelOp) -> float:
    return rstd_bound(kernel) + 2 * F32_UNIT


def check_relative(what: str, got: np.ndarray, want: np.ndarray, bound: float) -> None:
    """Elementwise |got - want| <= bound |want|; NaN (an unwritten element) fails."""
    assert np.isfinite(got).all(), f"{what}: {int((~np.isfinite(got)).sum())} elements unwritten or not finite"
    error = np.abs(got.astype(np.float64) - want) / np.abs(want)
    assert error.max() <= bound, f"{what}: relative error {error.max():.2e} > {bound:.2e}"


def check_bf16(what: str, bits: np.ndarray, want: np.ndarray, bound: float) -> None:
    """bf16 bits equal to the reference rounded by runtime/weights.py, or, where not, the bf16 neighbour on
    the other side of a rounding boundary that lies within the f32 computation's error (`bound` |want|, plus
    the reference's own rounding to f32 on its way to bf16) of the reference."""
    expected_bits = bf16_bits(want.astype(np.float32))
    got, expected = (bf16_to_f32(b).astype(np.float64) for b in (bits, expected_bits))
    assert np.isfinite(got).all(), f"{what}: elements unwritten or not finite"
    differ = bits != expected_bits
    neighbours = np.abs(bits.astype(np.int32) - expected_bits.astype(np.int32)) == 1
    assert (neighbours | ~differ).all(), f"{what}: {int((differ & ~neighbours).sum())} elements off by > 1 bf16 ulp"
    boundary = (got + expected) / 2
    near = np.abs(boundary - want) <= (bound + F32_UNIT) * np.abs(want)
    assert (near | ~differ).all(), f"{what}: {int((differ & ~near).sum())} elements rounded away from the reference"


# --- the kernels of kernels/ ---------------------------------------------------------------------------------------


def check_embedding(rng: np.random.Generator, target: str, tokens: int) -> None:
    vocab = 50
    for hidden in HIDDENS:
        ids = rng.integers(0, vocab, tokens).astype(np.int64)
        table = rng.standard_normal((vocab, hidden)).astype(np.float32)
        out = nan(tokens, hidden)
        run_kernel(build("embedding", {"vocab": vocab, "hidden": hidden}, target), [ids, table, out], tokens)
        assert np.array_equal(out.astype(np.float64), embedding(ids, table)), f"embedding hidden {hidden}"


def check_rms_scale(rng: np.random.Generator, target: str, tokens: int) -> None:
    for hidden in HIDDENS:
        h = (rng.standard_normal((tokens, hidden)) * 3).astype(np.float32)
        rstd = nan(tokens)
        kernel = build("rms_scale", {"hidden": hidden, "epsilon": EPSILON}, target)
        run_kernel(kernel, [h, rstd], tokens)
        want = 1 / np.sqrt(np.mean(h.astype(np.float64) ** 2, axis=-1) + EPSILON)
        check_relative(f"rms_scale hidden {hidden}", rstd, want, rstd_bound(kernel))


def check_rmsnorm(rng: np.random.Generator, target: str, tokens: int) -> None:
    for hidden in HIDDENS:
        x = (rng.standard_normal((tokens, hidden)) * 3).astype(np.float32)
        weight = (1 + 0.3 * rng.standard_normal(hidden)).astype(np.float32)
        want = rmsnorm(x, weight.astype(np.float64), EPSILON)
        out = nan(tokens, hidden)
        kernel = build("rmsnorm", {"hidden": hidden, "epsilon": EPSILON}, target)
        run_kernel(kernel, [x, weight, out], tokens)
        check_relative(f"rmsnorm hidden {hidden}", out, want, rmsnorm_bound(kernel))
        bits = bf16_bits(nan(tokens, hidden))
        bf16_kernel = build("rmsnorm", {"hidden": hidden, "epsilon": EPSILON, "out_dtype": "bf16"}, target)
        run_kernel(bf16_kernel, [x, weight, bits], tokens)
        check_bf16(f"rmsnorm bf16 out hidden {hidden}", bits, want, rmsnorm_bound(bf16_kernel))


def check_moe_combine(rng: np.random.Generator, target: str, tokens: int) -> None:
    """out (+)= sum_j w[t, j] contrib[t, j]: K products and K adds per element, each rounded (u), on terms of
    either sign: bounded against the sum of |terms| rather than the result."""
    top_k = 3
    for latent, epilogue in ((72, "store"), (130, "accumulate")):
        contrib = rng.standard_normal((tokens, top_k * latent)).astype(np.float32)
        weights = rng.random((tokens, top_k)).astype(np.float32)
        start = rng.standard_normal((tokens, latent)).astype(np.float32)
        out = start.copy() if epilogue == "accumulate" else nan(tokens, latent)
        dims: dict[str, int | float | str] = {"num_experts": 8, "top_k": top_k, "latent": latent, "epilogue": epilogue}
        run_kernel(build("moe_combine", dims, target), [contrib, weights, out], tokens)
        terms = contrib.astype(np.float64).reshape(tokens, top_k, latent) * weights[:, :, None]
        want = terms.sum(axis=1) + (start if epilogue == "accumulate" else 0)
        scale = np.abs(terms).sum(axis=1) + (np.abs(start) if epilogue == "accumulate" else 0)
        assert np.isfinite(out).all(), f"moe_combine latent {latent}: elements unwritten"
        error = np.abs(out - want) / scale
        assert error.max() <= 2 * top_k * F32_UNIT, f"moe_combine latent {latent}: error {error.max():.2e}"


def check_moe_router(rng: np.random.Generator, target: str, tokens: int) -> None:
    """Ids exactly, ties included. A weight is a sigmoid (exp, + 1, the division: 3 roundings and exp's
    error), over a sum of at most 8 such scores (8 more), divided and scaled (2): within 16 u of the largest."""
    for name in ("e8_groups", "e130_groups_ties", "e12_one_per_group"):
        want = router_case(name, tokens, rng)
        ids, weights = np.full(want.ids.shape, -1, np.int64), nan(*want.ids.shape)
        run_kernel(build("moe_router", want.dims, target), [want.logits, want.bias, ids, weights], tokens)
        assert np.array_equal(ids, want.ids), f"moe_router {name}: ids"
        error = np.abs(weights - want.weights).max() / np.abs(want.weights).max()
        assert error <= 16 * F32_UNIT, f"moe_router {name}: weights error {error:.2e}"


def check_kv_append(rng: np.random.Generator, target: str, tokens: int) -> None:
    heads, kv_heads, head_dim, position = 6, 2, 72, 3
    capacity = position + tokens + 2
    qkv = rng.standard_normal((tokens, (heads + 2 * kv_heads) * head_dim)).astype(np.float32)
    keys = qkv[:, heads * head_dim : (heads + kv_heads) * head_dim].reshape(tokens, kv_heads, head_dim)
    values = qkv[:, (heads + kv_heads) * head_dim :].reshape(tokens, kv_heads, head_dim)
    for dtype in ("f32", "bf16"):
        dims = {"num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim, "max_seq_len": capacity,
                "cache_dtype": dtype}  # fmt: skip
        caches = [nan(capacity, kv_heads, head_dim) for _ in range(2)]
        if dtype == "bf16":
            caches = [bf16_bits(cache) for cache in caches]
        run_kernel(build("kv_append", dims, target), [qkv, *caches], tokens, {"position": position})
        for cache, want in zip(caches, (keys, values), strict=True):
            written = cache[position : position + tokens]
            expected = bf16_bits(want) if dtype == "bf16" else want
            assert np.array_equal(written, expected), f"kv_append {dtype} cache rows"
            outside = np.concatenate([cache[:position], cache[position + tokens :]])
            as_float = bf16_to_f32(outside) if dtype == "bf16" else outside
            assert np.isnan(as_float).all(), f"kv_append {dtype}: rows outside the call written"


def check_gated_rmsnorm(rng: np.random.Generator, target: str, tokens: int) -> None:
    """gated = y * silu(z) carries 4 roundings (exp, + 1, the division, the product: each u; exp's error
    reaches silu scaled by e / (1 + e) < 1) and squaring one more; the group's sum, rstd and the two final
    products then as rmsnorm over a row of the group's width: rstd_bound's terms plus 4 u + 1 u + 2 u."""
    heads, head_dim, groups, state = 4, 18, 2, 8  # groups of 36 channels: a masked tail on every target
    inner = heads * head_dim
    width = 2 * inner + 2 * groups * state + heads
    for dtype in ("f32", "bf16"):
        zxbcdt = rng.standard_normal((tokens, width)).astype(np.float32)
        y = rng.standard_normal((tokens, inner)).astype(np.float32)
        weight = (1 + 0.3 * rng.standard_normal(inner)).astype(np.float32)
        dims: dict[str, int | float | str] = {"num_heads": heads, "head_dim": head_dim, "n_groups": groups,
                                              "state_size": state, "epsilon": EPSILON, "out_dtype": dtype}  # fmt: skip
        kernel = build("gated_rmsnorm", dims, target)
        assert kernel.tiles is not None
        chain = -(-(inner // groups) // int(plain_dict(kernel.tiles)["block"]))
        bound = ((chain + 3) / 2 + 3 + 7) * F32_UNIT
        want = gated_rmsnorm(y.astype(np.float64), zxbcdt[:, :inner].astype(np.float64), weight, groups, EPSILON)
        if dtype == "f32":
            out = nan(tokens, inner)
            run_kernel(kernel, [zxbcdt, y, weight, out], tokens)
            check_relative("gated_rmsnorm", out, want, bound)
        else:
            bits = bf16_bits(nan(tokens, inner))
            run_kernel(kernel, [zxbcdt, y, weight, bits], tokens)
            check_bf16("gated_rmsnorm bf16 out", bits, want, bound)


# A mixer whose conv channels (C = 72 + 32 = 104) and state rows (N = 8) leave a masked tail on every target.
MIXER: Dims = {"num_heads": 4, "head_dim": 18, "n_groups": 2, "state_size": 8}
MIXER_INNER, MIXER_CHANNELS, MIXER_WIDTH = 72, 104, 2 * 72 + 32 + 4


def check_conv_silu(rng: np.random.Generator, target: str, tokens: int) -> None:
    """acc = bias + sum_k w_k v_k: K products and K adds, each rounded (u), on terms of either sign: within
    2 K u of the sum of |terms|; silu's slope is below 1.1, and its own exp, + 1 and division add 3 u of the
    result. The carried state is copied, exactly. The second mixer (340 channels) gives x86 panels of two
    blocks, the last panel partial."""
    taps = 4
    wide = {"num_heads": 4, "head_dim": 77, "n_groups": 2, "state_size": 8}
    for mixer, has_bias in ((MIXER, True), (MIXER, False), (wide, True)):
        heads, head_dim, groups, size = (int(mixer[key]) for key in ("num_heads", "head_dim", "n_groups", "state_size"))
        inner = heads * head_dim
        channels = inner + 2 * groups * size
        dims: Dims = {**mixer, "conv_kernel": taps, "channels": channels, "conv_bias": int(has_bias)}
        zxbcdt = rng.standard_normal((tokens, inner + channels + heads)).astype(np.float32)
        weight = rng.standard_normal((channels, taps)).astype(np.float32)
        bias = rng.standard_normal(channels).astype(np.float32)
        state = rng.standard_normal((channels, taps - 1)).astype(np.float32)
        xbc = nan(tokens, channels)
        new_state = state.copy()
        run_kernel(build("conv_silu", dims, target), [zxbcdt, weight, *([bias] * has_bias), new_state, xbc], tokens)
        inputs = np.concatenate([state.T, zxbcdt[:, inner : inner + channels]]).astype(np.float64)
        terms = np.stack([inputs[k : k + tokens] * weight[:, k] for k in range(taps)])
        acc = terms.sum(axis=0) + (bias if has_bias else 0)
        scale = np.abs(terms).sum(axis=0) + (np.abs(bias) if has_bias else 0)
        want = acc / (1 + np.exp(-acc))
        assert np.isfinite(xbc).all(), f"conv_silu bias {has_bias}: elements unwritten"
        error = np.abs(xbc - want)
        bound = 1.1 * 2 * taps * F32_UNIT * scale + 3 * F32_UNIT * np.abs(want)
        assert (error <= bound).all(), f"conv_silu bias {has_bias}: error {(error / bound).max():.2f} of its bound"
        assert np.array_equal(new_state, inputs[tokens:].T.astype(np.float32)), "conv_silu: conv_state"


class _SsdProblem:
    """ssd_step's and ssd_scan's launch buffers drawn at MIXER's sizes (a bf16 state as its bits; `state` the
    f32 values it holds), and each token's inputs as the float64 references read them."""

    def __init__(self, rng: np.random.Generator, tokens: int, dtype: str) -> None:
        heads, head_dim, state_size = (int(MIXER[key]) for key in ("num_heads", "head_dim", "state_size"))
        self.zxbcdt = rng.standard_normal((tokens, MIXER_WIDTH)).astype(np.float32)
        self.xbc = rng.standard_normal((tokens, MIXER_CHANNELS)).astype(np.float32)
        self.dt_bias = rng.uniform(-4, 1, heads).astype(np.float32)
        self.a_log = np.log(rng.uniform(1, 8, heads)).astype(np.float32)
        self.d = rng.standard_normal(heads).astype(np.float32)
        state = rng.standard_normal((heads, head_dim, state_size)).astype(np.float32)
        self.state = bf16_to_f32(bf16_bits(state)) if dtype == "bf16" else state
        self.buffer = bf16_bits(self.state) if dtype == "bf16" else self.state.copy()
        self.y = nan(tokens, MIXER_INNER)
        self.a = -np.exp(self.a_log.astype(np.float64))

    def buffers(self) -> list[np.ndarray]:
        return [self.zxbcdt, self.xbc, self.dt_bias, self.a_log, self.d, self.buffer, self.y]

    def token(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """softplus(raw + dt_bias) [H] (unclamped), x [H, P], B and C [H, N] (each head its group's)."""
        heads, head_dim, groups, state_size = (int(MIXER[key]) for key in ("num_heads", "head_dim", "n_groups",
                                                                           "state_size"))  # fmt: skip
        dt = softplus(self.zxbcdt[t, MIXER_INNER + MIXER_CHANNELS :].astype(np.float64) + self.dt_bias)
        x = self.xbc[t, :MIXER_INNER].astype(np.float64).reshape(heads, head_dim)
        b, c = (
            np.repeat(self.xbc[t, start : start + groups * state_size].reshape(groups, state_size), heads // groups, 0)
            for start in (MIXER_INNER, MIXER_INNER + groups * state_size)
        )
        return dt, x, b, c


def check_ssd_step(rng: np.random.Generator, target: str, tokens: int) -> None:
    """The decode recurrence over the call's tokens. dt = softplus(raw + bias) is within 8 u (the add, then
    exp, + 1, log, the division and the product); decay = exp(dt A) within 11 u |dt A| + u (A = -exp(A_log):
    u; the product: u); a new state element decay s + (dt x) B within 12 u ((1 + |dt A|) |decay s| + |dt x B|),
    and the errors carried in s shrink by decay. y = D x + sum_n s_n C_n: the per-element errors times |C|,
    plus (N / block + 3) u of the sum of |terms| (the lanes' chains, the reduction, the product and add of
    D x). A bf16 state may round to the other neighbour of a boundary: one bf16 ulp (2^-8) more per token."""
    state_size = int(MIXER["state_size"])
    for dtype in ("f32", "bf16"):
        kernel = build("ssd_step", {**MIXER, "state_dtype": dtype}, target)
        assert kernel.tiles is not None
        pieces = -(-state_size // int(plain_dict(kernel.tiles)["block"]))
        problem = _SsdProblem(rng, tokens, dtype)
        run_kernel(kernel, problem.buffers())
        a, d, y = problem.a, problem.d, problem.y
        want, error_bound = problem.state.astype(np.float64), np.zeros(problem.state.shape)
        for t in range(tokens):
            dt, x, b, c = problem.token(t)
            decay = np.exp(dt * a)[:, None, None]
            decayed, update = decay * want, (dt[:, None] * x)[:, :, None] * b[:, None, :]
            want = decayed + update
            dta = np.abs(dt * a)[:, None, None]
            error_bound = decay * error_bound + 12 * F32_UNIT * ((1 + dta) * np.abs(decayed) + np.abs(update))
            if dtype == "bf16":
                error_bound += 2.0**-8 * np.abs(want)
                want = bf16_to_f32(bf16_bits(want.astype(np.float32))).astype(np.float64)
            terms = want * c[:, None, :]
            y_want = terms.sum(-1) + d[:, None] * x
            y_scale = np.abs(terms).sum(-1) + np.abs(d[:, None] * x)
            y_bound = (error_bound * np.abs(c[:, None, :])).sum(-1) + (pieces + 3) * F32_UNIT * y_scale
            got_y = y[t].reshape(x.shape)
            assert np.isfinite(got_y).all(), f"ssd_step {dtype}: y of token {t} unwritten"
            assert (np.abs(got_y - y_want) <= y_bound).all(), f"ssd_step {dtype}: y of token {t}"
        got = bf16_to_f32(problem.buffer) if dtype == "bf16" else problem.buffer
        assert (np.abs(got - want) <= error_bound).all(), f"ssd_step {dtype}: the final state"


def check_ssd_scan(rng: np.random.Generator, target: str, tokens: int) -> None:
    """The chunked scan (chunks of 16: 37 tokens are two whole chunks and a partial one) of the heads in two
    ranges (or, on a GPU, its programs), f32 and bf16 states, against the
    recurrence in float64. Bound: each output and state element is a
    sum of terms c decay(segment) (dt x B C products of the chunk's or the carried state's), each computed with
    at most N + 2 L + 32 roundings of the f32 products, sums and exps (u each), and its decay exp(segment) off
    by the segment's own rounding, at most 16 u |segment| relative (dt: 8 u; the TwoSum keeps each segment
    sum to u of itself). With (1 + |x|) e^(-|x|) <= 1.22 e^(-|x| / 2) the error is within (N + 2 L + 64) u times
    1.22 times the same recurrence in absolute values with half the decay. A bf16 state is widened exactly on
    entry and rounded once at the end: one bf16 ulp (2^-8) of it more."""
    heads, groups, state_size = (int(MIXER[key]) for key in ("num_heads", "n_groups", "state_size"))
    chunk, time_step_min = 16, 1e-3
    for dtype in ("f32", "bf16"):
        dims = {**MIXER, "chunk_size": chunk, "time_step_min": time_step_min, "state_dtype": dtype}
        kernel = build("ssd_scan", dims, target)
        problem = _SsdProblem(rng, tokens, dtype)
        if kernel.ranged is None:  # the GPUs' form (kernels/ssd_blocks.py): a program per head and channel block
            run_kernel(kernel, problem.buffers())
        else:
            cut = int(rng.integers(0, groups + 1)) * (heads // groups)  # the runtime splits on group boundaries
            for first, end in ((0, cut), (cut, heads)):
                run_kernel(kernel, problem.buffers(), program_range=(first, end))
        want, scale = problem.state.astype(np.float64), np.abs(problem.state.astype(np.float64))
        roundings = (state_size + 2 * chunk + 64) * F32_UNIT * 1.22
        for t in range(tokens):
            dt, x, b, c = problem.token(t)
            dt = np.maximum(dt, time_step_min)
            update = (dt[:, None] * x)[:, :, None] * b[:, None, :]
            want = np.exp(dt * problem.a)[:, None, None] * want + update
            scale = np.exp(dt * problem.a / 2)[:, None, None] * scale + np.abs(update)
            dx = problem.d[:, None] * x
            y_want = (want * c[:, None, :]).sum(-1) + dx
            y_scale = (scale * np.abs(c[:, None, :])).sum(-1) + np.abs(dx)
            got_y = problem.y[t].reshape(x.shape)
            assert np.isfinite(got_y).all(), f"ssd_scan {dtype}: y of token {t} unwritten"
            assert (np.abs(got_y - y_want) <= roundings * y_scale).all(), f"ssd_scan {dtype}: y of token {t}"
        got, bound = (bf16_to_f32(problem.buffer) if dtype == "bf16" else problem.buffer), roundings * scale
        if dtype == "bf16":
            bound = bound + 2.0**-8 * np.abs(want)
        assert (np.abs(got - want) <= bound).all(), f"ssd_scan {dtype}: the final state"


def check_attention(rng: np.random.Generator, target: str, tokens: int) -> None:
    """Causal GQA over a cache already holding `position` rows and this call's keys (rows past them NaN: never
    read), with a bf16 cache and output too. Bound, per output element o = sum_s p_s v_s / sum_s p_s (p_s =
    exp(s_s - max)): each score is a D-term dot product of pre-scaled queries, off by at most (D + 2) u
    sum_d |q_d k_d| / sqrt(D) = ds; exp turns that into a relative error of ds plus exp's own (a few u) in
    each p; the online softmax rescales the running sums once per key block (two roundings and an exp each)
    and adds S terms: |o - want| <= (2 ds + (S + 3 blocks + 12) u) (sum_s p_s |v_s|) / sum_s p_s."""
    heads, kv_heads, head_dim, position = 6, 2, 72, 3
    group, seen = heads // kv_heads, position + tokens
    capacity = seen + 2
    for cache_dtype, out_dtype in (("f32", "f32"), ("bf16", "bf16")):
        dims: dict[str, int | float | str] = {"num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim,
                                              "max_seq_len": capacity, "cache_dtype": cache_dtype,
                                              "out_dtype": out_dtype}  # fmt: skip
        kernel = build("attention", dims, target)
        if not kernel.is_dataflow():
            pytest.skip(reason=f"attention on {target} is the target's emitter (tiling/x86.py keeps it: faster there)")
        assert kernel.tiles is not None
        block = int(plain_dict(kernel.tiles)["block_k"])
        qkv = rng.standard_normal((tokens, (heads + 2 * kv_heads) * head_dim)).astype(np.float32)
        keys, values = nan(capacity, kv_heads, head_dim), nan(capacity, kv_heads, head_dim)
        keys[:seen], values[:seen] = (rng.standard_normal((seen, kv_heads, head_dim)).astype(np.float32) for _ in "kv")
        caches = [keys, values]
        if cache_dtype == "bf16":
            caches = [bf16_bits(cache) for cache in caches]
            keys, values = (bf16_to_f32(cache) for cache in caches)
        out = nan(tokens, heads * head_dim)
        out = bf16_bits(out) if out_dtype == "bf16" else out
        run_kernel(kernel, [qkv, *caches, out], tokens, {"position": position})
        q = qkv[:, : heads * head_dim].reshape(tokens, heads, head_dim).astype(np.float64) * head_dim**-0.5
        k = np.repeat(keys[:seen].astype(np.float64), group, axis=1)
        v = np.repeat(values[:seen].astype(np.float64), group, axis=1)
        scores = np.einsum("thd,shd->ths", q, k)
        visible = np.arange(seen)[None, None, :] <= (position + np.arange(tokens))[:, None, None]
        p = np.where(visible, np.exp(np.where(visible, scores, -np.inf) - scores.max(axis=2, keepdims=True)), 0.0)
        want = np.einsum("ths,shd->thd", p, v) / p.sum(axis=2, keepdims=True)
        ds = (head_dim + 2) * F32_UNIT * np.einsum("thd,shd->ths", np.abs(q), np.abs(k)).max(axis=2, keepdims=True)
        blocks = -(-seen // block)
        scale = np.einsum("ths,shd->thd", p, np.abs(v)) / p.sum(axis=2, keepdims=True)
        bound = (2 * ds + (seen + 3 * blocks + 12) * F32_UNIT) * scale
        got = (bf16_to_f32(out) if out_dtype == "bf16" else out).reshape(tokens, heads, head_dim).astype(np.float64)
        assert np.isfinite(got).all(), f"attention {cache_dtype}: elements unwritten or not finite"
        if out_dtype == "bf16":  # one rounding of the f32 result to bf16: half a bf16 ulp, 2^-9 relative
            bound = bound + 2.0**-8 * np.abs(want)
        assert (np.abs(got - want) <= bound).all(), f"attention {cache_dtype}: error {np.abs(got - want).max():.2e}"


# The GEMM's shapes: masked last panels (N 130, 20), a k tail (K 74 in steps of 4), K blocks (2100: partial
# sums through y, bias and relu2 on the last block), bf16 operands and a bf16 y, every epilogue and factor.
GEMMS: tuple[Dims, ...] = (
    {"n": 130, "k": 74, "epilogue": "store", "bias": 1, "row_scale": 1},
    {"n": 64, "k": 72, "epilogue": "accumulate", "bias": 0, "x_dtype": "bf16"},
    {"n": 20, "k": 2100, "epilogue": "relu2", "bias": 1, "row_scale": 1},
    {"n": 130, "k": 40, "epilogue": "relu2", "bias": 1, "x_dtype": "bf16", "y_dtype": "bf16"},
)


def check_matmul(rng: np.random.Generator, target: str, tokens: int) -> None:
    """y (op)= row_scale (x Wᵀ) + bias against float64 on the same (bf16-rounded) operands. The f32 sum of K
    products carries at most K + 1 roundings of the running sum's magnitude (Higham's gamma_K, first order),
    so each element is within (K + 4) u of S = row_scale |x| |W|ᵀ + |bias| + |y0| (the scale, bias and prior
    y add three); relu2 squares a value a within e = that bound: |a'² - a²| <= 2 |a| e + e² plus the square's
    rounding; a bf16 y adds half an ulp (at most 2^-8 relative: 8 significant bits) of its rounding. Both x86
    bodies: the vector blocking (weights in panels) and the AMX variant's matrix-unit blocking (a ranged body,
    x and W rounded to bf16, W in k pairs). On the GPUs the GEMM is still the targets' emitter (tiling/gpu.py):
    only the x86 bodies are dataflow."""
    from tessera.lowering.convert_tile_to_x86 import amx_kernel, gemm_spec, gemm_tiles
    from tessera.runtime.weights import pack_amx_vnni, pack_panels

    if target != "x86":
        return
    for dims in GEMMS:
        kernel = build("matmul", dims, target)
        assert kernel.tiles is not None
        nr = int(plain_dict(kernel.tiles)["nr"])

        def panels(weight: np.ndarray, nr: int = nr) -> np.ndarray:
            return pack_panels(weight, nr, "f32")

        _check_gemm(rng, kernel, dims, tokens, panels, bf16_operands=False)
        variant = amx_kernel(kernel.sym_name.data, gemm_spec(kernel), gemm_tiles(kernel))
        _check_gemm(rng, variant, dims, tokens, pack_amx_vnni, bf16_operands=True)


def _check_gemm(rng: np.random.Generator, kernel: tile.KernelOp, dims: Mapping[str, int | float | str], tokens: int,
                pack: Callable[[np.ndarray], np.ndarray], bf16_operands: bool) -> None:  # fmt: skip
    n, k = int(dims["n"]), int(dims["k"])
    x = rng.standard_normal((tokens, k)).astype(np.float32)
    x_arg = x
    if dims.get("x_dtype") == "bf16":
        x_arg = bf16_bits(x)
        x = bf16_to_f32(x_arg)
    weight = rng.standard_normal((n, k)).astype(np.float32)
    buffers = [x_arg, pack(weight)]
    if bf16_operands:  # the products the kernel computes: of x and W rounded to bf16
        x, weight = bf16_to_f32(bf16_bits(x)), bf16_to_f32(bf16_bits(weight))
    want = x.astype(np.float64) @ weight.astype(np.float64).T
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(weight.astype(np.float64)).T
    if dims.get("row_scale"):
        scale = rng.uniform(0.5, 2.0, tokens).astype(np.float32)
        want, magnitude = want * scale[:, None], magnitude * scale[:, None]
    if dims.get("bias"):
        bias = rng.standard_normal(n).astype(np.float32)
        buffers.append(bias)
        want, magnitude = want + bias, magnitude + np.abs(bias)
    if dims.get("row_scale"):
        buffers.append(scale)
    y = nan(tokens, n)
    if dims["epilogue"] == "accumulate":
        y = rng.standard_normal((tokens, n)).astype(np.float32)
        want, magnitude = want + y, magnitude + np.abs(y)
    error = (k + 4) * F32_UNIT * magnitude
    if dims["epilogue"] == "relu2":
        error = 2 * np.abs(want) * error + error**2 + 2 * F32_UNIT * want**2
        want = np.maximum(want, 0.0) ** 2
    if dims.get("y_dtype") == "bf16":
        y = bf16_bits(y)
        error = error + 2.0**-8 * np.abs(want)
    run_kernel(kernel, [*buffers, y], tokens)
    got = bf16_to_f32(y) if y.dtype == np.uint16 else y
    where = f"{kernel.sym_name.data} {dims}"
    assert np.isfinite(got).all(), f"{where}: elements unwritten or not finite"
    worst = np.max(np.abs(got.astype(np.float64) - want) - error)
    assert worst <= 0, f"{where}: an element is {worst:.2e} beyond its bound"


def check_moe_experts(rng: np.random.Generator, target: str, tokens: int) -> None:
    """contrib[t, j] = down[e] relu2(up[e] x[t]) for e = ids[t, j], against float64 on the same (bf16-rounded)
    operands, element by element: the up product within (L + 2) u |x| |up|ᵀ (check_matmul's bound), relu2
    turning an error e of a into at most 2 |a| e + e² plus its own rounding, the down product adding
    (F + 2) u |down| |h| to the error it carries, |down| e_h. Ids outside [0, E) (-1 here) leave their
    slot unwritten. On the GPUs the experts are still the targets' emitter (tiling/gpu_moe.py)."""
    from tessera.runtime.weights import pack_panels

    if target != "x86":
        return
    experts, top_k = 5, 2
    for ffn, latent, x_dtype in ((70, 72, "f32"), (40, 130, "bf16")):
        dims: Dims = {"num_experts": experts, "top_k": top_k, "ffn": ffn, "latent": latent, "x_dtype": x_dtype}
        kernel = build("moe_experts", dims, target)
        assert kernel.tiles is not None
        nr = int(plain_dict(kernel.tiles)["nr"])
        x = x_arg = rng.standard_normal((tokens, latent)).astype(np.float32)
        if x_dtype == "bf16":
            x_arg = bf16_bits(x)
            x = bf16_to_f32(x_arg)
        ids = np.stack([rng.permutation(experts)[:top_k] for _ in range(tokens)]).astype(np.int64)
        ids[0, -1] = -1  # a slot routed to no expert
        up = (rng.standard_normal((experts, ffn, latent)) / np.sqrt(latent)).astype(np.float32)
        down = (rng.standard_normal((experts, latent, ffn)) / np.sqrt(ffn)).astype(np.float32)
        contrib = nan(tokens, top_k * latent)
        run_kernel(kernel, [x_arg, ids, pack_panels(up, nr, "f32"), pack_panels(down, nr, "f32"), contrib], experts)
        got = contrib.reshape(tokens, top_k, latent)
        assert np.isnan(got[0, -1]).all(), "moe_experts: a slot of no expert was written"
        for expert in range(experts):
            rows, slots = np.nonzero(ids == expert)
            xe, upe, downe = (a.astype(np.float64) for a in (x[rows], up[expert], down[expert]))
            a = xe @ upe.T
            error_a = (latent + 2) * F32_UNIT * (np.abs(xe) @ np.abs(upe).T)
            hidden = np.maximum(a, 0.0) ** 2
            error_h = 2 * np.abs(a) * error_a + error_a**2 + 2 * F32_UNIT * hidden
            want = hidden @ downe.T
            bound = error_h @ np.abs(downe).T + (ffn + 2) * F32_UNIT * ((hidden + error_h) @ np.abs(downe).T)
            worst = np.max(np.abs(got[rows, slots] - want) - bound, initial=-1.0)
            assert worst <= 0, f"moe_experts {dims} expert {expert}: an element is {worst:.2e} beyond its bound"


def _gpu_only(kind: str, target: str) -> None:
    if target == "x86":
        pytest.skip(reason=f"{kind} is a GPU kind (x86 draws weights on the host and keeps one attention)")


def check_draw_weights(rng: np.random.Generator, target: str, tokens: int) -> None:
    """Philox bits, integer-only transforms and one f32 multiply: the host twin's bytes exactly, f32 and bf16."""
    _gpu_only("draw_weights", target)
    from tessera.model import philox

    seed, stream, cols = int(rng.integers(0, 2**63)), int(rng.integers(0, 2**32)), 72
    for rule, dtype in (("normal", "bf16"), ("uniform", "f32")):
        scale = philox.normal_scale(0.02) if rule == "normal" else philox.uniform_scale(0.1)
        dims: Dims = {
            "rule": rule,
            "scale_bits": int(np.array(scale).view(np.uint32)),
            "cols": cols,
            "out_dtype": dtype,
        }
        out = np.zeros((tokens, cols), np.uint16 if dtype == "bf16" else np.float32)
        key = np.array([seed & philox.WORD, seed >> 32, stream, 0], np.uint32).view(np.int32)
        run_kernel(build("draw_weights", dims, target), [out, key], tokens)
        words = philox.element_words(np.arange(tokens * cols, dtype=np.int64), stream, seed)
        values = philox.normal_values(words, 0.02) if rule == "normal" else philox.uniform_values(words, 0.1)
        want = (bf16_bits(values) if dtype == "bf16" else values).reshape(tokens, cols)
        assert np.array_equal(out.view(np.uint8), want.view(np.uint8)), f"draw_weights {rule} {dtype}"


def check_decode_attention(rng: np.random.Generator, target: str, tokens: int) -> None:
    """attention_split then attention_combine (one token at position tokens + 2, 4 splits: some empty where
    the position is small), against float64: each score a D-term dot product (D + 2) u sum |q k| off, exp's
    and the online softmax's roundings a key and a split each — the prefill attention's bound with one key a
    block, plus the combine's rescale."""
    _gpu_only("attention_split", target)
    heads, kv_heads, head_dim, splits, position = 6, 2, 72, 4, tokens + 2
    group, seen, capacity = 3, position + 1, position + 3
    dims: Dims = {"num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim, "max_seq_len": capacity,
                  "splits": splits}  # fmt: skip
    qkv = rng.standard_normal((1, (heads + 2 * kv_heads) * head_dim)).astype(np.float32)
    keys, values = nan(capacity, kv_heads, head_dim), nan(capacity, kv_heads, head_dim)
    keys[:seen], values[:seen] = (rng.standard_normal((seen, kv_heads, head_dim)).astype(np.float32) for _ in "kv")
    partials, out = nan(heads * splits, head_dim + 2), nan(1, heads * head_dim)
    run_kernel(build("attention_split", dims, target), [qkv, keys, values, partials], 1, {"position": position})
    run_kernel(build("attention_combine", dims, target), [partials, out], 1)
    q = qkv[0, : heads * head_dim].reshape(heads, head_dim).astype(np.float64) * head_dim**-0.5
    k = np.repeat(keys[:seen].astype(np.float64), group, axis=1)
    v = np.repeat(values[:seen].astype(np.float64), group, axis=1)
    scores = np.einsum("hd,shd->hs", q, k)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    want = np.einsum("hs,shd->hd", p, v) / p.sum(axis=1, keepdims=True)
    ds = (head_dim + 2) * F32_UNIT * np.einsum("hd,shd->hs", np.abs(q), np.abs(k)).max(axis=1, keepdims=True)
    scale = np.einsum("hs,shd->hd", p, np.abs(v)) / p.sum(axis=1, keepdims=True)
    bound = (2 * ds + (4 * seen + 4 * splits + 12) * F32_UNIT) * scale
    got = out.reshape(heads, head_dim).astype(np.float64)
    assert np.isfinite(got).all() and (np.abs(got - want) <= bound).all(), "decode attention beyond its bound"


def check_decode_experts(rng: np.random.Generator, target: str, tokens: int) -> None:
    """moe_experts_up then moe_experts_down (one token, f32: the GEMVs' K-term dot products, (K + 2) u sum |w x|
    off each, through relu2 and the down product), a choice of no expert left unwritten."""
    _gpu_only("moe_experts_up", target)
    experts, top_k, ffn, latent = 4, 3, 42, 70
    dims: Dims = {"num_experts": experts, "top_k": top_k, "ffn": ffn, "latent": latent}
    x = rng.standard_normal((1, latent)).astype(np.float32)
    up = (rng.standard_normal((experts, ffn, latent)) / np.sqrt(latent)).astype(np.float32)
    down = (rng.standard_normal((experts, latent, ffn)) / np.sqrt(ffn)).astype(np.float32)
    ids = np.array([[3, -1, 1]], np.int64)
    hidden, contrib = nan(top_k, ffn), nan(1, top_k * latent)
    run_kernel(build("moe_experts_up", dims, target), [x, ids, up, hidden], 1)
    run_kernel(build("moe_experts_down", dims, target), [hidden, ids, down, contrib], 1)
    for j, expert in enumerate(ids[0]):
        got = contrib[0, j * latent : (j + 1) * latent].astype(np.float64)
        if expert < 0:
            assert np.isnan(got).all(), "decode experts: a choice of no expert was written"
            continue
        w_up, w_down, x64 = up[expert].astype(np.float64), down[expert].astype(np.float64), x[0].astype(np.float64)
        a = w_up @ x64
        error_a = (latent + 2) * F32_UNIT * (np.abs(w_up) @ np.abs(x64))
        h = np.maximum(a, 0.0) ** 2
        error_h = 2 * np.abs(a) * error_a + error_a**2 + 2 * F32_UNIT * h
        want = w_down @ h
        bound = np.abs(w_down) @ error_h + (ffn + 2) * F32_UNIT * (np.abs(w_down) @ (h + error_h))
        assert (np.abs(got - want) <= bound).all(), f"decode experts choice {j}: beyond its bound"


CHECKS: dict[str, Callable[[np.random.Generator, str, int], None]] = {
    "draw_weights": check_draw_weights,
    "moe_experts_up": check_decode_experts,
    "moe_experts_down": check_decode_experts,
    "attention_split": check_decode_attention,
    "attention_combine": check_decode_attention,
    "attention": check_attention,
    "conv_silu": check_conv_silu,
    "ssd_scan": check_ssd_scan,
    "ssd_step": check_ssd_step,
    "gated_rmsnorm": check_gated_rmsnorm,
    "embedding": check_embedding,
    "rms_scale": check_rms_scale,
    "rmsnorm": check_rmsnorm,
    "moe_combine": check_moe_combine,
    "moe_router": check_moe_router,
    "moe_experts": check_moe_experts,
    "kv_append": check_kv_append,
    "matmul": check_matmul,
}


@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_kernel_against_reference(rng: np.random.Generator, kind: str, target: str, tokens: int) -> None:
    CHECKS[kind](rng, target, tokens)


def test_every_kernel_kind_is_interpreted() -> None:
    missing = sorted(set(KERNELS) - set(CHECKS))
    assert not missing, f"kinds of kernels/ without an interpreter check in CHECKS: {missing}"


# --- the interpreter's own semantics ---------------------------------------------------------------------------


def test_row_softmax_reduces_with_max_and_exp(rng: np.random.Generator) -> None:
    """max, exp, subf and divf on tiles and scalars (ops the attention and MoE kernels will use)."""
    width = 40
    k = KernelBuilder({"x": MemRefType(f32, [DYNAMIC_INDEX, width]), "y": MemRefType(f32, [DYNAMIC_INDEX, width])})
    x, y = k.buffers
    row = k.load(x, [k.program_id, k.index(0)], [width])
    largest = k.reduce("max", row)
    exps = k.map([row, largest], lambda e, v, m: e.exp(e.subf(v, m)))
    total = k.reduce("add", exps)
    k.store(k.map([exps, total], lambda e, v, s: e.divf(v, s)), y, [k.program_id, k.index(0)])
    values = rng.uniform(0, 2, (7, width)).astype(np.float32)
    out = nan(7, width)
    run_kernel(_kernel_of(k.finish()), [values, out])
    wide = values.astype(np.float64)
    want = np.exp(wide - wide.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    # d = v - max lies in (-2, 0]: subf's rounding (u) becomes an error of |d| u <= 2 u through exp, which rounds
    # once more: 3 u per term. The sum of those positive terms rounds once (4 u), the division once: 8 u, and a
    # u for the second-order terms.
    check_relative("softmax", out, want, 9 * F32_UNIT)


def test_map_with_integer_ops_runs_on_whole_tiles_and_wraps(rng: np.random.Generator) -> None:
    """Integer element ops run on whole tiles (as float ones do), wrapped to their width as a target's: i32
    products past 2^31 wrap, an unsigned comparison reads the bits unsigned."""
    for element, dtype in ((i64, np.int64), (i32, np.int32)):
        k = KernelBuilder({"a": MemRefType(element, [DYNAMIC_INDEX, 8]), "b": MemRefType(element, [DYNAMIC_INDEX, 8])})
        a, b = k.buffers
        values = k.load(a, [k.program_id, k.index(0)], [8])
        squares = k.map([values], lambda e, v: e.muli(v, e.addi(v, v)))
        # where v < 0 as unsigned (never: negative values are huge unsigned), keep 0, else the square
        kept = k.map([values, squares], lambda e, v, s: e.select(e.cmpi("ult", v, e.cast(e.index(0), v.type)), v, s))
        k.store(kept, b, [k.program_id, k.index(0)])
        source = rng.integers(-(2**20), 2**20, (3, 8)).astype(dtype)
        got = np.zeros((3, 8), dtype)
        run_kernel(_kernel_of(k.finish()), [source, got])
        want = (2 * source.astype(np.int64) * source.astype(np.int64)).astype(dtype)  # numpy wraps the cast
        assert np.array_equal(got, want), element


def test_interleave_alternates_two_rows_and_checks_its_operands(rng: np.random.Generator) -> None:
    """Two rows as one row of k pairs (the layout an mma with rhs_pairs reads): out[2j + t] = row t [j]; two
    tiles of different types, or not rank-1, are refused by the verifier."""
    k = KernelBuilder({"a": MemRefType(f32, [DYNAMIC_INDEX, 2, 8]), "b": MemRefType(f32, [DYNAMIC_INDEX, 16])})
    a, b = k.buffers
    rows = [k.load(a, [k.program_id, k.index(t), k.index(0)], [8]) for t in (0, 1)]
    k.store(k.interleave(*rows), b, [k.program_id, k.index(0)])
    source, got = rng.standard_normal((3, 2, 8)).astype(np.float32), nan(3, 16)
    run_kernel(_kernel_of(k.finish()), [source, got])
    assert np.array_equal(got, source.transpose(0, 2, 1).reshape(3, 16))
    for shapes in (([8], [4]), ([2, 4], [2, 4])):
        k = KernelBuilder({"a": MemRefType(f32, [2, 8])})
        even, odd = (k.load(k.buffers[0], [k.index(0), k.index(0)], shape) for shape in shapes)
        with pytest.raises(VerifyException, match="interleaves two rank-1 tiles of one type"):
            tile.InterleaveOp.create(operands=[even, odd], result_types=[even.type]).verify()


def test_narrow_rounds_once_to_bf16() -> None:
    """float64 -> bf16 in one rounding: 1 + 2^-8 + 2^-40 lies above the midpoint of 1 and 1 + 2^-7, which
    rounding to f32 first would land on exactly (and then round to even, down)."""
    above, below = 1 + 2.0**-8 + 2.0**-40, 1 + 2.0**-8 - 2.0**-40
    bits = narrow(np.array([above, below, 1 + 2.0**-8, np.nan, -np.inf]), bf16)
    assert list(bits[:3]) == [0x3F81, 0x3F80, 0x3F80]
    assert bits[3] & 0x7FC0 == 0x7FC0 and bits[4] == 0xFF80


# --- errors -----------------------------------------------------------------------------------------------------


def _kernel_of(body: Block, kind: str = "test") -> tile.KernelOp:
    return tile.KernelOp(
        properties={
            "sym_name": StringAttr(kind),
            "kind": StringAttr(kind),
            "dims": DictionaryAttr({}),
            "parallel": StringAttr("tokens"),
            "grid": IntegerAttr(0, i64),
        },
        regions=[Region(body)],
    )


def _one_line_error(call: Callable[[], None], *phrases: str) -> None:
    with pytest.raises(TesseraError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message


def test_an_op_without_an_implementation_is_one_line() -> None:
    kernel = build("rms_scale", {"hidden": 72, "epsilon": EPSILON}, "x86").clone()
    store = next(op for op in kernel.body.walk() if isinstance(op, tile.StoreOp))
    kernel.body.block.insert_op_before(test_dialect.TestOp(), store)
    h, rstd = np.ones((2, 72), np.float32), nan(2)
    _one_line_error(lambda: run_kernel(kernel, [h, rstd]), "@rms_scale", "program 0", "test.op")


def test_an_access_outside_a_buffer_is_one_line(rng: np.random.Generator) -> None:
    kernel = build("embedding", {"vocab": 50, "hidden": 72}, "x86")
    table = rng.standard_normal((50, 72)).astype(np.float32)
    ids = np.array([3, 50, 7], np.int64)  # the runtime checks ids before a call; the interpreter checks every access
    _one_line_error(
        lambda: run_kernel(kernel, [ids, table, nan(3, 72)]), "program 1", "tessera.tile.load of 'table'", "index 50"
    )
    _one_line_error(  # more programs than the buffers have rows
        lambda: run_kernel(kernel, [ids, table, nan(2, 72)], tokens=3), "program", "outside its size"
    )


def test_buffers_not_matching_the_kernel_are_one_line() -> None:
    kernel = build("rms_scale", {"hidden": 72, "epsilon": EPSILON}, "x86")
    h = np.ones((2, 72), np.float32)
    _one_line_error(lambda: run_kernel(kernel, [h.astype(np.float64), nan(2)]), "buffer 'h'", "memref<?x72xf32>")
    _one_line_error(lambda: run_kernel(kernel, [np.ones((2, 64), np.float32), nan(2)]), "buffer 'h'")
    _one_line_error(lambda: run_kernel(kernel, [h]), "1 buffers for a kernel taking 2")
    _one_line_error(lambda: run_kernel(kernel, [h, nan(2)], scalars={"position": 3}), "scalars")
    assert issubclass(TileInterpreterError, TesseraError)
