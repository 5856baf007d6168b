"""The command-line contract: tessera-compile -> tessera-run, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_tool

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "nemotron_h_tiny.yaml"


def run(tool: str, *args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool(tool.replace("-", "_"), *args, ok=ok)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "tiny"
    run("tessera-compile", TINY, "--target", "reference", "-o", out, "-q")
    return out


def test_compile_writes_a_self_contained_artifact(tiny_artifact: Path) -> None:
    manifest = json.loads((tiny_artifact / "tessera.json").read_text())
    assert manifest["targets"] == {"reference": {"program": "graph.mlir", "stages": ["graph"]}}
    assert manifest["weights"] == {"kind": "random", "seed": 0}
    assert "nemotron.mamba2_mixer" in (tiny_artifact / "graph.mlir").read_text()
    assert not list(tiny_artifact.parent.glob(".*partial"))


def test_run_contract(tiny_artifact: Path, tmp_path: Path) -> None:
    logits_path = tmp_path / "logits.npy"
    result = run(
        "tessera-run",
        tiny_artifact,
        "--target",
        "reference",
        "--input-ids",
        "5,7,9",
        "--max-new-tokens",
        "6",
        "--logits-out",
        logits_path,
        "--json",
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(out["tokens"]) == 6
    logits = np.load(logits_path)
    assert logits.dtype == np.float32 and logits.shape == (3, 301)
    assert np.isfinite(logits).all() and np.abs(logits).max() > 0
    # Greedy: the first new token is the argmax of the last prompt position.
    assert out["tokens"][0] == int(np.argmax(logits[-1]))
    # The same artifact and seed give the same tokens.
    again = run("tessera-run", tiny_artifact, "--input-ids", "5,7,9", "--max-new-tokens", "6", "--json")
    assert json.loads(again.stdout.strip().splitlines()[-1])["tokens"] == out["tokens"]


def test_emit_graph_prints_graph_ir(tmp_path: Path) -> None:
    result = run("tessera-compile", TINY, "--emit=graph", "--dump-ir", tmp_path / "dump")
    assert "func.func @forward" in result.stdout
    assert (tmp_path / "dump" / "00-graph.mlir").read_text() == result.stdout


def test_compile_bad_inputs(tmp_path: Path) -> None:
    assert_one_line_error(
        run("tessera-compile", tmp_path / "nope.yaml", "-o", tmp_path / "o", ok=False), "nope.yaml", "no such file"
    )
    assert_one_line_error(
        run("tessera-compile", TINY, "--target", "tpu", "-o", tmp_path / "o", ok=False), "unknown target 'tpu'"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace('hybrid_override_pattern: "M-M*-ME"', 'hybrid_override_pattern: "M-Q"'))
    assert_one_line_error(run("tessera-compile", bad, "-o", tmp_path / "o", ok=False), "hybrid_override_pattern", "'Q'")
    assert not (tmp_path / "o").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert_one_line_error(run("tessera-compile", TINY, "-o", precious, ok=False), "not a Tessera artifact")
    assert (precious / "notes.txt").read_text() == "keep me"


def test_run_bad_inputs(tiny_artifact: Path, tmp_path: Path) -> None:
    assert_one_line_error(run("tessera-run", tmp_path / "none", "--input-ids", "1", ok=False), "no such directory")
    assert_one_line_error(run("tessera-run", tiny_artifact, "--input-ids", "1,x", ok=False), "--input-ids", "integers")
    assert_one_line_error(
        run("tessera-run", tiny_artifact, "--input-ids", "1,999", ok=False), "token 999 outside the vocabulary"
    )
    assert_one_line_error(
        run("tessera-run", tiny_artifact, "--target", "x86", "--input-ids", "1", ok=False), "not compiled for target"
    )
    assert_one_line_error(run("tessera-run", tiny_artifact, "--prompt", "hi", ok=False), "tokenizer")


def test_runtime_and_package_import_without_the_compiler() -> None:
    # Compiled models must run where xDSL and the MLIR bindings are absent.
    code = (
        "import sys, tessera, tessera.runtime.artifact, tessera.runtime.sampling, tessera.runtime.native; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('xdsl', 'mlir', 'torch')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_public_api_names_resolve() -> None:
    import tessera

    for name in tessera.__all__:
        assert getattr(tessera, name) is not None, name
