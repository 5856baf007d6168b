"""The reference kernels against naive definitions, on random inputs drawn from each test's seed."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.reference.attention import AttentionParams, KVCache, attention
from tessera.reference.mamba2 import (
    Mamba2Params,
    Mamba2State,
    Mamba2Weights,
    mamba2_decode,
    mamba2_prefill,
    ssd_chunked,
)

H, P, N, G, K, D = 4, 6, 5, 2, 4, 16


def naive_scan(x, dt, a, b, c, state):  # type: ignore[no-untyped-def]
    """h[t] = exp(dt A) h[t-1] + dt B x ; y = C h: one step at a time, float64."""
    y = np.empty_like(x)
    h = state.astype(np.float64).copy()
    for t in range(x.shape[0]):
        h = h * np.exp(dt[t] * a)[:, None, None] + (dt[t][:, None, None] * b[t][:, None, :]) * x[t][:, :, None]
        y[t] = np.einsum("hpn,hn->hp", h, c[t])
    return y, h


def rel(actual: np.ndarray, expected: np.ndarray) -> float:
    assert np.isfinite(actual).all()
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize(("tokens", "chunk"), [(1, 4), (7, 4), (8, 4), (13, 8), (30, 128)])
def test_chunked_ssd_equals_recurrence(rng: np.random.Generator, tokens: int, chunk: int) -> None:
    x = rng.standard_normal((tokens, H, P))
    dt = rng.uniform(0.01, 0.5, (tokens, H))
    a = -rng.uniform(0.5, 3.0, H)
    b = rng.standard_normal((tokens, H, N))
    c = rng.standard_normal((tokens, H, N))
    state = rng.standard_normal((H, P, N))
    y, final = ssd_chunked(x, dt, a, b, c, state, chunk)
    y_ref, final_ref = naive_scan(x, dt, a, b, c, state)
    assert rel(y, y_ref) < 1e-12
    assert rel(final, final_ref) < 1e-12


def _mamba(rng: np.random.Generator, chunk: int = 4) -> tuple[Mamba2Weights, Mamba2Params]:
    inner, conv = H * P, H * P + 2 * G * N
    weights = Mamba2Weights(
        in_proj_weight=rng.standard_normal((inner + conv + H, D)) * 0.3,
        conv_weight=rng.standard_normal((conv, K)) * 0.5,
        conv_bias=rng.standard_normal(conv) * 0.1,
        dt_bias=rng.standard_normal(H) - 1,
        A_log=np.log(rng.uniform(0.5, 4, H)),
        D=rng.standard_normal(H),
        norm_weight=1 + 0.2 * rng.standard_normal(inner),
        out_proj_weight=rng.standard_normal((D, inner)) * 0.3,
    )
    params = Mamba2Params(H, P, N, G, K, chunk, 1e-5, time_step_min=0.0)
    return weights, params


@pytest.mark.parametrize("split", [1, 3, 4, 9])
def test_mamba_prefill_in_two_pieces_equals_one(rng: np.random.Generator, split: int) -> None:
    weights, params = _mamba(rng)
    hidden = rng.standard_normal((11, D))
    whole, whole_state = mamba2_prefill(hidden, weights, params, Mamba2State.zeros(params))
    first, state = mamba2_prefill(hidden[:split], weights, params, Mamba2State.zeros(params))
    second, state = mamba2_prefill(hidden[split:], weights, params, state)
    # The state crosses the split in float32, as it does between compiled calls.
    assert rel(np.concatenate([first, second]), whole) < 1e-6
    assert rel(state.ssm_state, whole_state.ssm_state) < 1e-6
    np.testing.assert_array_equal(state.conv_state, whole_state.conv_state)


def test_mamba_decode_steps_equal_prefill(rng: np.random.Generator) -> None:
    weights, params = _mamba(rng)
    hidden = rng.standard_normal((9, D))
    whole, _ = mamba2_prefill(hidden, weights, params, Mamba2State.zeros(params))
    out, state = mamba2_prefill(hidden[:5], weights, params, Mamba2State.zeros(params))
    steps = [out]
    for t in range(5, 9):
        step, state = mamba2_decode(hidden[t : t + 1], weights, params, state)
        steps.append(step)
    assert rel(np.concatenate(steps), whole) < 1e-6


def test_attention_decode_reads_the_cache(rng: np.random.Generator) -> None:
    params = AttentionParams(num_heads=4, num_kv_heads=2, head_dim=8)
    q, k, v, o = (rng.standard_normal(shape) * 0.3 for shape in [(32, D), (16, D), (16, D), (D, 32)])
    hidden = rng.standard_normal((6, D))
    whole = attention(hidden, q, k, v, o, params, KVCache())
    cache = KVCache()
    pieces = [attention(hidden[:4], q, k, v, o, params, cache)]
    pieces += [attention(hidden[t : t + 1], q, k, v, o, params, cache) for t in (4, 5)]
    assert cache.length == 6
    assert rel(np.concatenate(pieces), whole) < 1e-6
    # The first position attends only to itself: its output is o(v0) per head group (cache is f32).
    v0 = (hidden[:1] @ v.T).reshape(1, 2, 8)
    assert rel(whole[:1], np.repeat(v0, 2, axis=1).reshape(1, 32) @ o.T) < 1e-6
