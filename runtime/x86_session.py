"""X86Session: runs an artifact's compiled x86 programs, carrying the state between calls.

Each program (`@prefill`, `@decode`) is one native function (lowering/x86/native_program.py) that runs its
whole launch list, splitting each kernel's grid over the threads of an OpenMP team (runtime/openmp.py):
a prefill or a decoded token is one call from Python. Python binds the call once per token count: a table
of each launch's kernel entry and argument words (MLIR's expanded memrefs over the weights, the state and
an arena allocated once per session, grown for a longer prompt, which holds the token ids too); a call then
only copies its ids into the arena and writes the sequence position into the words. TESSERA_THREADS caps
the threads (default: the CPUs this process may use).

    session = X86Session.open(read_artifact("out/tiny"))
    logits = session.prefill([5, 7, 9])      # [3, vocab]; call again to continue the same sequence
    next_logits = session.decode(11)         # [vocab]
    saved = session.save_state(); ...; session.restore_state(saved)
    profiler = session.start_profiling()     # the instrumented programs from now on: profiler.report()
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.manifest_json import read_manifest_json
from tessera.runtime import openmp
from tessera.runtime.artifact import Artifact
from tessera.runtime.cpu_features import MATRIX_VARIANTS
from tessera.runtime.integrity import artifact_weights
from tessera.runtime.kernels import FileRecords, KernelSet, load_kernels
from tessera.runtime.native import LAUNCH_SUFFIX, entry_symbol, memref_words
from tessera.runtime.profile import Profiler
from tessera.runtime.program_check import FORMAT_VERSION as PROGRAM_VERSION
from tessera.runtime.program_check import PROGRAMS, check_matrix_kernels, check_program, check_program_digest
from tessera.runtime.token_ids import RunError, checked_ids, kv_capacity
from tessera.runtime.weights import CACHE_LINE, aligned_empty, prepare_weights

_DTYPES = {"f32": np.float32, "bf16": np.uint16, "i64": np.int64}


@dataclass
class SessionState:
    position: int
    states: dict[str, np.ndarray]


@dataclass
class _Arena:
    """A program's buffers for up to len(ids) tokens: its arena slots and the token ids it reads."""

    slots: list[np.ndarray]
    ids: np.ndarray


@dataclass
class _Bound:
    """A program bound to this session's buffers for one token count: the table its native function reads."""

    tokens: int
    table: np.ndarray  # uint64 [launches, 2]: each launch's entry, its argument words
    words: np.ndarray  # uint64: every launch's argument words, end to end
    position_words: np.ndarray  # indices into `words` of the sequence position
    result_pointers: np.ndarray  # indices into `words` of the pointers to the logits' slot
    result_bytes: int  # that slot's size for this token count
    result_view: Callable[[np.ndarray], np.ndarray]  # the logits in a buffer of result_bytes

    spare: np.ndarray  # the memory of the last logits returned (before the first call: untouched memory)

    def fresh_result(self) -> np.ndarray:
        """The logits buffer that the next call writes, owned by the caller: the last one's memory where
        nothing holds a view of it any more (its only reference is `spare`), else new memory. Copying the
        logits out of the arena cost as much as the LM head (a prefill's [T, vocab] float32: 16 ms of 99 for
        512 tokens of the mid model on a 2-core VM), and fresh memory per call its page faults (5 ms)."""
        if sys.getrefcount(self.spare) > 2:  # the attribute and the argument
            self.spare = np.empty(self.result_bytes + CACHE_LINE, np.uint8)
        buffer = _aligned(self.spare, self.result_bytes)
        self.words[self.result_pointers] = buffer.ctypes.data
        return self.result_view(buffer)


def _aligned(memory: np.ndarray, size: int) -> np.ndarray:
    """`size` bytes of `memory` (CACHE_LINE bytes longer) from its first cache-line boundary."""
    start = -memory.ctypes.data % CACHE_LINE
    return memory[start : start + size]


