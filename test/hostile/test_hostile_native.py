"""Class 2 of issue 12: native crashes from corrupt artifacts and caches.

Rule: nothing native runs on unchecked input. An artifact's small files carry a sha256 checked at open;
weight shards are checked for size and header at open and hashed as they stream in, failing before the
first token; cache entries carry a checksum and are rebuilt when they do not match; program.json is
validated against a schema and against the dims its kernels were compiled for before any launch.

A tampered file is tried twice where it matters: as found (its recorded hash no longer matches) and with
the artifact's records updated to match (rerecord), so that only checking the content itself can refuse it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_run import (
    NEEDS_X86,
    NEW_TOKENS,
    PROMPT_IDS,
    REBUILD_TIMEOUT_S,
    TINY_YAML,
    Box,
    Built,
    Outcome,
    checkpoint_artifact,
    edit_json,
    flip_byte,
    has_mlir,
    load_json,
    refused,
    rerecord,
    safetensors_header,
    shared_cache,
    succeeded,
    tiny_artifact,
    tokens_of,
    truncate_to,
)

RECORDS = ["as-found", "rerecorded"]


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def run(box: Box, artifact: Path, target: str, env: dict[str, str] | None = None) -> Outcome:
    return box.run(
        "tessera-run", artifact, "--target", target, "--input-ids", PROMPT_IDS, "--max-new-tokens", NEW_TOKENS,
        "--json", env=env,
    )  # fmt: skip


def refused_before_any_token(outcome: Outcome, *phrases: str) -> None:
    refused(outcome, *phrases)
    assert '"tokens"' not in outcome.stdout, f"tokens were produced before the refusal: {outcome.stdout[-200:]}"


# --- kernel libraries, LLVM IR, graph.mlir ------------------------------------------------------------------


@NEEDS_X86
@pytest.mark.parametrize("cut", ["half", "first-page"])
def test_truncated_kernel_library_under_aot(box: Box, cut: str) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    for library in sorted((artifact / "x86").glob("*.so")):
        truncate_to(library, library.stat().st_size // 2 if cut == "half" else 4096)
    refused(run(box, artifact, "x86", {"TESSERA_KERNELS": "aot"}), "kernels", ".so")


@NEEDS_X86
@pytest.mark.parametrize("record", RECORDS)
def test_truncated_llvm_ir_under_jit(box: Box, record: str) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    ir = artifact / "x86" / "kernels.ll"
    truncate_to(ir, ir.stat().st_size // 2)
    if record == "rerecorded":
        rerecord(artifact, "x86/kernels.ll")
    refused(run(box, artifact, "x86", {"TESSERA_KERNELS": "jit"}), "kernels.ll")


@pytest.mark.parametrize("record", RECORDS)
def test_truncated_graph_for_the_reference_target(box: Box, record: str) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    graph = artifact / "graph.mlir"
    truncate_to(graph, graph.stat().st_size // 2)
    if record == "rerecorded":
        rerecord(artifact, "graph.mlir")
    refused(run(box, artifact, "reference"), "graph.mlir")


# --- caches: a damaged entry is rebuilt, never used --------------------------------------------------------


def _private_cache(box: Box, kinds: Callable[[str], bool]) -> Path:
    """A copy of the suite's warm cache (the kinds chosen) that a case may damage."""
    cache = box.root / "cache"
    for kind in sorted(os.listdir(shared_cache())):
        if kinds(kind):
            shutil.copytree(shared_cache() / kind, cache / kind)
    box.cache = cache
    return cache


