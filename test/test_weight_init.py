"""The seed-drawn weights: Philox4x32-10 against Random123's known answers, the integer-only transforms'
distributions, tensors drawn alone equal to tensors drawn with the rest, and numpy equal to torch bit for bit
(the host twin runs on either)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tessera.model import philox
from tessera.model.config import config_from_dict
from tessera.model.weight_init import Init, init_of, random_weights, stream_of
from tessera.model.weights_layout import model_tensors

# Random123's tests/kat_vectors, the three philox4x32 10 lines: counter, key, output.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_random123(counter: tuple[int, ...], key: tuple[int, int], expected: tuple[int, ...]) -> None:
    words = philox.philox4x32(tuple(np.array([c], np.int64) for c in counter), key)  # type: ignore[arg-type]
    assert tuple(int(w[0]) for w in words) == expected


def _words(count: int, seed: int) -> tuple[np.ndarray, ...]:
    return philox.element_words(np.arange(count, dtype=np.int64), stream_of("t"), seed)


def test_normal_and_uniform_have_their_moments(seed: int) -> None:
    count = 1 << 18
    words = _words(count, seed)
    normal = philox.normal_values(words, 0.02).astype(np.float64)
    # Sample mean and std of 2^18 draws: within 5 standard errors (std / 512; std / 724 for the std).
    assert abs(normal.mean()) < 5 * 0.02 / 512 and abs(normal.std() - 0.02) < 5 * 0.02 / 724
    assert abs(normal).max() <= 0.02 * 4.9  # Irwin-Hall of 8 is bounded
    assert abs(float(((normal / 0.02) ** 4).mean()) - 2.85) < 0.1  # kurtosis 3 - 6 / (5 * 8), near the normal's 3
    uniform = philox.uniform_values(words, 0.5).astype(np.float64)
    assert abs(uniform).max() < 0.5 and abs(uniform.std() - 0.5 / math.sqrt(3)) < 5 * 0.29 / 724
    unit = philox.unit_uniform(words)
    assert unit.min() >= 0 and unit.max() < 1 and abs(unit.mean() - 0.5) < 5 * 0.29 / 512


def test_values_are_one_exact_multiply_of_an_integer(seed: int) -> None:
    """What lets a GPU reproduce them: an integer below 2^24 (exact in float32) times one float32."""
    words = _words(4096, seed)
    centered = philox.centered_normal(words)
    assert np.abs(centered).max() < 1 << 20
    expected = (centered.astype(np.float32) * philox.normal_scale(0.02)).view(np.uint32)
    assert np.array_equal(philox.normal_values(words, 0.02).view(np.uint32), expected)


def test_numpy_and_torch_draw_the_same_bits(seed: int) -> None:
    torch = pytest.importorskip("torch")
    indices = np.arange(0, 1 << 40, (1 << 40) // 5000, dtype=np.int64)  # high counter words too
    ours = philox.element_words(indices, 0xDEADBEEF, seed + (1 << 40))
    theirs = philox.element_words(torch.from_numpy(indices), 0xDEADBEEF, seed + (1 << 40))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


TINY = {
    "vocab_size": 97, "hidden_size": 32, "hybrid_override_pattern": "M*-E", "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 48, "mamba_num_heads": 4, "mamba_head_dim": 8,
    "ssm_state_size": 8, "n_groups": 2, "chunk_size": 8, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 16, "moe_shared_expert_intermediate_size": 24,
}  # fmt: skip


def test_a_tensor_drawn_alone_is_the_one_drawn_with_the_rest(seed: int) -> None:
    config = config_from_dict(TINY, "test", strict=False)
    every = random_weights(config, seed)
    some = random_weights(config, seed, ["lm_head.weight", "layers.0.mamba2_mixer.dt_bias"])
    assert set(some) == {"lm_head.weight", "layers.0.mamba2_mixer.dt_bias"}
    for name, value in some.items():
        assert np.array_equal(value.view(np.uint32), every[name].view(np.uint32))
    assert not np.array_equal(every["embedding.weight"], every["lm_head.weight"])  # streams differ


def test_every_tensor_has_an_init() -> None:
    config = config_from_dict(TINY, "test", strict=False)
    inits = {spec.name: init_of(spec, config) for spec in model_tensors(config)}
    assert inits["embedding.weight"] == Init("normal", 0.02)
    assert inits["layers.0.mamba2_mixer.out_proj.weight"].kind == "uniform"
    assert inits["final_norm.weight"] == Init("ones")
    assert all(init.kind in ("normal", "uniform", "ones", "zeros", "a_log", "dt_bias") for init in inits.values())
