"""The compiler: runs any target's stages (targets/backend.py) for one model, and owns what surrounds them.

    compiler = Compiler(spec, graph, dump_dir, progress)
    compiler.emit(backends, "llvm")       # --emit: the text of one stage, lowering no further
    compiler.compile(backend, staging)    # OUT/<target>/: every stage's file, program.json; the manifest entry

--dump-ir DIR gets the Graph-IR as 00-graph.mlir and each stage's text as NN-<target>-<file> as soon as it
exists (NN: the stage's place, graph being 00), so a compile that fails shows the stages before it. Every
file is written atomically (staging.write_atomically) with the mode open() would give it. Each target's
compile gets a fresh KernelCache (so that its report counts its own hits) and reports one line: kernels,
cache hits and builds, seconds, and the decode state per sequence.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from tessera.errors import TesseraError
from tessera.model.config import ModelSpec
from tessera.staging import write_atomically
from tessera.targets.backend import Backend, J


def _new_file_mode() -> int:
    """What open() gives a new file: 0666 less the umask (reading it means setting it; no thread runs yet)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class Compiler:
    """One model's Graph-IR through the stages of one or more targets (dumped as 00-graph.mlir at once)."""

    def __init__(
        self,
        spec: ModelSpec,
        graph: ModuleOp,
        dump_dir: Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.graph = graph
        self.graph_text = str(graph) + "\n"
        self.dump_dir = dump_dir
        self.progress = progress or (lambda message: None)
        self.file_mode = _new_file_mode()
        self._dump("00-graph.mlir", self.graph_text)

    def emit(self, backends: Sequence[Backend[Any]], stage: str) -> str:
        """The text of `stage` from the one target that has it (Graph-IR is every target's)."""
        if stage == "graph":
            return self.graph_text
        having = [b for b in backends if any(s.name == stage and s.file is not None for s in b.stages)]
        if len(having) != 1:
            names = ", ".join(backend.name for backend in backends)
            raise TesseraError(f"--emit={stage} needs exactly one target that has that stage (given: {names})")
        return self.lower(having[0], stage).texts[stage]

    def write(self, path: Path, text: str) -> None:
        """A file the command writes besides the artifact (--emit's -o)."""
        write_atomically(path, text.encode(), mode=self.file_mode)

    def lower(self, backend: Backend[J], until: str | None = None, target_dir: Path | None = None) -> J:
        """Run `backend`'s stages in order, through `until` (every one when None). Each stage's text is
        dumped, and written to target_dir (OUT/<target>/ when an artifact is built) under its file name."""
        from tessera.targets.kernel_cache import KernelCache

        backend.check(self.spec)
        job = backend.job_type(
            spec=backend.configure(self.spec),
            graph=self.graph,
            arch=backend.arch(self.spec),
            codegen_version=backend.codegen_version,
            cache=KernelCache(),
            progress=self.progress,
            target_dir=target_dir,
            file_mode=self.file_mode,
        )
        names = backend.stage_names()
        for stage in backend.stages:
            reason = stage.unavailable() if stage.unavailable is not None else None
            if reason is not None:
                self.progress(f"{backend.name}: {reason}")
                continue
            text = stage.run(job)
            job.ran.append(stage.name)
            if stage.file is not None:
                assert text is not None, f"stage {stage.name} made no text"
                job.texts[stage.name] = text
                self._dump(f"{names.index(stage.name):02d}-{backend.name}-{stage.file}", text)
                job.write(stage.file, text)
            if stage.name == until:
                break
        return job

    def compile(self, backend: Backend[Any], out_dir: Path) -> dict[str, Any]:
        """Build `backend`'s files under out_dir/<target>/ and return its entry for the artifact manifest."""
        from tessera.targets.stages import memory_report

        if not backend.stages:  # a target that runs Graph-IR itself (the reference) builds nothing
            return backend.manifest(self.lower(backend))
        started = time.perf_counter()
        target_dir = out_dir / backend.name
        target_dir.mkdir(parents=True, exist_ok=True)
        job = self.lower(backend, None, target_dir)
        program = backend.program(job)
        if program is not None:
            job.write("program.json", json.dumps(program, indent=1) + "\n")
        entry = backend.manifest(job)
        assert job.tile_module is not None
        report = memory_report(job.tile_module, job.spec)
        seconds = time.perf_counter() - started
        arch = f" for {job.arch}" if backend.archs else ""
        self.progress(
            f"{backend.name}: {report['kernels']} kernels{arch} ({job.cache.hits} cached, {job.cache.misses} "
            f"compiled) in {seconds:.1f} s; state {report['state_bytes']} B + KV cache "
            f"{report['kv_cache_bytes']} B per sequence"
        )
        return {**entry, **report}

    def _dump(self, name: str, text: str) -> None:
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self.dump_dir / name, text.encode(), mode=self.file_mode)
