"""Causal grouped-query attention over a KV cache (HF's NemotronHAttention: no RoPE, no QK norm, no bias).

Prefill appends the prompt's keys and values and attends causally; decode appends one token and attends
over everything cached. The prompt is never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tessera.reference.common import linear


@dataclass(frozen=True)
class AttentionParams:
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass
class KVCache:
    """Keys and values of every position so far, [T, kv_heads, head_dim] each (float32)."""

    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(k.shape[0] for k in self.keys)

    def append(self, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.keys.append(k.astype(np.float32))
        self.values.append(v.astype(np.float32))
        if len(self.keys) > 1:  # keep one contiguous block
            self.keys = [np.concatenate(self.keys)]
            self.values = [np.concatenate(self.values)]
        return self.keys[0], self.values[0]


def attention(
    hidden: np.ndarray,
    q_weight: np.ndarray,
    k_weight: np.ndarray,
    v_weight: np.ndarray,
    o_weight: np.ndarray,
    p: AttentionParams,
    cache: KVCache,
) -> np.ndarray:
    tokens = hidden.shape[0]
    past = cache.length
    q = linear(hidden, q_weight).reshape(tokens, p.num_heads, p.head_dim)
    k_new = linear(hidden, k_weight).reshape(tokens, p.num_kv_heads, p.head_dim)
    v_new = linear(hidden, v_weight).reshape(tokens, p.num_kv_heads, p.head_dim)
    keys, values = cache.append(k_new, v_new)
    # Query head h reads kv head h // (num_heads / num_kv_heads).
    group = p.num_heads // p.num_kv_heads
    keys = np.repeat(keys.astype(np.float64), group, axis=1)  # [S, H, hd]
    values = np.repeat(values.astype(np.float64), group, axis=1)
    scores = np.einsum("thd,shd->hts", q, keys) * p.head_dim**-0.5
    # Query t sits at absolute position past + t and sees positions <= it.
    visible = np.arange(past + tokens)[None, :] <= (past + np.arange(tokens))[:, None]
    scores = np.where(visible[None], scores, -np.inf)
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    out = np.einsum("hts,shd->thd", probs, values).reshape(tokens, p.num_heads * p.head_dim)
    return linear(out, o_weight)
