"""The foundation contract, end to end through the CLIs, against transformers' NemotronHForCausalLM,
for every target that runs on this machine (the reference interpreter and compiled x86 code).

    tessera-compile HF_DIR --target TARGET -o OUT
    tessera-run OUT --target TARGET --input-ids ... --max-new-tokens 16 --logits-out F.npy --json

Small random checkpoints (made here with save_pretrained) cover every layer kind, a pattern with no
attention, n_groups > 1, tied embeddings, bf16 weights, and prompts that are not chunk multiples.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TARGETS, make_hf_checkpoint

torch = pytest.importorskip("torch", reason="the HF oracle needs torch (pip install -e '.[test]')")
transformers = pytest.importorskip("transformers", reason="the HF oracle needs transformers")

CASES: dict[str, dict[str, Any]] = {
    "every_kind": dict(hybrid_override_pattern="M*-E"),
    "no_attention": dict(hybrid_override_pattern="M-ME"),
    "one_group_one_kv_head": dict(hybrid_override_pattern="MM*-", n_groups=1, num_key_value_heads=1),
    "biases": dict(hybrid_override_pattern="M-*M", use_bias=True, mlp_bias=True, use_conv_bias=False),
    # Sizes that fit no tile or vector width: hidden 72, head_dim 12 with one KV head, Mamba heads of 10
    # channels, state 12 in 3 groups, vocab 301.
    "odd_sizes": dict(
        hybrid_override_pattern="M*-M",
        vocab_size=301,
        hidden_size=72,
        num_attention_heads=6,
        num_key_value_heads=1,
        head_dim=12,
        intermediate_size=100,
        mamba_num_heads=6,
        mamba_head_dim=10,
        n_groups=3,
        ssm_state_size=12,
    ),
    "latent_moe": dict(hybrid_override_pattern="E*ME", moe_latent_size=16),
    "grouped_router_tied": dict(
        hybrid_override_pattern="E*ME", n_routed_experts=8, n_group=2, topk_group=1, tie_word_embeddings=True
    ),
}
PROMPT = [5, 7, 9, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43]  # 13 tokens: not a multiple of chunk 8
NEW_TOKENS = 16


def make_checkpoint(path: Path, seed: int, dtype: str = "float32", **overrides: object) -> Path:
    """A random NemotronH checkpoint whose every parameter is drawn (not HF's near-constant init)."""
    pattern = str(overrides.pop("hybrid_override_pattern", "M*-E"))
    overrides.setdefault("routed_scaling_factor", 2.5)
    return make_hf_checkpoint(path, seed, pattern, dtype, randomize=True, **overrides)


def hf_reference(path: Path, prompt: list[int], uses_cache: bool) -> tuple[np.ndarray, list[int]]:
    model = transformers.NemotronHForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits[0].numpy()
        if uses_cache:
            # eos_token_id=None: HF must not stop at (or be steered away from) the eos token; Tessera does not either.
            # The explicit mask: without one generate masks every prompt token equal to pad_token_id (0).
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)  # fmt: skip
            tokens = out[0, len(prompt) :].tolist()
        else:
            # HF's cache needs an attention layer; greedy by recomputing the whole sequence instead.
            tokens, seq = [], list(prompt)
            for _ in range(NEW_TOKENS):
                nxt = int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax())
                tokens.append(nxt)
                seq.append(nxt)
    return logits, tokens


def tessera(
    out: Path,
    prompt: list[int],
    checkpoint: Path | str,
    tmp_path: Path,
    target: str = "reference",
    options: tuple[str, ...] = (),
) -> tuple[np.ndarray, list[int]]:
    def run(*args: object) -> str:
        result = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("tessera.tools.tessera_compile", checkpoint, "--target", target, *options, "-o", out, "-q")
    logits_path = tmp_path / "logits.npy"
    stdout = run(
        "tessera.tools.tessera_run",
        out,
        "--target",
        target,
        "--input-ids",
        ",".join(map(str, prompt)),
        "--max-new-tokens",
        NEW_TOKENS,
        "--logits-out",
        logits_path,
        "--json",
    )
    return np.load(logits_path), json.loads(stdout.strip().splitlines()[-1])["tokens"]


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all(), "NaN or inf in Tessera's logits"
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_hf(seed: int, case: str, target: str, tmp_path: Path) -> None:
    overrides = CASES[case]
    checkpoint = make_checkpoint(tmp_path / "hf", seed, **overrides)
    expected_logits, expected_tokens = hf_reference(
        checkpoint, PROMPT, "*" in str(overrides["hybrid_override_pattern"])
    )
    logits, tokens = tessera(tmp_path / "out", PROMPT, checkpoint, tmp_path, target)
    assert relative_error(logits, expected_logits) <= 1e-4
    assert tokens == expected_tokens


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("length", [1, 8, 21])
def test_prompt_lengths(rng: np.random.Generator, seed: int, length: int, target: str, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "hf", seed, hybrid_override_pattern="M*ME")
    prompt = [int(t) for t in rng.integers(0, 101, size=length)]
    expected_logits, expected_tokens = hf_reference(checkpoint, prompt, uses_cache=True)
    logits, tokens = tessera(tmp_path / "out", prompt, checkpoint, tmp_path, target)
    assert relative_error(logits, expected_logits) <= 1e-4
    assert tokens == expected_tokens


