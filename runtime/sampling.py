"""Choosing the next token from logits: greedy, or temperature with top-k / top-p (nucleus)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.errors import TesseraError


class SamplingError(TesseraError):
    """Logits no token can be chosen from."""


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means all tokens
    top_p: float = 1.0
    seed: int = 0


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
