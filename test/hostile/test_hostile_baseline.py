"""The hostile suite's controls: well-formed input passes through the same box (rlimits, audit) with exit 0,
and the audit does see a read outside the allowed folders. Without these, a refusal could come from the
box itself (a limit too tight for a normal compile) and containment could pass because nothing was logged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_run import (
    AUDIT,
    NEW_TOKENS,
    PROMPT_IDS,
    TINY_YAML,
    Box,
    Outcome,
    checkpoint_artifact,
    has_mlir,
    hf_checkpoint,
    hub_repo,
    succeeded,
    tiny_artifact,
    tokens_of,
)


def test_tiny_compile_fits_the_limits_and_stays_in_its_folders(tmp_path: Path) -> None:
    box = Box(tmp_path)
    targets = ["--target", "reference"] + (["--target", "x86"] if has_mlir() else [])
    outcome = succeeded(box.run("tessera-compile", box.copy_in(TINY_YAML), *targets, "-o", box.out(), "-q"))
    assert not outcome.lines, outcome.stderr  # -q: nothing on stderr
    assert (box.root / "out" / "tessera.json").is_file()
    assert_no_torch(outcome)


def assert_no_torch(outcome: Outcome) -> None:
    """The limits are sized for the tools as users run them: torch (the tests' oracle) is never imported."""
    torch = [path for path in outcome.opened() if "/torch/" in path or "/transformers/" in path]
    assert not torch, torch[:3]


@pytest.mark.parametrize("target", ["x86", "reference"])
def test_tiny_run_fits_the_limits_and_reads_only_its_artifact(tmp_path: Path, target: str) -> None:
    built = tiny_artifact()
    if target not in built.targets:
        pytest.skip(f"{target} was not compiled here (no MLIR toolchain)")
    box = Box(tmp_path)
    artifact = box.copy_in(built.path)
    outcome = succeeded(
        box.run(
            "tessera-run",
            artifact,
            "--target",
            target,
            "--input-ids",
            PROMPT_IDS,
            "--max-new-tokens",
            NEW_TOKENS,
            "--json",
        )
    )
    assert tokens_of(outcome) == built.tokens[target]
    assert_no_torch(outcome)
    assert any(path.startswith(str(artifact)) for path in outcome.opened())  # the audit saw the artifact read


def test_checkpoint_convert_export_compile_and_prompt_run(tmp_path: Path) -> None:
    built = checkpoint_artifact()
    box = Box(tmp_path)
    checkpoint = box.copy_in(hf_checkpoint(), "ckpt")
    converted = box.out("converted")
    succeeded(box.run("tessera-convert", checkpoint, "-o", converted, "--no-progress"))
    succeeded(box.run("tessera-convert", "--export", converted, "-o", box.out("exported"), "--no-progress"))
    artifact = box.copy_in(built.path, "artifact")
    outcome = succeeded(box.run("tessera-run", artifact, "--prompt", "hello world", "--max-new-tokens", "2", "--json"))
    assert len(tokens_of(outcome)) == 2


def test_a_well_formed_hub_cache_converts(tmp_path: Path) -> None:
    box = Box(tmp_path)
    hub, repo = hub_repo(box, hf_checkpoint())
    box.read_roots = [repo]  # only this repo's folder of the Hub cache
    succeeded(box.run("tessera-convert", "org/tiny", "-o", box.out(), "--no-progress", env={"HF_HUB_CACHE": str(hub)}))


def test_the_audit_sees_a_read_of_the_outside_folder(tmp_path: Path) -> None:
    box = Box(tmp_path)
    secret = box.outside / "secret.json"
    secret.write_text(json.dumps({"a": 1}))
    log = box.root / "audit.jsonl"
    # json.tool stands in for a tool that follows a hostile path
    subprocess.run([sys.executable, str(AUDIT), str(log), "json.tool", str(secret)], check=True, capture_output=True)
    violations = box.violations(log)
    assert any("secret.json (the outside folder)" in v for v in violations), violations
