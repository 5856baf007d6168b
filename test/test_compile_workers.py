"""The compile's worker processes (targets/backend.py Job.compile_each): the pieces the kernel cache lacks are
built in spawned workers, returned in order and cached; a worker that dies is a one-line error, and the next
build starts new workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tessera.errors import TesseraError
from tessera.targets import backend
from tessera.targets.kernel_cache import KernelCache


def _tagged(piece: str) -> bytes:
    """A build the workers can import (a module-level function): its bytes say which process made them."""
    return f"{piece}@{os.getpid()}".encode()


def _dies(piece: str) -> bytes:
    os._exit(3)  # what a worker killed for memory looks like to the parent


def _job(cache: KernelCache) -> backend.Job:
    job = backend.Job.__new__(backend.Job)  # compile_each reads only these two fields
    job.codegen_version, job.cache = "test", cache
    return job


@pytest.mark.skipif(backend.WORKERS < 2, reason="this machine gives the compile one worker: nothing runs apart")
def test_misses_are_built_in_workers_in_order_and_cached(tmp_path: Path) -> None:
    job = _job(KernelCache(tmp_path))
    pieces = [f"kernel {index}" for index in range(5)]
    built = job.compile_each("obj", ("pipeline",), pieces, _tagged)
    assert [data.decode().split("@")[0] for data in built] == pieces
    assert all(int(data.decode().split("@")[1]) != os.getpid() for data in built), "built in this process"
    assert (job.cache.hits, job.cache.misses) == (0, 5)
    assert job.compile_each("obj", ("pipeline",), pieces, _tagged) == built  # now from the cache
    assert job.cache.hits == 5


def test_one_miss_is_built_here(tmp_path: Path) -> None:
    """A single piece is not worth a worker's start-up."""
    built = _job(KernelCache(tmp_path)).compile_each("obj", ("pipeline",), ["only"], _tagged)
    assert built == [f"only@{os.getpid()}".encode()]


@pytest.mark.skipif(backend.WORKERS < 2, reason="this machine gives the compile one worker: nothing runs apart")
def test_a_worker_that_dies_is_one_line_and_the_next_build_recovers(tmp_path: Path) -> None:
    job = _job(KernelCache(tmp_path))
    with pytest.raises(TesseraError, match=r"^a compile worker died building obj \(out of memory\?\)$"):
        job.compile_each("obj", ("pipeline",), ["a", "b"], _dies)
    assert not list(tmp_path.rglob("*")) or all(path.is_dir() for path in tmp_path.rglob("*")), "an entry was cached"
    assert [data.split(b"@")[0] for data in job.compile_each("obj", ("pipeline",), ["a", "b"], _tagged)] == [b"a", b"b"]


def test_a_machine_that_cannot_start_processes_builds_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no process pool can be made (no POSIX semaphores: some sandboxes), the builds run in this one."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(backend, "_POOL", None)
    monkeypatch.setattr(backend, "_NO_POOL", False)
    monkeypatch.setattr(backend, "ProcessPoolExecutor", refuse)
    built = _job(KernelCache(tmp_path)).compile_each("obj", ("pipeline",), ["a", "b"], _tagged)
    assert built == [f"{piece}@{os.getpid()}".encode() for piece in "ab"]


@pytest.mark.skipif(backend.WORKERS < 2, reason="this machine gives the compile one worker: nothing runs apart")
def test_pieces_of_any_length_come_back_in_order() -> None:
    """in_workers hands the longest pieces out first and returns the results in the pieces' order."""
    pieces = ["short", "a much longer piece than the others", "mid piece", "x"]
    made = backend.in_workers("test", _tagged, pieces)
    assert [data.decode().split("@")[0] for data in made] == pieces


@pytest.mark.parametrize("arch", ["gfx942", "sm_90a"])
def test_a_printed_kernel_lowers_as_the_kernel_does(arch: str) -> None:
    """What a worker is given (the kernel printed, then parsed) lowers to exactly what the kernel itself does,
    for every kernel of a hybrid model (on CDNA one with MoE: the experts' emitter too)."""
    from tessera.frontend.config import load_model
    from tessera.frontend.graph_builder import build_graph
    from tessera.lowering import convert_tile_to_nvvm, convert_tile_to_rocdl
    from tessera.lowering.gpu.kernel_info import tile_kernels
    from tessera.targets.stages import lower_to_schedule, lower_to_tile

    lowering = convert_tile_to_nvvm if arch == "sm_90a" else convert_tile_to_rocdl
    config = "nemotron_h_tiny.yaml" if arch != "sm_90a" else "nemotron_h_mid.yaml"  # nvvm refuses MoE
    spec = load_model(str(Path(__file__).parent.parent / "configs" / config))
    module = lower_to_tile(lower_to_schedule(build_graph(spec.config, spec.source), spec), spec, arch)
    for kernel in tile_kernels(module):
        assert lowering.emit_printed_kernel(str(kernel)) == lowering.emit_kernel(kernel), kernel.sym_name.data
