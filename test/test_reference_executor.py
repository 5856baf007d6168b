"""The reference executor's state handling: prefill/decode and chunked prefill agree with one-shot runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tessera.dialects import parse_module
from tessera.frontend.checkpoint import random_weights
from tessera.frontend.config import load_model
from tessera.frontend.graph_builder import build_graph
from tessera.reference.executor import ExecutionError, ReferenceExecutor

TINY = Path(__file__).resolve().parent.parent / "configs" / "nemotron_h_tiny.yaml"


def rel(actual: np.ndarray, expected: np.ndarray) -> float:
    assert np.isfinite(actual).all()
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def executor() -> ReferenceExecutor:
    config = load_model(TINY).config  # M-M*-ME, chunk 16, groups 2
    # Round-trip through text, as tessera-run reads graph.mlir.
    module = parse_module(str(build_graph(config)), "tiny.mlir")
    return ReferenceExecutor(module, random_weights(config, seed=1))


PROMPT = [int(t) for t in np.random.default_rng(0).integers(0, 301, size=37)]


def test_prefill_then_decode_equals_prefill_of_everything(executor: ReferenceExecutor) -> None:
    executor.reset()
    whole = executor.prefill(PROMPT)
    executor.reset()
    logits = [executor.prefill(PROMPT[:30])]
    logits += [executor.decode(token)[None] for token in PROMPT[30:]]
    assert executor.state.position == len(PROMPT)
    assert rel(np.concatenate(logits), whole) < 1e-5


@pytest.mark.parametrize("split", [1, 15, 16, 17, 31])
def test_prefill_in_two_pieces_equals_one(executor: ReferenceExecutor, split: int) -> None:
    executor.reset()
    whole = executor.prefill(PROMPT)
    executor.reset()
    pieces = np.concatenate([executor.prefill(PROMPT[:split]), executor.prefill(PROMPT[split:])])
    assert rel(pieces, whole) < 1e-5


def test_decode_token_by_token_from_the_start(executor: ReferenceExecutor) -> None:
    executor.reset()
    whole = executor.prefill(PROMPT[:12])
    executor.reset()
    steps = np.stack([executor.decode(token) for token in PROMPT[:12]])
    assert rel(steps, whole) < 1e-5


def test_saved_state_restores(executor: ReferenceExecutor) -> None:
    executor.reset()
    executor.prefill(PROMPT[:10])
    saved = executor.save_state()
    first = executor.generate(PROMPT[10:12], 5)
    executor.restore_state(saved)
    assert executor.generate(PROMPT[10:12], 5) == first


def test_missing_and_misshaped_weights_are_named() -> None:
    config = load_model(TINY).config
    module = build_graph(config)
    weights = random_weights(config, seed=0)
    del weights["layers.0.mamba2_mixer.D"]
    with pytest.raises(ExecutionError, match=r"weight 'layers.0.mamba2_mixer.D' is missing"):
        ReferenceExecutor(module, weights).prefill([1, 2])
    weights = random_weights(config, seed=0)
    weights["final_norm.weight"] = np.ones(3, np.float32)
    with pytest.raises(ExecutionError, match=r"weight 'final_norm.weight' has shape \[3\]"):
        ReferenceExecutor(module, weights).prefill([1, 2])


def test_chunk_size_does_not_change_the_result() -> None:
    config = load_model(TINY).config
    weights = random_weights(config, seed=2)
    results = [
        ReferenceExecutor(build_graph(replace(config, chunk_size=chunk)), weights).prefill(PROMPT)
        for chunk in (1, 5, 16, 64)
    ]
    for result in results[1:]:
        assert rel(result, results[0]) < 1e-6
