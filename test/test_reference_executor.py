"""The reference executor: prefill/decode state handling, chunked prefill, and parity with HF.

The first tests check the executor against itself (prefill vs decode, one piece vs two); the HF tests run
transformers' NemotronHForCausalLM on small random checkpoints and compare prompt logits, decode logits and
16 greedy tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import randomize_weights

from tessera.dialects import parse_module
from tessera.frontend.config import load_model
from tessera.frontend.graph_builder import build_graph
from tessera.model.weight_init import random_weights
from tessera.reference.executor import ExecutionError, ReferenceExecutor

TINY = Path(__file__).resolve().parent.parent / "configs" / "nemotron_h_tiny.yaml"


def rel(actual: np.ndarray, expected: np.ndarray) -> float:
    assert np.isfinite(actual).all()
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def executor(module_seed: int) -> ReferenceExecutor:
    config = load_model(TINY).config  # M-M*-ME, chunk 16, groups 2
    # Round-trip through text, as tessera-run reads graph.mlir.
    module = parse_module(str(build_graph(config)), "tiny.mlir")
    return ReferenceExecutor(module, random_weights(config, seed=module_seed))


@pytest.fixture
def prompt(rng: np.random.Generator) -> list[int]:
    return [int(t) for t in rng.integers(0, 301, size=37)]


def test_prefill_then_decode_equals_prefill_of_everything(executor: ReferenceExecutor, prompt: list[int]) -> None:
    executor.reset()
    whole = executor.prefill(prompt)
    executor.reset()
    logits = [executor.prefill(prompt[:30])]
    logits += [executor.decode(token)[None] for token in prompt[30:]]
    assert executor.state.position == len(prompt)
    assert rel(np.concatenate(logits), whole) < 1e-5


@pytest.mark.parametrize("split", [1, 15, 16, 17, 31])
def test_prefill_in_two_pieces_equals_one(executor: ReferenceExecutor, prompt: list[int], split: int) -> None:
    executor.reset()
    whole = executor.prefill(prompt)
    executor.reset()
    pieces = np.concatenate([executor.prefill(prompt[:split]), executor.prefill(prompt[split:])])
    assert rel(pieces, whole) < 1e-5


def test_decode_token_by_token_from_the_start(executor: ReferenceExecutor, prompt: list[int]) -> None:
    executor.reset()
    whole = executor.prefill(prompt[:12])
    executor.reset()
    steps = np.stack([executor.decode(token) for token in prompt[:12]])
    assert rel(steps, whole) < 1e-5


def test_saved_state_restores(executor: ReferenceExecutor, prompt: list[int]) -> None:
    executor.reset()
    executor.prefill(prompt[:10])
    saved = executor.save_state()
    first = executor.generate(prompt[10:12], 5)
    executor.restore_state(saved)
    assert executor.generate(prompt[10:12], 5) == first


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


def test_chunk_size_does_not_change_the_result(seed: int, prompt: list[int]) -> None:
    config = load_model(TINY).config
    weights = random_weights(config, seed=seed)
    results = [
        ReferenceExecutor(build_graph(replace(config, chunk_size=chunk)), weights).prefill(prompt)
        for chunk in (1, 5, 16, 64)
    ]
    for result in results[1:]:
        assert rel(result, results[0]) < 1e-6


# --- against transformers' NemotronHForCausalLM, through the executor API ---------------------------
# Small random checkpoints written with save_pretrained, converted and loaded as tessera-run does.
HF_BASE = dict(
    vocab_size=101, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
    intermediate_size=48, mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=16, n_groups=2, chunk_size=8,
    n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, moe_shared_expert_intermediate_size=40,
    routed_scaling_factor=2.5,
)  # fmt: skip
HF_CASES: dict[str, dict[str, Any]] = {
    # time_step_min high enough that HF's prefill clamps many dt values (and its decode step does not).
    "every_kind": dict(hybrid_override_pattern="M*-E", time_step_min=0.05),
    "one_group_mlp_bias": dict(hybrid_override_pattern="MM*-", n_groups=1, num_key_value_heads=1, mlp_bias=True),
    # No attention layer, so HF's greedy steps recompute the sequence (clamping dt) where Tessera decodes (not
    # clamping): time_step_min so low that no dt reaches it (softplus(raw) < 1e-9 needs raw < -20.7, about 12
    # standard deviations below the raw dt's mean of -2).
    "no_attention": dict(hybrid_override_pattern="M-ME", time_step_min=1e-9),
    "grouped_router_mamba_bias": dict(
        hybrid_override_pattern="E*M-", n_routed_experts=8, n_group=4, topk_group=2, num_experts_per_tok=3,
        use_bias=True, use_conv_bias=False, time_step_min=0.05,
    ),
}  # fmt: skip
NEW_TOKENS = 16


@dataclass
class HFCase:
    model: Any  # NemotronHForCausalLM
    executor: ReferenceExecutor
    has_attention: bool


def _random_hf_model(overrides: dict[str, Any], seed: int) -> Any:
    """Every parameter and buffer drawn at random: HF's init (D = 1, zero router bias...) hides mistakes."""
    torch = pytest.importorskip("torch", reason="the HF oracle needs torch (pip install -e '.[test]')")
    transformers = pytest.importorskip("transformers", reason="the HF oracle needs transformers")
    torch.manual_seed(seed)
    model = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**{**HF_BASE, **overrides})).eval()
    randomize_weights(model)
    with torch.no_grad():
        for name, tensor in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                # Alternately raising and sinking experts: the bias changes which experts win, and some
                # kept experts' choices go negative, so masking dropped groups with 0 instead of -inf
                # (as some other routers do) would pick differently.
                offsets = torch.tensor([0.3, -0.8]).repeat(tensor.numel() // 2)
                tensor.copy_(offsets + 0.2 * torch.randn_like(tensor))
    return model


@pytest.fixture(scope="module")
def hf_cases(tmp_path_factory: pytest.TempPathFactory, module_seed: int) -> dict[str, HFCase]:
    from tessera.frontend.checkpoint import convert_checkpoint
    from tessera.model.checkpoint import load_weights

    cases = {}
    for index, (name, overrides) in enumerate(sorted(HF_CASES.items())):
        model = _random_hf_model(overrides, seed=module_seed + index)
        hf_dir, out_dir = tmp_path_factory.mktemp(f"{name}_hf"), tmp_path_factory.mktemp(f"{name}_tessera")
        model.save_pretrained(hf_dir)
        convert_checkpoint(hf_dir, out_dir / "weights", progress=False)
        module = parse_module(str(build_graph(load_model(hf_dir).config)), f"{name}.mlir")
        executor = ReferenceExecutor(module, load_weights(out_dir / "weights"))
        cases[name] = HFCase(model, executor, "*" in str(overrides["hybrid_override_pattern"]))
    return cases


def _hf_greedy(case: HFCase, prompt: list[int]) -> tuple[np.ndarray, list[int], np.ndarray]:
    """HF's prompt logits [T, V], its greedy tokens, and the logits each token was chosen from [n, V]."""
    import torch

    ids = torch.tensor([prompt])
    with torch.no_grad():
        prompt_logits = case.model(ids, use_cache=False).logits[0].numpy()
        if case.has_attention:
            # Cached generation: HF's own decode path (single-step Mamba update, KV cache). No eos, so
            # no logits processor touches the choice. The explicit mask: without one generate masks every
            # prompt token equal to pad_token_id (0), which Tessera, having no padding, attends to.
            out = case.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
                eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True,
            )  # fmt: skip
            tokens = out.sequences[0, len(prompt) :].tolist()
            step_logits = torch.cat(out.logits).numpy()
        else:
            # HF's cache needs an attention layer: greedy by recomputing the whole sequence instead. That
            # clamps dt where a decode step does not: these cases keep time_step_min below every dt.
            tokens, rows, sequence = [], [], list(prompt)
            for _ in range(NEW_TOKENS):
                rows.append(case.model(torch.tensor([sequence]), use_cache=False).logits[0, -1].numpy())
                tokens.append(int(rows[-1].argmax()))
                sequence.append(tokens[-1])
            step_logits = np.stack(rows)
    return prompt_logits, tokens, step_logits


