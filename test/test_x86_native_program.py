"""The x86 native programs (lowering/x86/native_program.py): each program one native call whose kernel grids
an OpenMP team splits; the same logits on any number of threads; the instrumented mode; the cost estimate;
bad thread counts and a missing OpenMP runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import NEEDS_MLIR, assert_one_line_error, compile_tiny_x86, run_tool

pytestmark = NEEDS_MLIR


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, module_seed: int) -> Path:
    return compile_tiny_x86(tmp_path_factory, module_seed, 128)  # hidden 64: prefill splits past ~14 tokens


def _session(out: Path, threads: int | None = None):  # type: ignore[no-untyped-def]
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.x86_session import X86Session

    session = X86Session.open(read_artifact(out))
    if threads is not None:
        session.threads = threads
    return session


def _generate(session, prompt: list[int], continuation: list[int]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return [session.prefill(prompt), *(session.decode(token) for token in continuation)]


def test_every_thread_count_computes_the_same_logits(tiny_artifact: Path, rng: np.random.Generator) -> None:
    # Threads split grids (panels, heads, channels, tokens) without changing any element's arithmetic: the
    # logits agree to the bit, whether the team has one thread, as many as the cores, or more.
    prompt, continuation = [int(t) for t in rng.integers(0, 301, 45)], [int(t) for t in rng.integers(0, 301, 4)]
    one = _generate(_session(tiny_artifact, 1), prompt, continuation)
    for threads in (2, 3):
        many = _generate(_session(tiny_artifact, threads), prompt, continuation)
        for a, b in zip(one, many, strict=True):
            assert np.isfinite(a).all()
            np.testing.assert_array_equal(a, b)


def test_the_instrumented_programs_compute_the_same_logits_and_account_for_the_time(
    tiny_artifact: Path, rng: np.random.Generator
) -> None:
    prompt, continuation = [int(t) for t in rng.integers(0, 301, 40)], [int(t) for t in rng.integers(0, 301, 3)]
    plain = _generate(_session(tiny_artifact, 2), prompt, continuation)
    session = _session(tiny_artifact, 2)
    profiler = session.start_profiling()
    for a, b in zip(plain, _generate(session, prompt, continuation), strict=True):
        np.testing.assert_array_equal(a, b)
    summary = profiler.summary()
    assert summary["prefill"]["calls"] == 1 and summary["prefill"]["tokens"] == 40
    assert summary["decode"]["calls"] == 3
    for program in ("prefill", "decode"):
        entry = summary[program]
        launches = len(session.program["programs"][program]["launches"])
        assert sum(row["launches"] for row in entry["kinds"].values()) == launches * entry["calls"]
        # Launches run one after another inside the call: their time is part of the call's.
        assert 0 < sum(row["share"] for row in entry["kinds"].values()) <= 1.0 + 1e-9
        assert len(entry["thread_busy"]) == 2
        assert all(0.0 <= share <= 1.0 + 1e-9 for share in entry["thread_busy"])
        assert entry["thread_busy"][0] > 0  # the calling thread runs every unsplit launch
        # The GEMMs' achieved rate: 2 x tokens x each weight's elements over their time, and only theirs.
        gemms = [launch for launch in session.program["programs"][program]["launches"] if launch["kind"] == "matmul"]
        flops = entry["tokens"] * sum(
            2.0 * np.prod(session.program["weights"][launch["args"][1]["weight"]]["shape"]) for launch in gemms
        )
        matmul = entry["kinds"]["matmul"]
        assert matmul["flops_per_s"] == pytest.approx(flops / matmul["seconds"])
        assert all("flops_per_s" not in row for kind, row in entry["kinds"].items() if kind != "matmul")
    assert "matmul" in profiler.report() and "thread busy share" in profiler.report()
    assert "GFLOP/s" in profiler.report()


def test_a_reused_binding_reads_the_new_prompt(tiny_artifact: Path, rng: np.random.Generator) -> None:
    # Prompts of one length reuse the bound table (their ids are copied into the arena); a longer one grows
    # the arena and binds again; a shorter one binds views of the grown arena.
    prompts = [[int(t) for t in rng.integers(0, 301, length)] for length in (20, 20, 33, 7)]
    session = _session(tiny_artifact, 2)
    for prompt in prompts:
        session.reset()
        np.testing.assert_array_equal(session.prefill(prompt), _session(tiny_artifact, 2).prefill(prompt))


def test_the_caller_owns_the_logits(tiny_artifact: Path, rng: np.random.Generator) -> None:
    # Each call writes its logits into memory the caller then owns: logits held across later calls keep
    # their values; the memory of logits nobody holds any more is written again (no copy, no fresh pages).
    session = _session(tiny_artifact, 2)
    prompts = [[int(t) for t in rng.integers(0, 301, 20)] for _ in range(2)]
    first = session.prefill(prompts[0])
    kept = first.copy()
    session.reset()
    second = session.prefill(prompts[1])
    step = session.decode(5)
    session.decode(7)
    np.testing.assert_array_equal(first, kept)
    assert not np.array_equal(first, second) and step.shape == (first.shape[1],)
    memory = second.ctypes.data
    del first, second
    session.reset()
    again = session.prefill(prompts[0])
    np.testing.assert_array_equal(again, kept)
    assert again.ctypes.data == memory


def test_the_callers_floating_point_mode_is_restored(tiny_artifact: Path, rng: np.random.Generator) -> None:
    # Kernels run flushing denormals (MXCSR FTZ | DAZ); the calling thread gets its own mode back, so numpy
    # on it still computes denormals after a call.
    session = _session(tiny_artifact, 2)
    session.prefill([int(t) for t in rng.integers(0, 301, 20)])
    session.decode(3)
    tiny = np.array([1e-38], np.float32) * np.float32(0.25)
    assert tiny[0] != 0 and tiny[0] < np.finfo(np.float32).tiny


def test_tessera_run_profile_reports_kinds_and_threads(tiny_artifact: Path) -> None:
    result = run_tool("tessera_run", tiny_artifact, "--input-ids", ",".join(["3"] * 30), "--max-new-tokens", "3",
                      "--profile", "--json", env={"TESSERA_THREADS": "2"})  # fmt: skip
    profile = json.loads(result.stdout.strip().splitlines()[-1])["profile"]
    assert set(profile) == {"prefill", "decode"}
    assert len(profile["prefill"]["thread_busy"]) == 2
    assert "thread busy share" in result.stderr


def test_small_launches_stay_on_one_thread(tiny_artifact: Path, rng: np.random.Generator) -> None:
    # The tiny model's decode launches stream a few kilobytes each: no launch pays for a second thread, so
    # the second thread never runs a kernel; its prefill of 60 tokens splits the token grids.
    session = _session(tiny_artifact, 2)
    profiler = session.start_profiling()
    session.prefill([int(t) for t in rng.integers(0, 301, 60)])
    session.decode(5)
    summary = profiler.summary()
    assert summary["decode"]["thread_busy"][1] == 0.0
    assert summary["prefill"]["thread_busy"][1] > 0.0


def test_the_launch_table_holds_each_launchs_cost(tiny_artifact: Path) -> None:
    from tessera.lowering.x86.native_program import launch_costs

    program = json.loads((tiny_artifact / "x86" / "program.json").read_text())
    costs = launch_costs(program, "prefill")
    launches = program["programs"]["prefill"]["launches"]
    assert len(costs) == len(launches)
    first = costs[0]  # the embedding: a grid of tokens, its table whole, 64 floats out per token
    assert (first.grid, first.align) == (0, 1)
    assert first.fixed_bytes == 301 * 64 * 4 and first.per_token_bytes == 64 * 4


def test_the_programs_are_observable(tiny_artifact: Path) -> None:
    # The native programs as MLIR (llvm + omp dialects) beside the kernels, and in kernels.ll.
    text = (tiny_artifact / "x86" / "programs.mlir").read_text()
    assert "@tessera_prefill(" in text and "@tessera_decode__profile(" in text
    llvm_ir = (tiny_artifact / "x86" / "kernels.ll").read_text()
    assert "__kmpc_fork_call" in llvm_ir and "define void @tessera_decode(" in llvm_ir


@pytest.mark.parametrize(
    ("env", "phrase"),
    [
        ({"TESSERA_THREADS": "two"}, "TESSERA_THREADS must be a whole number"),
        ({"TESSERA_THREADS": "0"}, "TESSERA_THREADS must be a whole number"),
        (
            {"TESSERA_OPENMP_LIB": "/nonexistent/libiomp5.so"},
            "TESSERA_OPENMP_LIB=/nonexistent/libiomp5.so: no such file",
        ),
    ],
)
def test_bad_thread_counts_and_a_missing_runtime_are_one_line(
    tiny_artifact: Path, env: dict[str, str], phrase: str
) -> None:
    result = run_tool("tessera_run", tiny_artifact, "--input-ids", "1,2", ok=False, env=env)
    assert_one_line_error(result, phrase)
