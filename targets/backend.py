"""What a target declares (after Triton's backends): a name, the archs it builds for, and its stages in order.

    class X86Backend(Backend[X86Job]):
        name = "x86"
        stages = (SCHEDULE, TILE, Stage("x86", "kernels.mlir", kernels_mlir), Stage("llvm", "kernels.ll", llvm_ir),
                  Stage("so", None, libraries))

A stage is a name (what `tessera-compile --emit=<name>` asks for), the file its text goes to in OUT/<target>/
(None for a stage that writes machine code only) and a function of the job returning that text. The job
(the target's subclass of `Job`) carries what every stage reads — the spec, the arch, the kernel cache —
and what earlier stages left for later ones: the Tile-IR module, the emitted kernels, the object.

Everything around the stages belongs to the compiler (targets/compiler.py): running them in order,
stopping for --emit, --dump-ir, writing the files, program.json, the memory report and the progress line.
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from xdsl.dialects.builtin import ModuleOp

from tessera.errors import TesseraError
from tessera.model.config import ModelSpec
from tessera.staging import write_atomically

if TYPE_CHECKING:  # the cache reads runtime/integrity (numpy): paid by compiles, not by `--help`
    from tessera.targets.kernel_cache import KernelCache

# Kernels compiled at once, in worker processes: llvmlite serialises every LLVM call on one lock and the MLIR
# bindings hold the GIL, so threads ran one build at a time (measured: two threads took as long as one).
# At most 8: enough to keep a compile short, few enough not to take every core of a big shared machine.
WORKERS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
_POOL: ProcessPoolExecutor | None = None
_NO_POOL = False  # this machine cannot start one (no POSIX semaphores, e.g. a sandbox without /dev/shm)
T = TypeVar("T")


def _workers() -> ProcessPoolExecutor | None:
    """The compile's worker processes, started at the first build that has more than one piece and kept for
    the process's life (each imports the toolchain once); None where processes cannot be started here, and
    the builds run in this process. Spawned, not forked: the parent holds MLIR and LLVM state and threads
    that a fork would copy mid-use."""
    global _POOL, _NO_POOL
    if _POOL is None and not _NO_POOL:
        try:
            _POOL = ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"))
        except (OSError, ImportError):  # no sem_open (ImportError) or no /dev/shm (OSError)
            _NO_POOL = True
    return _POOL


def _forget_workers() -> None:
    """Drop a pool whose worker died (the next build starts a new one)."""
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL = None


def in_workers(what: str, build: Callable[[str], T], pieces: Sequence[str]) -> list[T]:
    """build(piece) for every piece, WORKERS at a time in worker processes where there are several (here
    otherwise): `build` must pickle (a module-level function, or a functools.partial of one), and so must
    what it returns. `what` names the work in the error a dying worker gives."""
    pool = _workers() if len(pieces) > 1 and WORKERS > 1 else None
    if pool is None:
        return [build(piece) for piece in pieces]
    # The longest pieces first (their text's length: the work it takes), so that no worker starts a large one
    # as the others run out; the results back in the pieces' order.
    order = sorted(range(len(pieces)), key=lambda index: -len(pieces[index]))
    try:
        # Inside the try: a worker may die while the later pieces are still being submitted.
        made = dict(zip(order, pool.map(build, [pieces[index] for index in order]), strict=True))
    except BrokenProcessPool:
        _forget_workers()
        raise TesseraError(f"a compile worker died building {what} (out of memory?)") from None
    return [made[index] for index in range(len(pieces))]


def _encoded(build: Callable[[str], str], piece: str) -> bytes:
    return build(piece).encode()


@dataclass
class Job:
    """One target's compile of one model: the inputs of every stage, and what the shared stages make."""

    spec: ModelSpec  # with the target's defaults (Backend.configure)
    graph: ModuleOp
    arch: str  # what the Tile-IR is tiled for: x86, gfx942, gfx90a, sm_90a
    codegen_version: str  # the first part of every cache key of the target
    cache: KernelCache
    progress: Callable[[str], None]
    target_dir: Path | None  # OUT/<target>/ inside the staged artifact; None under --emit
    file_mode: int  # what open() would give a new file under the process's umask
    texts: dict[str, str] = field(default_factory=dict)  # each stage's text, by stage name
    ran: list[str] = field(default_factory=lambda: ["graph"])  # the stages run, in order
    schedule_module: ModuleOp | None = None
    tile_module: ModuleOp | None = None
    program: dict[str, Any] | None = None  # program.json

    def compile_each(
        self, kind: str, parts: Sequence[str], pieces: Sequence[str], build: Callable[[str], bytes]
    ) -> list[bytes]:
        """build(piece) for every piece through the kernel cache (an entry of `kind` keyed by the codegen
        version, `parts` — the pipeline, the CPU: whatever else decides the bytes — and the piece), the
        pieces the cache lacks WORKERS at a time in worker processes: `build` must pickle (a module-level
        function, or a functools.partial of one)."""
        from tessera.targets.kernel_cache import cache_key

        keys = [cache_key(self.codegen_version, *parts, piece) for piece in pieces]
        built: list[bytes | None] = [self.cache.get(kind, key) for key in keys]
        missing = [index for index, data in enumerate(built) if data is None]
        made = in_workers(kind, build, [pieces[index] for index in missing])
        for index, data in zip(missing, made, strict=True):
            self.cache.put(kind, keys[index], data)
            built[index] = data
        return [data for data in built if data is not None]

    def compile_texts(
        self, kind: str, parts: Sequence[str], pieces: Sequence[str], build: Callable[[str], str]
    ) -> list[str]:
        """compile_each for builds that make text (LLVM IR, assembly)."""
        built = self.compile_each(kind, parts, pieces, partial(_encoded, build))
        return [data.decode() for data in built]

    def compile_one(self, kind: str, parts: Sequence[str], build: Callable[[], bytes]) -> bytes:
        """build() through the kernel cache, keyed by the codegen version and `parts`."""
        from tessera.targets.kernel_cache import cache_key

        return self.cache.get_or_build(kind, cache_key(self.codegen_version, *parts), build)

    def path(self, name: str) -> Path:
        """OUT/<target>/<name>, for a tool that writes the file itself (a linker); only stages that make no
        text ask for it, and those run only when an artifact is built."""
        assert self.target_dir is not None, "a stage without text ran under --emit"
        return self.target_dir / name

    def write(self, name: str, data: str | bytes) -> None:
        """OUT/<target>/<name>, written atomically; nothing under --emit, which keeps only the stage's text."""
        if self.target_dir is not None:
            payload = data.encode() if isinstance(data, str) else data
            write_atomically(self.target_dir / name, payload, mode=self.file_mode)