class X86Session:
    target = "x86"

    def __init__(
        self,
        program: Mapping[str, Any],
        kernels: KernelSet,
        weights: Mapping[str, np.ndarray],
        threads: int | None = None,
        source: str = "program.json",
    ):
        check_program(program, source, self.target)  # before any array is sized or kernel looked up from it
        self.program = program
        self.kernels = kernels
        self.threads = openmp.threads() if threads is None else threads
        matrix_weights = _matrix_weights(program, kernels.matrix_kernels)
        self.weights = prepare_weights(program["weights"], weights, kernels.matrix, matrix_weights)
        self.states = {
            name: np.zeros(entry["shape"], _DTYPES[entry["dtype"]]) for name, entry in program["states"].items()
        }
        self.max_seq_len = kv_capacity(program["states"])
        self.vocab_size = int(program["weights"]["embedding.weight"]["shape"][0])
        self.position = 0
        self.profiler: Profiler | None = None
        # Every function is looked up now: a missing kernel or entry fails at open, not mid-run.
        self._entries = {
            (name, profile): kernels.function(entry_symbol(name, profile))
            for name in PROGRAMS
            for profile in (False, True)
        }
        for entry in self._entries.values():
            entry.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
            entry.restype = None
        for name in PROGRAMS:
            self._entries[name, True].argtypes += (ctypes.c_void_p,)
        self._launch_entries = {
            launch["kernel"]: kernels.address(launch["kernel"] + LAUNCH_SUFFIX)
            for name in PROGRAMS
            for launch in program["programs"][name]["launches"]
        }
        self._arenas: dict[str, _Arena] = {}
        self._bound: dict[str, _Bound] = {}

    @classmethod
    def open(cls, artifact: Artifact, kernel_mode: str | None = None) -> X86Session:
        """The artifact's x86 program: every file it uses is checked against tessera.json's records before
        it is read or loaded, the program against its kernels' signatures, and its kernels and launches
        against what the loaded code was compiled for, before any launch."""
        entry = artifact.targets["x86"]
        program_path = artifact.checked(entry["program"], "targets.x86.program")
        program = read_manifest_json(
            program_path,
            "tessera-x86-program",
            PROGRAM_VERSION,
            RunError,
            "x86/program.json missing (rebuild with tessera-compile --target x86)",
        )
        check_program(program, str(program_path), cls.target)  # before any library is loaded
        variant_kernels = {isa: entry.get(f"{isa}_kernels", []) for isa in MATRIX_VARIANTS}
        for isa, names in variant_kernels.items():
            check_matrix_kernels(program, f"{isa}_kernels", names, str(artifact.file("tessera.json")))
        libraries = entry.get("libraries") or {"generic": entry["library"]}
        used = [entry["llvm_ir"], *libraries.values()]
        records = FileRecords(
            {artifact.file(name): artifact.files[name] for name in used if name in artifact.files},
            str(artifact.file("tessera.json")),
        )
        kernels = load_kernels(
            artifact.file(entry["llvm_ir"], "targets.x86.llvm_ir"),
            {isa: artifact.file(path, f"targets.x86.libraries.{isa}") for isa, path in libraries.items()},
            kernel_mode or os.environ.get("TESSERA_KERNELS", "auto"),
            precision=str(entry.get("precision", "fp32")),
            variant_kernels=variant_kernels,
            records=records,
        )
        # The table checked above must be the one the loaded code was compiled for (before weights load).
        check_program_digest(program, kernels.program_digests, str(program_path))
        return cls(program, kernels, artifact_weights(artifact), source=str(program_path))

    # --- public API --------------------------------------------------------------------------
    def prefill(self, input_ids: Sequence[int], last_only: bool = False) -> np.ndarray:
        """Logits [T, vocab] for every position of `input_ids`, continuing the current sequence; with
        `last_only`, [1, vocab] for the last position (every row is still computed here, in host memory)."""
        ids = self._check_ids(input_ids)
        bound = self._bind("prefill", ids)
        logits = bound.fresh_result()
        self._call("prefill", bound)
        self.position += len(ids)
        return logits[-1:] if last_only else logits

    def decode(self, token_id: int) -> np.ndarray:
        """Logits [vocab] after appending one token, by the single-step program."""
        bound = self._bind("decode", self._check_ids([token_id]))
        logits = bound.fresh_result()
        self._call("decode", bound)
        self.position += 1
        return logits[0]

    def start_profiling(self) -> Profiler:
        """Run the instrumented programs from now on; the Profiler returned accumulates what they measure."""
        launches = {name: self.program["programs"][name]["launches"] for name in PROGRAMS}
        shapes = {name: weight["shape"] for name, weight in self.program["weights"].items()}
        self.profiler = Profiler(launches, self.threads, shapes)
        return self.profiler

    def reset(self) -> None:
        for array in self.states.values():
            array.fill(0)
        self.position = 0

    def save_state(self) -> SessionState:
        return SessionState(self.position, {name: array.copy() for name, array in self.states.items()})

    def restore_state(self, state: SessionState) -> None:
        for name, array in state.states.items():
            self.states[name][...] = array  # in place: bound programs hold these buffers
        self.position = state.position

    # --- execution ---------------------------------------------------------------------------
    def _check_ids(self, input_ids: Sequence[int]) -> np.ndarray:
        return checked_ids(input_ids, self.vocab_size, self.position, self.max_seq_len)

    def _call(self, program_name: str, bound: _Bound) -> None:
        bound.words[bound.position_words] = self.position
        table = bound.table.ctypes.data
        if self.profiler is None:
            self._entries[program_name, False](table, bound.tokens, self.threads)
            return
        ticks = np.zeros(1 + len(bound.table) + self.threads, np.uint64)
        began = time.perf_counter()
        self._entries[program_name, True](table, bound.tokens, self.threads, ticks.ctypes.data)
        self.profiler.record(program_name, bound.tokens, ticks, time.perf_counter() - began)

    def _bind(self, program_name: str, ids: np.ndarray) -> _Bound:
        """The program's table for len(ids) tokens, `ids` copied into its arena: the table is kept while the
        token count repeats (every decode step; prompts of one length) and the arena does not grow."""
        program = self.program["programs"][program_name]
        tokens = len(ids)
        result_slot = program["result"]["buffer"]
        arena = self._arena(program_name, program["slots"], tokens, result_slot)
        arena.ids[:tokens] = ids
        bound = self._bound.get(program_name)
        if bound is not None and bound.tokens == tokens:
            return bound
        launches = program["launches"]
        words: list[int] = []
        position_words: list[int] = []
        result_pointers: list[int] = []
        offsets: list[int] = []
        result_bytes = tokens * program["slots"][result_slot]
        first_result = np.empty(result_bytes + CACHE_LINE, np.uint8)  # the first call's logits (untouched here)

        def view(arg: Mapping[str, Any], slot: np.ndarray | None = None) -> np.ndarray:
            dtype = np.dtype(_DTYPES[arg["dtype"]])
            slot = arena.slots[arg["buffer"]] if slot is None else slot
            flat = slot[: tokens * arg["features"] * dtype.itemsize].view(dtype)
            return flat if arg.get("rank") == 1 else flat.reshape(tokens, arg["features"])

        for launch in launches:
            offsets.append(len(words))
            for arg in launch["args"]:
                if "position" in arg:
                    position_words.append(len(words))
                    words.append(0)
                elif "ids" in arg:
                    words += memref_words(arena.ids[:tokens])
                elif "weight" in arg:
                    words += memref_words(self.weights[arg["weight"]])
                elif "state" in arg:
                    words += memref_words(self.states[arg["state"]])
                elif "buffer" in arg:
                    if arg["buffer"] != result_slot:
                        words += memref_words(view(arg))
                        continue
                    result_pointers += [len(words), len(words) + 1]  # both pointers: each call's own logits
                    words += memref_words(view(arg, _aligned(first_result, result_bytes)))
                else:
                    raise RunError(f"program.json: unknown launch argument {dict(arg)}")
        word_array = np.array(words, np.uint64)
        table = np.empty((len(launches), 2), np.uint64)
        for index, launch in enumerate(launches):
            table[index] = (self._launch_entries[launch["kernel"]], word_array.ctypes.data + 8 * offsets[index])
        bound = _Bound(
            tokens,
            table,
            word_array,
            np.array(position_words, np.intp),
            np.array(result_pointers, np.intp),
            result_bytes,
            lambda buffer: view(program["result"], buffer),
            first_result,
        )
        self._bound[program_name] = bound
        return bound

    def _arena(self, program_name: str, slots: Sequence[int], tokens: int, result_slot: int) -> _Arena:
        """The program's buffers: allocated once, grown (never shrunk) when a call needs more tokens — which
        unbinds the program's table; none for the logits' slot, which each call's own logits are."""
        arena = self._arenas.get(program_name)
        if arena is None or len(arena.ids) < tokens:
            sizes = [0 if slot == result_slot else tokens * width for slot, width in enumerate(slots)]
            arena = _Arena([aligned_empty((size,), np.uint8) for size in sizes], np.zeros(tokens, np.int64))
            self._arenas[program_name] = arena
            self._bound.pop(program_name, None)
        return arena


def _matrix_weights(program: Mapping[str, Any], matrix_kernels: frozenset[str]) -> frozenset[str]:
    """The weights that the GEMMs' matrix variant reads (packed for it instead of in panels)."""
    return frozenset(
        launch["args"][1]["weight"]
        for listing in program["programs"].values()
        for launch in listing["launches"]
        if launch["kernel"] in matrix_kernels and program["kernels"][launch["kernel"]]["kind"] == "matmul"
    )
