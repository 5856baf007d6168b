"""Elementwise and linear building blocks shared by the reference kernels (float64 inside)."""

from __future__ import annotations

import numpy as np


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x [T, in] @ weight[out, in]^T (+ bias): PyTorch's nn.Linear."""
    out = np.asarray(x, np.float64) @ np.asarray(weight, np.float64).T
    if bias is not None:
        out = out + bias
    return out


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def softplus(x: np.ndarray) -> np.ndarray:
    # torch.nn.functional.softplus with threshold 20: linear above it.
    x = np.asarray(x, np.float64)
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def rmsnorm(x: np.ndarray, weight: np.ndarray, epsilon: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return weight * (x / np.sqrt(variance + epsilon))


def mlp_relu2(
    x: np.ndarray,
    up_weight: np.ndarray,
    down_weight: np.ndarray,
    up_bias: np.ndarray | None = None,
    down_bias: np.ndarray | None = None,
) -> np.ndarray:
    hidden = np.maximum(linear(x, up_weight, up_bias), 0.0)
    return linear(hidden * hidden, down_weight, down_bias)


def embedding(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rows of `table` [V, D] for each token id; ids outside [0, V) are an error, not a wrap-around."""
    ids = np.asarray(ids, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        bad = int(ids[(ids < 0) | (ids >= table.shape[0])][0])
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {table.shape[0]})")
    return np.asarray(table, np.float64)[ids]


def lm_head(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Logits [T, V] = x [T, D] @ weight[V, D]^T (no bias, never tied: HF's NemotronHForCausalLM)."""
    return linear(x, weight)