def _tessera_greedy(executor: ReferenceExecutor, prompt: list[int]) -> tuple[np.ndarray, list[int], np.ndarray]:
    executor.reset()
    prompt_logits = executor.prefill(prompt)
    rows, tokens = [prompt_logits[-1]], []
    while True:
        tokens.append(int(np.argmax(rows[-1])))
        if len(tokens) == NEW_TOKENS:
            break
        rows.append(executor.decode(tokens[-1]))
    return prompt_logits, tokens, np.stack(rows)


@pytest.mark.parametrize("length", [5, 13, 21])
@pytest.mark.parametrize("case_name", sorted(HF_CASES))
def test_matches_hf(hf_cases: dict[str, HFCase], rng: np.random.Generator, case_name: str, length: int) -> None:
    case = hf_cases[case_name]
    prompt = [int(t) for t in rng.integers(0, 101, size=length)]
    hf_prompt, hf_tokens, hf_steps = _hf_greedy(case, prompt)
    prompt_logits, tokens, steps = _tessera_greedy(case.executor, prompt)
    errors = {"prompt": rel(prompt_logits, hf_prompt), "steps": rel(steps, hf_steps)}
    print(f"{case_name} T={length}: {errors}")  # the figures, with pytest -s
    assert errors["prompt"] <= 1e-4
    assert tokens == hf_tokens
    # Decode logits against HF's cached decode (or its full recompute where HF has no cache).
    assert errors["steps"] <= 1e-4
    # The prompt prefilled in two pieces, split inside a chunk, equals HF's one-shot logits.
    split = length // 2 + 1
    case.executor.reset()
    pieces = np.concatenate([case.executor.prefill(prompt[:split]), case.executor.prefill(prompt[split:])])
    assert rel(pieces, hf_prompt) <= 1e-4