@pytest.mark.parametrize("target", TARGETS)
def test_bf16_checkpoint(seed: int, target: str, tmp_path: Path) -> None:
    # Weights stored in bf16 are widened exactly to float32; HF's float32 run of the same bits agrees.
    checkpoint = make_checkpoint(tmp_path / "hf", seed, dtype="bfloat16", hybrid_override_pattern="M*-E")
    expected_logits, expected_tokens = hf_reference(checkpoint, PROMPT, uses_cache=True)
    # The float32 contract: fp32 arithmetic on the widened weights (a bf16 checkpoint defaults to bf16).
    options = ("--precision", "fp32") if target != "reference" else ()
    logits, tokens = tessera(tmp_path / "out", PROMPT, checkpoint, tmp_path, target, options)
    assert relative_error(logits, expected_logits) <= 1e-4
    assert tokens == expected_tokens


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "reference"])
def test_bf16_checkpoint_runs_in_bf16_by_default(seed: int, target: str, tmp_path: Path) -> None:
    # bf16 weights and activations, float32 accumulation, against HF's float32 run of the same weights.
    # No MoE layer: a near-tie in the router flipped by rounding moves logits more than rounding does.
    checkpoint = make_checkpoint(tmp_path / "hf", seed, dtype="bfloat16", hybrid_override_pattern="M*-M")
    expected_logits, _ = hf_reference(checkpoint, PROMPT, uses_cache=True)
    logits, _ = tessera(tmp_path / "out", PROMPT, checkpoint, tmp_path, target)
    manifest = json.loads((tmp_path / "out" / "tessera.json").read_text())
    assert manifest["targets"][target]["precision"] == "bf16"
    assert relative_error(logits, expected_logits) <= 2e-2


def test_prompt_text_uses_the_checkpoint_tokenizer(seed: int, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    checkpoint = make_checkpoint(tmp_path / "hf", seed, hybrid_override_pattern="M*")
    vocab = {f"w{i}": i for i in range(101)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(checkpoint / "tokenizer.json"))
    out = tmp_path / "out"
    tessera(out, [5, 7, 9], checkpoint, tmp_path)
    command = [sys.executable, "-m", "tessera.tools.tessera_run", str(out), "--prompt", "w5 w7 w9"]
    result = subprocess.run([*command, "--max-new-tokens", "4", "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    by_text = json.loads(result.stdout.strip().splitlines()[-1])
    _, by_ids = hf_reference(checkpoint, [5, 7, 9], uses_cache=True)
    assert by_text["tokens"] == by_ids[:4]
    assert by_text["text"] == " ".join(f"w{t}" for t in by_ids[:4])


def test_hub_repo_id_from_the_local_cache(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Hub cache laid out as huggingface_hub writes it; no network here, so the hub is offline.
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-nemotron" / "snapshots" / ("a" * 40)
    make_checkpoint(snapshot, seed, hybrid_override_pattern="M*")
    (cache / "models--acme--tiny-nemotron" / "refs").mkdir()
    (cache / "models--acme--tiny-nemotron" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected_logits, expected_tokens = hf_reference(snapshot, PROMPT, uses_cache=True)
    logits, tokens = tessera(tmp_path / "out", PROMPT, "acme/tiny-nemotron", tmp_path)
    assert relative_error(logits, expected_logits) <= 1e-4
    assert tokens == expected_tokens
    result = subprocess.run(
        [sys.executable, "-m", "tessera.tools.tessera_compile", "acme/not-cached", "-o", tmp_path / "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "tessera-compile: error: acme/not-cached: not in the local Hugging Face cache and the Hub is offline "
        "(HF_HUB_OFFLINE)"
    ]
