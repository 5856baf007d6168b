"""X86Session: runs an artifact's compiled x86 programs, carrying the state between calls.

Python only sequences launches and moves buffers: every step of `@prefill` / `@decode` (program.json) is a
compiled kernel. A launch whose grid has two or more units (GEMM panels, heads, channels, tokens) is split
in two halves, one per core: ctypes releases the GIL during the call, so the two halves run in parallel.
The decode program always runs one token, so its argument lists are built once and reused; only the
sequence position changes (a shared ctypes integer).

    session = X86Session.open(read_artifact("out/tiny"))
    logits = session.prefill([5, 7, 9])      # [3, vocab]; call again to continue the same sequence
    next_logits = session.decode(11)         # [vocab]
    saved = session.save_state(); ...; session.restore_state(saved)
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.manifest_json import read_manifest_json
from tessera.runtime.artifact import Artifact
from tessera.runtime.integrity import artifact_weights
from tessera.runtime.kernels import FileRecords, KernelSet, load_kernels
from tessera.runtime.native import memref_args
from tessera.runtime.program_check import FORMAT_VERSION as PROGRAM_VERSION
from tessera.runtime.program_check import check_amx_kernels, check_kernel_table, check_program
from tessera.runtime.token_ids import RunError, checked_ids, kv_capacity
from tessera.runtime.weights import prepare_weights

_DTYPES = {"f32": np.float32, "bf16": np.uint16, "i64": np.int64}


@dataclass
class SessionState:
    position: int
    states: dict[str, np.ndarray]


@dataclass
class _Launch:
    function: Any
    args: list[Any]  # expanded memref / integer arguments, without the [begin, end) range
    extent: int  # grid units to split: panels, heads, channels or tokens
    name: str
    align: int = 1  # split only at multiples of this (e.g. the heads of one SSM group)
    threads: int = 2  # 1: too little work to pay for a second thread (the compiler's call)


class X86Session:
    target = "x86"

    def __init__(
        self,
        program: Mapping[str, Any],
        kernels: KernelSet,
        weights: Mapping[str, np.ndarray],
        threads: int = 2,
        source: str = "program.json",
    ):
        check_program(program, source, self.target)  # before any array is sized or kernel looked up from it
        self.program = program
        self.kernels = kernels
        self._functions: dict[str, Any] = {}
        self.weights = prepare_weights(program["weights"], weights, amx=_amx_weights(program, kernels.amx))
        self.states = {
            name: np.zeros(entry["shape"], _DTYPES[entry["dtype"]]) for name, entry in program["states"].items()
        }
        self.max_seq_len = kv_capacity(program["states"])
        self.vocab_size = int(program["weights"]["embedding.weight"]["shape"][0])
        self.position = 0
        self._position_arg = ctypes.c_int64(0)
        self._pool = ThreadPoolExecutor(max_workers=1) if threads > 1 else None
        self._decode_ids = np.zeros(1, np.int64)
        self._decode: tuple[list[_Launch], np.ndarray] | None = None
        self._buffers: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for program_name in ("prefill", "decode"):
            for launch in program["programs"][program_name]["launches"]:
                self._function(launch["kernel"])  # a missing kernel fails at open, not mid-run

    @classmethod
    def open(cls, artifact: Artifact, kernel_mode: str | None = None) -> X86Session:
        """The artifact's x86 program: every file it uses is checked against tessera.json's records before
        it is read or loaded, the program against its kernels' signatures, and its kernel table against
        the one the loaded code was compiled with, before any launch."""
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
        amx_kernels = entry.get("amx_kernels", [])
        check_amx_kernels(program, amx_kernels, str(artifact.file("tessera.json")))
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
            amx_kernels=amx_kernels,
            records=records,
        )
        # The table checked above must be the one the loaded code was compiled for (before weights load).
        check_kernel_table(program, kernels.table_digests, str(program_path))
        return cls(program, kernels, artifact_weights(artifact), source=str(program_path))

    # --- public API --------------------------------------------------------------------------
    def prefill(self, input_ids: Sequence[int]) -> np.ndarray:
        """Logits [T, vocab] for every position of `input_ids`, continuing the current sequence."""
        ids = self._check_ids(input_ids)
        launches, logits = self._prepare("prefill", ids)
        self._run(launches)
        self.position += len(ids)
        return logits.copy()

    def decode(self, token_id: int) -> np.ndarray:
        """Logits [vocab] after appending one token, by the single-step programs."""
        self._decode_ids[0] = self._check_ids([token_id])[0]
        if self._decode is None:
            self._decode = self._prepare("decode", self._decode_ids)
        launches, logits = self._decode
        self._position_arg.value = self.position
        self._run(launches)
        self.position += 1
        return logits[0].copy()

    def reset(self) -> None:
        for array in self.states.values():
            array.fill(0)
        self.position = 0

    def save_state(self) -> SessionState:
        return SessionState(self.position, {name: array.copy() for name, array in self.states.items()})

    def restore_state(self, state: SessionState) -> None:
        for name, array in state.states.items():
            self.states[name][...] = array  # in place: prepared launches hold these buffers
        self.position = state.position

    # --- execution ---------------------------------------------------------------------------
    def _function(self, name: str) -> Any:
        if name not in self._functions:
            self._functions[name] = self.kernels.function(name)
        return self._functions[name]

    def _check_ids(self, input_ids: Sequence[int]) -> np.ndarray:
        return checked_ids(input_ids, self.vocab_size, self.position, self.max_seq_len)

    def _prepare(self, program_name: str, ids: np.ndarray) -> tuple[list[_Launch], np.ndarray]:
        """Bind every launch of a program to this call's buffers (an arena sized for len(ids) tokens)."""
        program = self.program["programs"][program_name]
        tokens = len(ids)
        arena = [np.empty(tokens * width, np.uint8) for width in program["slots"]]
        self._position_arg.value = self.position
        keep: list[np.ndarray] = [ids]

        def resolve(arg: Mapping[str, Any]) -> np.ndarray | ctypes.c_int64:
            if "ids" in arg:
                return ids
            if "weight" in arg:
                return self.weights[arg["weight"]]
            if "state" in arg:
                return self.states[arg["state"]]
            if "buffer" in arg:
                dtype = np.dtype(_DTYPES[arg["dtype"]])
                size = tokens * arg["features"] * dtype.itemsize
                view = arena[arg["buffer"]][:size].view(dtype)
                return view if arg.get("rank") == 1 else view.reshape(tokens, arg["features"])
            if "position" in arg:
                return self._position_arg
            raise RunError(f"program.json: unknown launch argument {dict(arg)}")

        launches = []
        for launch in program["launches"]:
            expanded: list[Any] = []
            for arg in launch["args"]:
                value = resolve(arg)
                expanded += memref_args(value) if isinstance(value, np.ndarray) else [value]
            extent = launch["grid"] or tokens
            function = self._function(launch["kernel"])
            threads, align = int(launch.get("threads", 2)), int(launch.get("align", 1))
            launches.append(_Launch(function, expanded, extent, launch["kernel"], align, threads))
        result = resolve(program["result"])
        assert isinstance(result, np.ndarray)
        self._buffers[program_name] = (arena, keep)  # alive as long as the launches bound to them
        return launches, result

    def _run(self, launches: list[_Launch]) -> None:
        pool = self._pool
        for launch in launches:
            extent = launch.extent
            if pool is None or launch.threads < 2 or extent < 2:
                _call(launch, 0, extent)
                continue
            middle = (extent + 1) // 2
            if launch.align > 1 and extent >= 2 * launch.align:
                middle = (extent // launch.align + 1) // 2 * launch.align
            other = pool.submit(_call, launch, middle, extent)
            _call(launch, 0, middle)
            other.result()


def _amx_weights(program: Mapping[str, Any], amx_kernels: frozenset[str]) -> frozenset[str]:
    """The weights that AMX GEMMs read (packed for AMX tiles instead of AVX-512 panels)."""
    return frozenset(
        launch["args"][1]["weight"]
        for listing in program["programs"].values()
        for launch in listing["launches"]
        if launch["kernel"] in amx_kernels
    )


def _call(launch: _Launch, begin: int, end: int) -> None:
    launch.function(*launch.args, ctypes.c_int64(begin), ctypes.c_int64(end))
