"""Choosing the next token: greedy, temperature with top-k / top-p, reproducible by seed."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.runtime.sampling import Sampler, SamplingError, SamplingOptions

LOGITS = np.array([0.1, 2.0, -1.0, 1.9, 0.5], np.float32)


def test_greedy_is_the_first_maximum() -> None:
    assert Sampler(SamplingOptions())(LOGITS) == 1
    assert Sampler(SamplingOptions())(np.array([3.0, 3.0, 1.0])) == 0


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    assert {Sampler(SamplingOptions(temperature=5.0, top_k=1, seed=s))(LOGITS) for s in range(20)} == {1}
    assert {Sampler(SamplingOptions(temperature=5.0, top_p=1e-6, seed=s))(LOGITS) for s in range(20)} == {1}


def test_top_k_limits_the_candidates_and_seeds_reproduce() -> None:
    picks = [Sampler(SamplingOptions(temperature=10.0, top_k=2, seed=s))(LOGITS) for s in range(200)]
    assert set(picks) == {1, 3}
    again = [Sampler(SamplingOptions(temperature=10.0, top_k=2, seed=s))(LOGITS) for s in range(200)]
    assert picks == again


def test_nan_logits_fail() -> None:
    with pytest.raises(SamplingError, match="NaN"):
        Sampler(SamplingOptions())(np.array([np.nan, 1.0]))
