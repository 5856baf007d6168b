"""Each reference block against the HF module it specifies, with random (non-default) weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the HF oracle needs torch (pip install -e '.[test]')")
nemotron_h = pytest.importorskip("transformers.models.nemotron_h.modeling_nemotron_h", reason="needs transformers")
transformers = pytest.importorskip("transformers", reason="needs transformers")

from tessera.reference.mamba2 import Mamba2Params, Mamba2State, Mamba2Weights, mamba2_prefill  # noqa: E402
from tessera.reference.moe import MoEParams, MoEWeights, moe  # noqa: E402


def _config(**overrides: object):  # type: ignore[no-untyped-def]
    base = dict(
        vocab_size=64, hidden_size=32, hybrid_override_pattern="ME", mamba_num_heads=8, mamba_head_dim=4,
        ssm_state_size=8, n_groups=4, chunk_size=8, n_routed_experts=8, num_experts_per_tok=3,
        moe_intermediate_size=16, moe_shared_expert_intermediate_size=24, routed_scaling_factor=2.5,
    )  # fmt: skip
    return transformers.NemotronHConfig(**{**base, **overrides})


def _randomize(module: Any, seed: int) -> None:  # a torch.nn.Module (torch is imported only if present)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if name.endswith("A_log"):
                tensor.copy_(torch.log(torch.rand_like(tensor) * 4 + 0.5))
            elif name.endswith("dt_bias"):
                tensor.copy_(torch.randn_like(tensor) - 2)
            else:
                tensor.copy_(torch.randn_like(tensor) * 0.3)


def _np(t: Any) -> np.ndarray:  # a torch.Tensor
    return t.detach().numpy().astype(np.float32)


def rel(actual: np.ndarray, expected: np.ndarray) -> float:
    assert np.isfinite(actual).all()
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("tokens", [5, 8, 21])
def test_mamba2_mixer_matches_hf(seed: int, tokens: int) -> None:
    config = _config()
    mixer = nemotron_h.NemotronHMamba2Mixer(config, layer_idx=0).eval()
    _randomize(mixer, seed)
    x = torch.randn(1, tokens, 32)
    expected = _np(mixer(x)[0])
    weights = Mamba2Weights(
        in_proj_weight=_np(mixer.in_proj.weight), conv_weight=_np(mixer.conv1d.weight[:, 0]),
        conv_bias=_np(mixer.conv1d.bias), dt_bias=_np(mixer.dt_bias), A_log=_np(mixer.A_log), D=_np(mixer.D),
        norm_weight=_np(mixer.norm.weight), out_proj_weight=_np(mixer.out_proj.weight),
    )  # fmt: skip
    params = Mamba2Params(8, 4, 8, 4, 4, 8, config.layer_norm_epsilon, config.time_step_min)
    actual, _ = mamba2_prefill(_np(x[0]), weights, params, Mamba2State.zeros(params))
    assert rel(actual, expected) < 1e-5


@pytest.mark.parametrize(("n_group", "topk_group"), [(1, 1), (4, 2)])
def test_moe_matches_hf(seed: int, n_group: int, topk_group: int) -> None:
    config = _config(n_group=n_group, topk_group=topk_group)
    block = nemotron_h.NemotronHMoE(config, layer_idx=1).eval()
    _randomize(block, seed)
    x = torch.randn(13, 32)
    expected = _np(block(x[None])[0])
    weights = MoEWeights(
        router_weight=_np(block.gate.weight), router_bias=_np(block.gate.e_score_correction_bias),
        experts_up=_np(block.experts.up_proj), experts_down=_np(block.experts.down_proj),
        shared_up_weight=_np(block.shared_experts.up_proj.weight),
        shared_down_weight=_np(block.shared_experts.down_proj.weight),
    )  # fmt: skip
    params = MoEParams(8, 3, n_group, topk_group, True, 2.5)
    assert rel(moe(_np(x), weights, params), expected) < 1e-5
