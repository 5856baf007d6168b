"""The Mamba-2 mixer in numpy: chunked SSD for prefill, the single-step recurrence for decode.

Both follow transformers' NemotronHMamba2Mixer (torch path). Arithmetic is float64 inside a call; the
state carried between calls (conv_state, ssm_state) is float32, as HF and the compiled targets keep it,
so a prompt prefilled in pieces sees exactly the state a compiled program would hand over.

Shapes (one sequence): x [T, D]; H heads of P channels, G groups of state size N; I = H*P;
conv channels C = I + 2*G*N; conv_state [C, K-1] holds the last K-1 conv inputs; ssm_state [H, P, N].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.reference.common import linear, silu, softplus


@dataclass(frozen=True)
class Mamba2Params:
    num_heads: int
    head_dim: int
    state_size: int
    n_groups: int
    conv_kernel: int
    chunk_size: int
    epsilon: float
    time_step_min: float


@dataclass
class Mamba2Weights:
    in_proj_weight: np.ndarray
    conv_weight: np.ndarray  # [C, K]
    dt_bias: np.ndarray
    A_log: np.ndarray
    D: np.ndarray
    norm_weight: np.ndarray
    out_proj_weight: np.ndarray
    in_proj_bias: np.ndarray | None = None
    conv_bias: np.ndarray | None = None
    out_proj_bias: np.ndarray | None = None


@dataclass
class Mamba2State:
    conv_state: np.ndarray  # [C, K-1] float32
    ssm_state: np.ndarray  # [H, P, N] float32

    @classmethod
    def zeros(cls, p: Mamba2Params) -> Mamba2State:
        channels = p.num_heads * p.head_dim + 2 * p.n_groups * p.state_size
        return cls(
            np.zeros((channels, p.conv_kernel - 1), np.float32),
            np.zeros((p.num_heads, p.head_dim, p.state_size), np.float32),
        )


def _split_projection(zxbcdt: np.ndarray, p: Mamba2Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inner = p.num_heads * p.head_dim
    conv_dim = inner + 2 * p.n_groups * p.state_size
    return zxbcdt[:, :inner], zxbcdt[:, inner : inner + conv_dim], zxbcdt[:, inner + conv_dim :]


def _split_xbc(xbc: np.ndarray, p: Mamba2Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[T, C] -> x [T, H, P], B and C [T, H, N] (each head reads its group's B and C)."""
    tokens = xbc.shape[0]
    inner = p.num_heads * p.head_dim
    gn = p.n_groups * p.state_size
    x = xbc[:, :inner].reshape(tokens, p.num_heads, p.head_dim)
    heads_per_group = p.num_heads // p.n_groups
    b = np.repeat(xbc[:, inner : inner + gn].reshape(tokens, p.n_groups, p.state_size), heads_per_group, axis=1)
    c = np.repeat(xbc[:, inner + gn :].reshape(tokens, p.n_groups, p.state_size), heads_per_group, axis=1)
    return x, b, c


