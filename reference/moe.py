"""Mixture of experts (HF's NemotronHTopkRouter + NemotronHMoE): sigmoid router with a score-correction
bias, group-limited top-k, normalised and scaled weights, ReLU² experts, and one shared expert."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.reference.common import linear, mlp_relu2, sigmoid


@dataclass(frozen=True)
class MoEParams:
    num_experts: int
    top_k: int
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    routed_scaling_factor: float


@dataclass
class MoEWeights:
    router_weight: np.ndarray  # [E, D]
    router_bias: np.ndarray  # [E] e_score_correction_bias: steers the choice, not the weights
    experts_up: np.ndarray  # [E, F, L]
    experts_down: np.ndarray  # [E, L, F]
    shared_up_weight: np.ndarray
    shared_down_weight: np.ndarray
    latent_in_weight: np.ndarray | None = None
    latent_out_weight: np.ndarray | None = None


def route(hidden: np.ndarray, w: MoEWeights, p: MoEParams) -> tuple[np.ndarray, np.ndarray]:
    """Each token's top_k experts [T, k] and their weights [T, k]."""
    # HF's router runs in float32 throughout, so the choice (and any near-tie in it) is computed the same way.
    logits = hidden.astype(np.float32) @ w.router_weight.astype(np.float32).T
    scores = sigmoid(logits).astype(np.float32)
    choice = scores + w.router_bias.astype(np.float32)
    tokens = hidden.shape[0]
    per_group = p.num_experts // p.n_group
    grouped = choice.reshape(tokens, p.n_group, per_group)
    group_scores = -np.sort(-grouped, axis=-1)[..., :2].sum(axis=-1)  # sum of each group's best two
    kept_groups = np.argsort(-group_scores, axis=-1, kind="stable")[:, : p.topk_group]
    group_mask = np.zeros((tokens, p.n_group), dtype=bool)
    np.put_along_axis(group_mask, kept_groups, True, axis=-1)
    choice = np.where(np.repeat(group_mask, per_group, axis=-1), choice, -np.inf)
    # Stable order: among equal choices the lower expert index wins (torch.topk's order on CPU).
    experts = np.argsort(-choice, axis=-1, kind="stable")[:, : p.top_k]
    weights = np.take_along_axis(scores, experts, axis=-1).astype(np.float64)
    if p.norm_topk_prob:
        weights = weights / (weights.sum(axis=-1, keepdims=True) + 1e-20)
    return experts, weights * p.routed_scaling_factor


def moe(hidden: np.ndarray, w: MoEWeights, p: MoEParams) -> np.ndarray:
    experts, weights = route(hidden, w, p)
    latent = linear(hidden, w.latent_in_weight) if w.latent_in_weight is not None else hidden.astype(np.float64)
    routed = np.zeros_like(latent)
    for expert in np.unique(experts):
        tokens, slot = np.nonzero(experts == expert)
        out = mlp_relu2(latent[tokens], w.experts_up[expert], w.experts_down[expert])
        routed[tokens] += out * weights[tokens, slot][:, None]
    if w.latent_out_weight is not None:
        routed = linear(routed, w.latent_out_weight)
    return routed + mlp_relu2(hidden, w.shared_up_weight, w.shared_down_weight)
