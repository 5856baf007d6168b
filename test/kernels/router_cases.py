"""The MoE router's test cases, shared by every target's router test: group counts that divide the experts
into one-expert groups, several experts a group or one group, experts past a tile (130) and exact ties.
The expected ids and weights are reference/moe.py's `route` (HF's stable order among equal choices)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.reference import moe

# num_experts, top_k, n_group, topk_group, norm_topk_prob, routed_scaling_factor, ties
ROUTERS = {
    "e8_groups": (8, 2, 4, 2, 1, 2.5, False),
    "e16": (16, 4, 1, 1, 1, 2.5, False),
    "e16_ties": (16, 4, 1, 1, 1, 2.5, True),
    "e130_unnormalised": (130, 6, 5, 2, 0, 1.5, False),
    "e130_groups_ties": (130, 6, 5, 2, 1, 1.0, True),
    "e128_groups_ties": (128, 8, 8, 4, 1, 2.5, True),
    "e4": (4, 2, 1, 1, 1, 2.5, False),
    "e12_one_per_group": (12, 3, 12, 3, 1, 1.0, True),
    "e64_unnormalised_ties": (64, 5, 4, 4, 0, 1.0, True),
}


@dataclass
class RouterCase:
    dims: dict[str, int | float | str]
    logits: np.ndarray  # f32 [T, E]
    bias: np.ndarray  # f32 [E]
    ids: np.ndarray  # the expected [T, K] int64
    weights: np.ndarray  # the expected [T, K] float64


def router_case(name: str, tokens: int, rng: np.random.Generator) -> RouterCase:
    experts, top_k, groups, kept, norm, scale, ties = ROUTERS[name]
    logits = rng.standard_normal((tokens, experts)).astype(np.float32)
    bias = (rng.standard_normal(experts) * 0.1).astype(np.float32)
    if ties:  # many exact ties among scores and choices
        logits, bias = (np.round(logits * 2) / 2).astype(np.float32), (np.round(bias * 10) / 20).astype(np.float32)
    dims: dict[str, int | float | str] = {"num_experts": experts, "top_k": top_k, "n_group": groups,
                                          "topk_group": kept, "norm_topk_prob": norm,
                                          "routed_scaling_factor": scale}  # fmt: skip
    params = moe.MoEParams(experts, top_k, groups, kept, bool(norm), scale)
    router = moe.MoEWeights(np.eye(experts, dtype=np.float32), bias, None, None, None, None)  # type: ignore[arg-type]
    ids, weights = moe.route(logits, router, params)
    return RouterCase(dims, logits, bias, ids, weights)
