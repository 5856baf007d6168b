"""The x86 target beyond the HF contract (test_hf_contract.py): state handling across calls, the SSM state
dtype, both ways of loading kernels, the compile report and cache, observable stages, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import NEEDS_MLIR, assert_one_line_error, compile_tiny_x86, record_again, run_tool

pytestmark = NEEDS_MLIR

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "nemotron_h_tiny.yaml"  # every layer kind, chunk 16, odd vocab 301


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, module_seed: int) -> Path:
    return compile_tiny_x86(tmp_path_factory, module_seed, 256)


def open_session(out: Path, kernels: str = "auto"):  # type: ignore[no-untyped-def]
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.x86_session import X86Session

    return X86Session.open(read_artifact(out), kernel_mode=kernels)


def open_reference(out: Path):  # type: ignore[no-untyped-def]
    from tessera.runtime.artifact import read_artifact
    from tessera.targets.reference import ReferenceSession

    return ReferenceSession.open(read_artifact(out))


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all(), "NaN or inf in the logits"
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def random_prompt(rng: np.random.Generator, length: int) -> list[int]:
    return [int(t) for t in rng.integers(0, 301, size=length)]


def test_prefill_then_decode_equals_decoding_every_token(tiny_artifact: Path, rng: np.random.Generator) -> None:
    prompt, continuation = random_prompt(rng, 37), random_prompt(rng, 5)  # 37: two chunks of 16 and a tail
    session = open_session(tiny_artifact)
    logits = [session.prefill(prompt)[-1]] + [session.decode(t) for t in continuation]
    stepwise = open_session(tiny_artifact)
    every = [stepwise.decode(t) for t in prompt + continuation]
    for index, (chunked, recurrent) in enumerate(zip(logits, every[len(prompt) - 1 :], strict=True)):
        assert relative_error(chunked, recurrent) <= 1e-4, f"token {index}"


@pytest.mark.parametrize("split", [1, 7, 16, 23])  # inside a chunk, on a chunk boundary, past one
def test_prefill_in_two_pieces_equals_prefill_at_once(
    tiny_artifact: Path, rng: np.random.Generator, split: int
) -> None:
    prompt = random_prompt(rng, 40)
    whole = open_session(tiny_artifact)
    expected = whole.prefill(prompt)
    pieces = open_session(tiny_artifact)
    first = pieces.prefill(prompt[:split])
    saved = pieces.save_state()
    second = pieces.prefill(prompt[split:])
    assert relative_error(np.concatenate([first, second]), expected) <= 1e-5
    for name, state in whole.states.items():
        assert np.allclose(pieces.states[name], state, rtol=1e-4, atol=1e-5), name
    # Resuming from the saved state gives the second piece again.
    pieces.restore_state(saved)
    assert relative_error(pieces.prefill(prompt[split:]), second) <= 1e-6


@pytest.mark.parametrize("isa", ["generic", "avx512"])
def test_matches_the_reference_with_each_ahead_of_time_library(
    tiny_artifact: Path, rng: np.random.Generator, isa: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.runtime.cpu_features import AVX512, cpu_flags

    if isa == "avx512" and not AVX512 <= cpu_flags():
        pytest.skip("this CPU has no AVX-512: the avx512 library cannot run here")
    prompt = random_prompt(rng, 21)
    monkeypatch.setenv("TESSERA_ISA", isa)
    aot = open_session(tiny_artifact, kernels="aot")
    assert aot.kernels.how.startswith(f"aot {isa} (no matrix GEMMs: ")
    monkeypatch.delenv("TESSERA_ISA")
    jit = open_session(tiny_artifact, kernels="jit")
    assert jit.kernels.how.startswith("jit ")
    reference = open_reference(tiny_artifact)
    expected = reference.prefill(prompt)
    assert relative_error(aot.prefill(prompt), expected) <= 1e-4
    assert relative_error(jit.prefill(prompt), expected) <= 1e-4
    token = int(np.argmax(expected[-1]))
    assert relative_error(aot.decode(token), reference.decode(token)) <= 1e-4


def test_the_session_says_which_variant_runs(tiny_artifact: Path) -> None:
    """The tiny (fp32) artifact's GEMMs run no matrix variant; the AVX2 one where the CPU has AVX2 and no AVX-512,
    else the vector kernels themselves; the session says which, and why."""
    from tessera.runtime.cpu_features import AVX2, AVX512, cpu_flags

    session = open_session(tiny_artifact, kernels="aot")
    assert "the matrix variants multiply bf16 only; this artifact is fp32" in session.kernels.how
    if AVX2 <= cpu_flags() and not AVX512 <= cpu_flags():
        assert session.kernels.matrix == "avx2" and "AVX2 without AVX-512" in session.kernels.how
        assert session.kernels.matrix_kernels  # every GEMM
    else:
        assert session.kernels.matrix_kernels == frozenset()


def test_manifest_reports_state_and_kv_cache_bytes(tiny_artifact: Path) -> None:
    entry = json.loads((tiny_artifact / "tessera.json").read_text())["targets"]["x86"]
    # Tiny: 3 Mamba layers of conv_state [128, 3] + ssm_state [8, 8, 16]; 1 attention layer, 256 x 2 x 16 each.
    assert entry["state_bytes"] == 3 * (128 * 3 + 8 * 8 * 16) * 4
    assert entry["kv_cache_bytes"] == 2 * 256 * 2 * 16 * 4
    assert entry["kernels"] < 30 and entry["precision"] == "fp32"
    for name in ("schedule.mlir", "tile.mlir", "kernels.mlir", "kernels.ll", "kernels.so", "program.json"):
        assert (tiny_artifact / "x86" / name).is_file(), name


def without_moe(tmp_path: Path) -> Path:
    """The tiny config with its MoE layer made an MLP: rounding may flip a router's near-tie, and one
    flipped expert moves the logits far more than the rounding itself, so bf16 is compared without it."""
    dense = tmp_path / "tiny_dense.yaml"
    dense.write_text(
        TINY.read_text().replace('hybrid_override_pattern: "M-M*-ME"', 'hybrid_override_pattern: "M-M*-M-"')
    )
    return dense


def compile_tiny(model: Path, out: Path, seed: int, *options: str) -> Path:
    run_tool("tessera_compile", model, "--target", "x86", "--max-seq-len", "256", "--seed", seed % 2**31, *options,
             "-o", out, "-q")  # fmt: skip
    return out


def test_bf16_ssm_state_halves_the_state_and_stays_close(tmp_path: Path, seed: int, rng: np.random.Generator) -> None:
    dense = without_moe(tmp_path)
    exact_out = compile_tiny(dense, tmp_path / "f32_state", seed)
    out = compile_tiny(dense, tmp_path / "bf16_state", seed, "--ssm-state-dtype", "bfloat16")
    full = json.loads((exact_out / "tessera.json").read_text())["targets"]["x86"]
    half = json.loads((out / "tessera.json").read_text())["targets"]["x86"]
    assert half["state_bytes"] == full["state_bytes"] - 3 * 8 * 8 * 16 * 2  # 3 Mamba layers, half of 8x8x16 floats
    prompt, continuation = random_prompt(rng, 30), random_prompt(rng, 4)
    exact, rounded = open_session(exact_out), open_session(out)
    assert rounded.states["layers.0.ssm_state"].dtype == np.uint16
    assert relative_error(rounded.prefill(prompt), exact.prefill(prompt)) <= 2e-2
    for token in continuation:
        assert relative_error(rounded.decode(token), exact.decode(token)) <= 2e-2


def test_bf16_kv_cache_halves_the_cache_and_stays_close(tmp_path: Path, seed: int, rng: np.random.Generator) -> None:
    dense = without_moe(tmp_path)
    exact_out = compile_tiny(dense, tmp_path / "f32_cache", seed)
    out = compile_tiny(dense, tmp_path / "bf16_cache", seed, "--kv-cache-dtype", "bfloat16")
    full = json.loads((exact_out / "tessera.json").read_text())["targets"]["x86"]
    half = json.loads((out / "tessera.json").read_text())["targets"]["x86"]
    assert half["kv_cache_bytes"] * 2 == full["kv_cache_bytes"]
    prompt, continuation = random_prompt(rng, 30), random_prompt(rng, 4)
    exact, rounded = open_session(exact_out), open_session(out)
    assert rounded.states["layers.3.k_cache"].dtype == np.uint16
    assert relative_error(rounded.prefill(prompt), exact.prefill(prompt)) <= 2e-2
    for token in continuation:
        assert relative_error(rounded.decode(token), exact.decode(token)) <= 2e-2


def test_bf16_precision_stays_close_to_fp32(tmp_path: Path, seed: int, rng: np.random.Generator) -> None:
    dense = without_moe(tmp_path)
    exact, out = (
        compile_tiny(dense, tmp_path / "fp32", seed),
        compile_tiny(dense, tmp_path / "bf16", seed, "--precision", "bf16"),
    )
    assert json.loads((out / "tessera.json").read_text())["targets"]["x86"]["precision"] == "bf16"
    prompt = random_prompt(rng, 25)
    assert relative_error(open_session(out).prefill(prompt), open_session(exact).prefill(prompt)) <= 2e-2


def test_every_stage_is_observable_and_reads_back(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    for stage, marker in [
        ("schedule", "tessera.schedule.ssd_scan"),
        ("tile", "tessera.tile.launch"),
        ("x86", "vector."),
        ("llvm", "define void @"),
    ]:
        text = run_tool("tessera_compile", TINY, "--target", "x86", "--emit", stage, "--dump-ir", dump, "-q").stdout
        assert marker in text, stage
        if stage in ("schedule", "tile"):
            path = tmp_path / f"{stage}.mlir"
            path.write_text(text)
            again = subprocess.run(
                [sys.executable, "-m", "tessera.tools.tessera_opt", path], capture_output=True, text=True
            )
            assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in dump.iterdir())[:2] == ["00-graph.mlir", "01-x86-schedule.mlir"]


def test_identical_kernels_compile_once(tmp_path: Path) -> None:
    env = {**os.environ, "TESSERA_CACHE_DIR": str(tmp_path / "cache")}

    def compile_once(out: Path) -> str:
        command = [sys.executable, "-m", "tessera.tools.tessera_compile", str(TINY), "--target", "x86", "-o", str(out)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stderr

    cold = compile_once(tmp_path / "a")
    warm = compile_once(tmp_path / "b")
    assert "0 cached" in cold and "0 compiled" in warm
    assert (tmp_path / "a" / "x86" / "kernels.ll").read_text() == (tmp_path / "b" / "x86" / "kernels.ll").read_text()


# --- bad input: one line, naming what is wrong ----------------------------------------------------


def _copy(artifact: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    return copy


def test_a_missing_kernel_is_named(tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tessera.runtime.kernels import load_kernels
    from tessera.runtime.native import NativeError

    copy = _copy(tiny_artifact, tmp_path)
    program_path = copy / "x86" / "program.json"
    program = json.loads(program_path.read_text())
    launch = program["programs"]["decode"]["launches"][0]
    # A kernel the program declares (so program.json checks) that the library does not hold: the kernel
    # table is no longer the one the code was compiled with, which the session refuses before any lookup.
    program["kernels"]["embedding_v2"] = program["kernels"][launch["kernel"]]
    launch["kernel"] = "embedding_v2"
    program_path.write_text(json.dumps(program))
    record_again(copy, "x86/program.json")
    monkeypatch.setenv("TESSERA_ISA", "generic")
    libraries = {"generic": copy / "x86" / "kernels.so"}
    for kernels in ("aot", "jit"):
        result = run_tool(
            "tessera_run",
            copy,
            "--input-ids",
            "1,2",
            "--max-new-tokens",
            "1",
            ok=False,
            env={"TESSERA_KERNELS": kernels},
        )
        assert_one_line_error(result, "program.json: its kernels or launches are not the ones")
        # The lookup behind it names a kernel the code lacks in one line too.
        with pytest.raises(NativeError, match="no kernel 'embedding_v2'"):
            load_kernels(copy / "x86" / "kernels.ll", libraries, kernels).function("embedding_v2")
    (copy / "x86" / "kernels.so").unlink()
    result = run_tool(
        "tessera_run", copy, "--input-ids", "1", ok=False, env={"TESSERA_KERNELS": "aot", "TESSERA_ISA": "generic"}
    )
    assert_one_line_error(result, "kernels.so: missing")


def test_a_mismatched_weight_is_named(tiny_artifact: Path, tmp_path: Path) -> None:
    from tessera.runtime.weights import WeightError, prepare_weights

    program = json.loads((tiny_artifact / "x86" / "program.json").read_text())
    weights = {
        name: np.zeros(entry["shape"], np.float32) for name, entry in program["weights"].items() if "parts" not in entry
    }
    for entry in program["weights"].values():
        for part in entry.get("parts", []):
            weights[part] = np.zeros((1, entry["shape"][1]), np.float32)
        if "column_scale" in entry:  # a norm folded into this projection
            weights[entry["column_scale"]] = np.ones(entry["shape"][1], np.float32)
    with pytest.raises(WeightError, match=r"weight 'layers.3.attn_gqa.qkv_proj.weight' has shape \[3, 64\]"):
        prepare_weights(program["weights"], weights)
    del weights["final_norm.weight"]
    with pytest.raises(
        WeightError, match=r"weight 'final_norm\.weight' is missing \(the program folds it into 'lm_head"
    ):
        prepare_weights({"lm_head.weight": program["weights"]["lm_head.weight"]}, weights)


def test_bad_run_inputs_are_named(tiny_artifact: Path) -> None:
    result = run_tool("tessera_run", tiny_artifact, "--input-ids", "1,301", ok=False)
    assert_one_line_error(result, "token 301 outside the vocabulary [0, 301)")
    long_prompt = ",".join(["1"] * 250)
    result = run_tool("tessera_run", tiny_artifact, "--input-ids", long_prompt, "--max-new-tokens", "10", ok=False)
    assert_one_line_error(result, "beyond the compiled maximum of 256")


def test_batch_other_than_one_is_refused(tmp_path: Path) -> None:
    result = run_tool("tessera_compile", TINY, "--target", "x86", "--batch", "2", "-o", tmp_path / "out", ok=False)
    assert_one_line_error(result, "compile.batch", "batch 1")
    assert not (tmp_path / "out").exists()