J = TypeVar("J", bound=Job)
J_contra = TypeVar("J_contra", bound=Job, contravariant=True)


@dataclass(frozen=True)
class Stage(Generic[J_contra]):
    """One step of a target's lowering: `run(job)` makes the text written to OUT/<target>/<file>."""

    name: str
    file: str | None  # None: the stage writes only machine code (with job.write / job.path), no IR text
    run: Callable[[J_contra], str | None]
    # None where the stage can run on this machine, else why not: the compiler says so and leaves it out.
    unavailable: Callable[[], str | None] | None = None


class Backend(ABC, Generic[J]):
    """A target: its stages after Graph-IR, in order, and what its manifest entry says about them."""

    name: ClassVar[str]
    stages: tuple[Stage[J], ...] = ()
    job_type: type[J]
    # The GPUs `compile.arch` / `--arch` may name, the default first; none: the target is its own arch.
    archs: ClassVar[tuple[str, ...]] = ()
    # Bump when the kernel lowering or the pipeline change what a kernel's text compiles to.
    codegen_version: ClassVar[str] = ""

    @classmethod
    def stage_names(cls) -> tuple[str, ...]:
        return ("graph", *(stage.name for stage in cls.stages))

    def arch(self, spec: ModelSpec) -> str:
        if not self.archs:
            return self.name
        return spec.compile.arch or self.archs[0]

    def check(self, spec: ModelSpec) -> None:
        """Refuse, before any work, a model or option this target cannot build (one-line TesseraError)."""
        arch = self.arch(spec)
        if self.archs and arch not in self.archs:
            raise TesseraError(
                f"{spec.source}: field 'compile.arch': the {self.name} target builds for "
                f"{', '.join(self.archs)}, not '{arch}'"
            )
        if spec.compile.batch != 1:
            raise TesseraError(
                f"{spec.source}: field 'compile.batch': the {self.name} target runs one sequence (batch 1)"
            )

    def configure(self, spec: ModelSpec) -> ModelSpec:
        """The spec with this target's defaults for what the model left open."""
        return spec

    def program(self, job: J) -> dict[str, Any] | None:
        """program.json (the launch lists), made once every stage has run; None: the target has none."""
        return job.program

    @abstractmethod
    def manifest(self, job: J) -> dict[str, Any]:
        """This target's entry of tessera.json (the compiler adds the memory report)."""

    def common_fields(self, job: J) -> dict[str, Any]:
        """The fields every compiled target's entry has, after its files."""
        return {
            "precision": job.spec.compile.effective_precision,
            "ssm_state_dtype": job.spec.compile.ssm_state_dtype,
            "kv_cache_dtype": job.spec.compile.kv_cache_dtype,
            "stages": list(job.ran),
        }

    def file(self, stage: str) -> str:
        """Where a stage's text is, relative to the artifact."""
        found = next(s.file for s in self.stages if s.name == stage)
        return f"{self.name}/{found}"