def test_moe_routing_is_not_trivial(hf_cases: dict[str, HFCase], rng: np.random.Generator) -> None:
    """The random router must send different tokens to different experts, or the MoE tests prove little."""
    from tessera.reference.moe import MoEParams, MoEWeights, route

    moe = hf_cases["grouped_router_mamba_bias"].model.model.layers[0].mixer
    hidden = rng.standard_normal((256, 32)).astype(np.float32)
    weights = MoEWeights(
        moe.gate.weight.detach().numpy(), moe.gate.e_score_correction_bias.numpy(), moe.experts.up_proj.detach().numpy(),
        moe.experts.down_proj.detach().numpy(), np.empty(0), np.empty(0),
    )  # fmt: skip
    experts, _ = route(hidden, weights, MoEParams(8, 3, 4, 2, True, 2.5))
    assert len(np.unique(experts)) >= 6
    assert len({tuple(sorted(row)) for row in experts.tolist()}) >= 5


def _most_clamped_token(model: Any) -> tuple[int, float]:  # a NemotronHForCausalLM whose layer 0 is Mamba
    """The token whose one-token prefill has the smallest dt in layer 0 (embedding, norm, in_proj's dt columns
    + dt_bias, softplus), and that dt."""
    import torch

    layer = model.model.layers[0]
    with torch.no_grad():
        projected = layer.mixer.in_proj(layer.norm(model.model.embeddings.weight))
        dt = torch.nn.functional.softplus(projected[:, -layer.mixer.num_heads :] + layer.mixer.dt_bias).amin(dim=1)
    token = int(dt.argmin())
    return token, float(dt[token])


def test_mode_is_chosen_by_the_caller(hf_cases: dict[str, HFCase]) -> None:
    """A one-token prefill takes the chunked scan (dt clamped to time_step_min, as HF's forward), a decode step
    does not: on the token whose dt the clamp at least doubles, each agrees with HF's forward computed its way
    (the clamp lifted for the decode step) and is nearer that than the other way."""
    import torch

    case = hf_cases["every_kind"]
    token, dt = _most_clamped_token(case.model)
    assert dt <= case.model.config.time_step_min / 2, f"no token's dt is below time_step_min / 2 (least {dt:.3g})"
    mixers = [layer.mixer for layer in case.model.model.layers if hasattr(layer.mixer, "time_step_limit")]
    with torch.no_grad():
        clamped = case.model(torch.tensor([[token]]), use_cache=False).logits[0].numpy()
        limits = [mixer.time_step_limit for mixer in mixers]
        for mixer in mixers:
            mixer.time_step_limit = (0.0, float("inf"))
        try:
            free = case.model(torch.tensor([[token]]), use_cache=False).logits[0].numpy()
        finally:
            for mixer, limit in zip(mixers, limits, strict=True):
                mixer.time_step_limit = limit
    case.executor.reset()
    prefilled = case.executor.prefill([token])
    case.executor.reset()
    decoded = case.executor.decode(token)[None]
    assert rel(prefilled, clamped) <= 1e-4 and rel(decoded, free) <= 1e-4
    assert rel(prefilled, clamped) < rel(prefilled, free) and rel(decoded, free) < rel(decoded, clamped)


def test_unknown_op_is_refused_when_built() -> None:
    from xdsl.dialects import arith, func
    from xdsl.dialects.builtin import i64

    config = load_model(TINY).config
    module = build_graph(config)
    forward = next(op for op in module.ops if isinstance(op, func.FuncOp))
    first = forward.body.block.first_op
    assert first is not None
    forward.body.block.insert_op_before(arith.ConstantOp.from_int_and_width(1, i64), first)
    with pytest.raises(ExecutionError, match=r"arith.constant: the reference executor has no implementation"):
        ReferenceExecutor(module, random_weights(config, seed=0))
