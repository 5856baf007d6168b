"""Choosing the next token from logits: greedy, or temperature with top-k / top-p (nucleus)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tessera.errors import TesseraError


class SamplingError(TesseraError):
    """Logits no token can be chosen from."""


# Below this, float32 logits divided by the temperature could overflow float64 to inf (and inf - inf is
# NaN): float32's largest over float64's largest, with a factor 2 of margin for rounding.
MIN_TEMPERATURE = 2 * float(np.finfo(np.float32).max) / float(np.finfo(np.float64).max)


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means all tokens
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature < math.inf):
            raise SamplingError(
                f"temperature must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE:.3g}, got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise SamplingError(f"top_k must be >= 0, got {self.top_k}")
        if self.seed < 0:
            raise SamplingError(f"seed must be >= 0, got {self.seed}")


class Sampler:
    def __init__(self, options: SamplingOptions) -> None:
        self.options = options
        self._rng = np.random.default_rng(options.seed)

    def __call__(self, logits: np.ndarray) -> int:
        if np.isnan(logits).any():
            raise SamplingError("the model produced NaN logits; no token can be chosen")
        opts = self.options
        if opts.temperature <= 0.0:
            # First maximum, as torch.argmax picks.
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / opts.temperature
        if not np.isfinite(scaled).all():
            # inf - inf is NaN in the softmax below; a greedy choice is still defined.
            raise SamplingError(
                "the model produced non-finite logits (inf or NaN); only greedy decoding (temperature 0) can use them"
            )
        order = np.argsort(-scaled, kind="stable")
        if opts.top_k > 0:
            order = order[: opts.top_k]
        probs = np.exp(scaled[order] - scaled[order[0]])
        probs /= probs.sum()
        if opts.top_p < 1.0:
            # Keep the smallest prefix whose mass reaches top_p (always at least one token).
            keep = int(np.searchsorted(np.cumsum(probs), opts.top_p) + 1)
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self._rng.choice(len(order), p=probs)])