def _is_jit(kind: str) -> bool:
    """The runtime's JIT cache ($TESSERA_CACHE_DIR/jit), beside the compiler's kernel cache kinds."""
    return kind.startswith("jit")


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@NEEDS_X86
@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_corrupt_jit_cache_entry_is_rebuilt(box: Box, damage: str) -> None:
    built = tiny_artifact()
    cache = _private_cache(box, _is_jit)
    entries = _entries(cache)
    assert entries, "the tiny artifact's run should have filled the JIT cache"
    for entry in entries:
        size = entry.stat().st_size
        entry.write_bytes(
            {"garbage": os.urandom(size), "empty": b"", "truncated": entry.read_bytes()[: size // 2]}[damage]
        )
    artifact = box.copy_in(built.path, "artifact")
    for _ in range(2):  # and the next run must not find it broken either
        outcome = succeeded(run(box, artifact, "x86", {"TESSERA_KERNELS": "jit"}))
        assert tokens_of(outcome) == built.tokens["x86"]


@NEEDS_X86
def test_empty_and_truncated_kernel_cache_entries_are_rebuilt(box: Box) -> None:
    built: Built = tiny_artifact()
    cache = _private_cache(box, lambda kind: not _is_jit(kind))
    entries = _entries(cache)
    assert entries, "the tiny artifact's compile should have filled the kernel cache"
    for number, entry in enumerate(entries):  # every other entry empty, the others cut in half
        truncate_to(entry, 0 if number % 2 else entry.stat().st_size // 2)
    model = box.copy_in(TINY_YAML)
    out = box.out()
    succeeded(box.run("tessera-compile", model, "--target", "x86", "-o", out, "-q", timeout=REBUILD_TIMEOUT_S))
    for mode in ("aot", "jit"):
        outcome = succeeded(run(box, out, "x86", {"TESSERA_KERNELS": mode}))
        assert tokens_of(outcome) == built.tokens["x86"], mode


# --- program.json disagreeing with its kernels --------------------------------------------------------------


def _first_launch(program: dict[str, Any], test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(launch for launch in program["programs"]["prefill"]["launches"] if test(launch))


def _state(program: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(entry for entry in program["states"].values() if entry["kind"] == kind)


def _packed_weight(program: dict[str, Any]) -> dict[str, Any]:
    return next(entry for entry in program["weights"].values() if "nr" in (entry.get("packing") or {}))


PROGRAM_CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "grid": lambda p: _first_launch(p, lambda launch: launch["grid"] > 1).update(
        grid=_first_launch(p, lambda launch: launch["grid"] > 1)["grid"] * 1000
    ),
    "state-shape": lambda p: _state(p, "ssm_state")["shape"].__setitem__(0, 1),
    "state-dtype": lambda p: _state(p, "ssm_state").update(dtype="bf16"),
    "kv-cache-shape": lambda p: _state(p, "k_cache")["shape"].__setitem__(0, 1 << 40),
    "slots": lambda p: p["programs"]["prefill"].update(slots=[8] * len(p["programs"]["prefill"]["slots"])),
    "packing": lambda p: _packed_weight(p)["packing"].update(nr=_packed_weight(p)["packing"]["nr"] // 8),
    "buffer-features": lambda p: next(a for a in _first_launch(p, lambda launch: True)["args"] if "buffer" in a).update(
        features=6400
    ),
}


@NEEDS_X86
@pytest.mark.parametrize("record", RECORDS)
@pytest.mark.parametrize("change", list(PROGRAM_CHANGES))
def test_program_json_disagreeing_with_its_kernels(box: Box, change: str, record: str) -> None:
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    edit_json(artifact / "x86" / "program.json", PROGRAM_CHANGES[change])
    if record == "rerecorded":
        rerecord(artifact, "x86/program.json")
    refused_before_any_token(run(box, artifact, "x86"), "program.json")


# --- weight shards ---------------------------------------------------------------------------------------------


def _shard(artifact: Path) -> Path:
    return artifact / "weights" / load_json(artifact / "weights" / "manifest.json")["shards"][0]["file"]


@pytest.mark.parametrize("target", ["x86", "reference"])
@pytest.mark.parametrize("damage", ["flipped-data-byte", "truncated-data", "truncated-header"])
def test_damaged_weight_shard_fails_before_any_token(box: Box, damage: str, target: str) -> None:
    if target == "x86" and not has_mlir():
        pytest.skip("the x86 target needs the MLIR 22 / llvmlite toolchain")
    artifact = box.copy_in(checkpoint_artifact().path, "artifact")
    shard = _shard(artifact)
    _, body = safetensors_header(shard)
    if damage == "flipped-data-byte":
        flip_byte(shard, shard.stat().st_size - len(body) // 2)
    else:
        truncate_to(shard, shard.stat().st_size - 100 if damage == "truncated-data" else 20)
    refused_before_any_token(run(box, artifact, target), shard.name)