def causal_conv(xbc: np.ndarray, w: Mamba2Weights, conv_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depthwise causal conv over time with the carried inputs prepended; returns (silu(out), new state)."""
    taps = w.conv_weight.shape[1]
    padded = np.concatenate([conv_state.T.astype(np.float64), xbc], axis=0)  # [K-1+T, C]
    tokens = xbc.shape[0]
    out = np.zeros_like(xbc)
    for k in range(taps):
        out += padded[k : k + tokens] * w.conv_weight[:, k]
    if w.conv_bias is not None:
        out += w.conv_bias
    new_state = padded[padded.shape[0] - (taps - 1) :].T
    return silu(out), new_state.astype(np.float32)


def gated_rmsnorm(y: np.ndarray, z: np.ndarray, weight: np.ndarray, groups: int, eps: float) -> np.ndarray:
    """HF's NemotronHRMSNormGated: normalise y * silu(z) within `groups` channel groups."""
    gated = y * silu(z)
    tokens, channels = gated.shape
    grouped = gated.reshape(tokens, groups, channels // groups)
    variance = np.mean(grouped * grouped, axis=-1, keepdims=True)
    return (grouped / np.sqrt(variance + eps)).reshape(tokens, channels) * weight


def ssd_chunked(
    x: np.ndarray,
    dt: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    ssm_state: np.ndarray,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """State-space duality, chunk by chunk: y[t] = C[t]·h[t] with h[t] = exp(dt[t]A) h[t-1] + dt[t] B[t] x[t].

    x [T, H, P], dt [T, H], a [H], b and c [T, H, N], ssm_state [H, P, N] -> (y [T, H, P], final state).
    Within a chunk the output is a masked matmul (the "diagonal block"); across chunks only the state
    passes, decayed by the chunk's total exp(sum dt*A) — the algorithm the compiled targets tile.
    """
    tokens = x.shape[0]
    state = ssm_state.astype(np.float64)
    y = np.empty_like(x)
    for start in range(0, tokens, chunk_size):
        end = min(start + chunk_size, tokens)
        xs = x[start:end] * dt[start:end, :, None]  # [L, H, P]
        log_decay = np.cumsum(dt[start:end] * a, axis=0)  # [L, H]: sum of dt*A up to and including l
        bs, cs = b[start:end], c[start:end]
        # Intra-chunk: y[l] += sum_{s<=l} (C[l]·B[s]) exp(cum[l]-cum[s]) xs[s]
        segment = log_decay[:, None, :] - log_decay[None, :, :]  # [l, s, H]
        causal = np.tril(np.ones((end - start, end - start), dtype=bool))[:, :, None]
        decay = np.where(causal, np.exp(np.where(causal, segment, 0.0)), 0.0)
        scores = np.einsum("lhn,shn->lsh", cs, bs) * decay
        y_diag = np.einsum("lsh,shp->lhp", scores, xs)
        # From the state entering the chunk: y[l] += exp(cum[l]) C[l]·h
        y_off = np.einsum("lhn,hpn->lhp", cs, state) * np.exp(log_decay)[:, :, None]
        y[start:end] = y_diag + y_off
        # State leaving the chunk.
        to_end = np.exp(log_decay[-1] - log_decay)  # [L, H]
        state = state * np.exp(log_decay[-1])[:, None, None] + np.einsum("lhn,lh,lhp->hpn", bs, to_end, xs)
    return y, state


@dataclass
class _ScanInputs:
    """What the projection and the conv hand to the scan: gate z, x/B/C per head, raw dt, A, new conv state."""

    z: np.ndarray
    x: np.ndarray  # [T, H, P]
    b: np.ndarray  # [T, H, N]
    c: np.ndarray  # [T, H, N]
    dt: np.ndarray  # [T, H], softplus(dt + dt_bias), not yet clamped
    a: np.ndarray  # [H], -exp(A_log)
    conv_state: np.ndarray


def _scan_inputs(hidden: np.ndarray, w: Mamba2Weights, p: Mamba2Params, state: Mamba2State) -> _ScanInputs:
    z, xbc, dt = _split_projection(linear(hidden, w.in_proj_weight, w.in_proj_bias), p)
    xbc, conv_state = causal_conv(xbc, w, state.conv_state)
    x, b, c = _split_xbc(xbc, p)
    a = -np.exp(w.A_log.astype(np.float64))
    return _ScanInputs(z, x, b, c, softplus(dt + w.dt_bias), a, conv_state)


def mamba2_prefill(
    hidden: np.ndarray, w: Mamba2Weights, p: Mamba2Params, state: Mamba2State
) -> tuple[np.ndarray, Mamba2State]:
    """A prompt (or the next piece of one) through the mixer, resuming from and returning the state."""
    s = _scan_inputs(hidden, w, p, state)
    # HF's chunked path clamps dt to [time_step_min, inf); its decode step does not.
    dt = np.maximum(s.dt, p.time_step_min)
    y, ssm_state = ssd_chunked(s.x, dt, s.a, s.b, s.c, state.ssm_state, p.chunk_size)
    y = y + s.x * w.D[:, None]
    out = _finish(y.reshape(hidden.shape[0], -1), s.z, w, p)
    return out, Mamba2State(s.conv_state, ssm_state.astype(np.float32))


def mamba2_decode(
    hidden: np.ndarray, w: Mamba2Weights, p: Mamba2Params, state: Mamba2State
) -> tuple[np.ndarray, Mamba2State]:
    """One token [1, D] through the mixer with the single-step recurrence (HF's selective_state_update)."""
    s = _scan_inputs(hidden, w, p, state)
    dt, x, b, c = s.dt[0], s.x[0], s.b[0], s.c[0]
    ssm = state.ssm_state.astype(np.float64) * np.exp(dt * s.a)[:, None, None]
    ssm = (ssm + (dt[:, None, None] * b[:, None, :]) * x[:, :, None]).astype(np.float32)
    y = np.einsum("hpn,hn->hp", ssm.astype(np.float64), c) + x * w.D[:, None]
    out = _finish(y.reshape(1, -1), s.z, w, p)
    return out, Mamba2State(s.conv_state, ssm)


def _finish(y: np.ndarray, z: np.ndarray, w: Mamba2Weights, p: Mamba2Params) -> np.ndarray:
    normed = gated_rmsnorm(y, z, w.norm_weight, p.n_groups, p.epsilon)
    return linear(normed, w.out_proj_weight, w.out_proj_bias)
