"""GpuSession: runs a GPU target's programs (program.json of rocdl or nvvm) through a GpuDriver (runtime/gpu_module.py),
with the weights uploaded once and the state (conv/SSM state, KV cache) kept on the device between calls.

    session = GpuSession(program, driver, driver.load_module(code_object), weights)
    logits = session.prefill([5, 7, 9])      # [3, vocab]; call again to continue the same sequence
    next_logits = session.decode(11)         # [vocab]
    profiler = session.start_profiling()     # each launch timed by device events from now on: profiler.report()

Each launch of a program: its arguments in order — a device pointer per operand (token ids, a weight, a
state, or a [tokens, F] view of an arena slot), then the token count and the position as i32 — on a grid
of ceil(extent / per) workgroups per axis ("tokens" = this call's token count), `threads` per workgroup,
and the launch's dynamic shared bytes (`shared_bytes`; 0 on ROCDL, whose LDS is static). An NVVM launch's
`tensor_maps` name the arguments a TMA kernel takes as CUtensorMaps: the session encodes each through the
driver (`encode_tensor_map_2d`) for the buffer's address and rows (a weight's once, an arena buffer's per
call) and passes the 128 bytes by value in the pointer's place. The driver decides where it runs: HIP on
an AMD GPU, CUDA on an NVIDIA one, or a simulator of the ISA in the tests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from tessera.runtime.artifact import Artifact
from tessera.runtime.gpu_module import (
    DeviceBuffer,
    EventTimer,
    GpuDriver,
    GpuModule,
    KernelArg,
    KernelBytes,
    KernelScalar,
)
from tessera.runtime.integrity import artifact_weights
from tessera.runtime.profile import GpuProfiler
from tessera.runtime.program_check import FORMAT_VERSION as PROGRAM_VERSION
from tessera.runtime.program_check import check_program
from tessera.runtime.token_ids import RunError, checked_ids, kv_capacity
from tessera.runtime.weights import prepare_weights

_DTYPES = {"f32": np.float32, "bf16": np.uint16, "i64": np.int64}
_DRIVERS = {"rocdl": "hip", "nvvm": "cuda"}


class GpuSession:
    def __init__(
        self,
        program: Mapping[str, Any],
        driver: GpuDriver,
        module: GpuModule,
        weights: Mapping[str, np.ndarray],
        target: str = "rocdl",
        source: str = "program.json",
    ) -> None:
        check_program(program, source, target)  # before anything is uploaded or launched from it
        self.target = target
        self.program = program
        self.driver = driver
        self.kernels = {
            launch["kernel"]: module.function(launch["kernel"])
            for listing in program["programs"].values()
            for launch in listing["launches"]
        }
        self.weights = {
            name: self._upload(array) for name, array in prepare_weights(program["weights"], weights).items()
        }
        self.states = {
            name: self._upload(np.zeros(entry["shape"], _DTYPES[entry["dtype"]]))
            for name, entry in program["states"].items()
        }
        self.vocab_size = int(program["weights"]["embedding.weight"]["shape"][0])
        self.max_seq_len = kv_capacity(program["states"])
        self.position = 0
        self._tensor_maps: dict[tuple[Any, ...], KernelBytes] = {}  # of weights and states, encoded once
        self.profiler: GpuProfiler | None = None

    @classmethod
    def open(cls, artifact: Artifact, target: str = "rocdl") -> GpuSession:
        """The artifact's program for `target` on this machine's GPU (HIP for rocdl): fails in one line where
        there is no GPU runtime, before reading any weights. Every file it uses is checked against
        tessera.json's records before it is read, the program against its kernels before any launch."""
        from tessera.manifest_json import read_manifest_json
        from tessera.runtime.gpu_module import open_driver

        entry = artifact.targets[target]
        driver = open_driver(_DRIVERS[target])
        if entry.get("code_object") is None:
            raise RunError(f"{artifact.path}: no loadable code object (ld.lld was missing when it was compiled)")
        program_path = artifact.checked(entry["program"], f"targets.{target}.program")
        program = read_manifest_json(
            program_path, f"tessera-{target}-program", PROGRAM_VERSION, RunError,
            f"{target}/program.json missing (rebuild with tessera-compile --target {target})",
        )  # fmt: skip
        check_program(program, str(program_path), target)  # before the code object is loaded
        module = driver.load_module(artifact.checked_bytes(entry["code_object"], f"targets.{target}.code_object"))
        return cls(program, driver, module, artifact_weights(artifact), target, source=str(program_path))

    def _upload(self, array: np.ndarray) -> DeviceBuffer:
        array = np.ascontiguousarray(array)
        buffer = self.driver.alloc(array.nbytes)
        self.driver.upload(buffer, array)
        return buffer

    # --- public API --------------------------------------------------------------------------------------
    def prefill(self, input_ids: Sequence[int]) -> np.ndarray:
        """Logits [T, vocab] for every position of `input_ids`, continuing the current sequence."""
        return self._run("prefill", input_ids)

    def decode(self, token_id: int) -> np.ndarray:
        """Logits [vocab] after appending one token, by the single-step programs."""
        return self._run("decode", [token_id])[0]

    def start_profiling(self) -> GpuProfiler:
        """Time every launch from now on by events on the device's stream (runtime/profile.py GpuProfiler:
        `report()` is tessera-run --profile's table)."""
        if not isinstance(self.driver, EventTimer):
            raise RunError(f"--profile: the {self.driver.name} driver has no event timers")
        launches = {name: listing["launches"] for name, listing in self.program["programs"].items()}
        self.profiler = GpuProfiler(
            launches, self.program["weights"], self.program["states"], self.driver.device_name()
        )
        return self.profiler

    def reset(self) -> None:
        for name, entry in self.program["states"].items():
            self.driver.upload(self.states[name], np.zeros(entry["shape"], _DTYPES[entry["dtype"]]))
        self.position = 0

    # --- execution -----------------------------------------------------------------------------------------
    def _run(self, program_name: str, input_ids: Sequence[int]) -> np.ndarray:
        ids = checked_ids(input_ids, self.vocab_size, self.position, self.max_seq_len)
        program = self.program["programs"][program_name]
        tokens = int(ids.size)
        arena = [self.driver.alloc(tokens * width) for width in program["slots"]]
        id_buffer = self._upload(ids)
        timer = self.driver if self.profiler is not None and isinstance(self.driver, EventTimer) else None
        events: list[Any] = []
        began = time.perf_counter()
        try:
            if timer is not None:
                events.append(timer.record_event())
            for launch in program["launches"]:
                args: list[KernelArg] = [self._argument(arg, id_buffer, arena, tokens) for arg in launch["args"]]
                for tensor_map in launch.get("tensor_maps", ()):
                    index = tensor_map["arg"]
                    args[index] = self._tensor_map(tensor_map, args[index], "buffer" in launch["args"][index], tokens)
                grid = (_blocks(launch["grid"]["x"], tokens), _blocks(launch["grid"]["y"], tokens), 1)
                shared = int(launch.get("shared_bytes", 0))
                self.driver.launch(self.kernels[launch["kernel"]], grid, (launch["threads"], 1, 1), shared, args)
                if timer is not None:
                    events.append(timer.record_event())
            self.driver.synchronize()
            result = program["result"]
            logits = np.empty((tokens, result["features"]), _DTYPES[result["dtype"]])
            self.driver.download(arena[result["buffer"]], logits)
            if timer is not None and self.profiler is not None:
                seconds = [timer.elapsed_seconds(start, end) for start, end in pairwise(events)]
                self.profiler.record(program_name, tokens, self.position, seconds, time.perf_counter() - began)
        finally:
            for buffer in (*arena, id_buffer):
                self.driver.free(buffer)
            for event in events:
                assert timer is not None
                timer.destroy_event(event)
        self.position += tokens
        return logits

    def _tensor_map(self, entry: Mapping[str, Any], arg: KernelArg, per_call: bool, tokens: int) -> KernelBytes:
        """The CUtensorMap of a TMA operand (program.json's `tensor_maps` entry) over its device buffer."""
        encode = getattr(self.driver, "encode_tensor_map_2d", None)
        if encode is None:
            raise RunError(f"the {self.driver.name} driver cannot encode the tensor maps of a {self.target} program")
        assert isinstance(arg, DeviceBuffer), entry
        rows = tokens if entry["rows"] == "tokens" else int(entry["rows"])
        shape = dict(dtype=entry["dtype"], rows=rows, cols=int(entry["cols"]), box_rows=int(entry["box_rows"]),
                     box_cols=int(entry["box_cols"]), swizzle=entry["swizzle"])  # fmt: skip
        if per_call:
            return encode(arg.pointer, **shape)
        key = (arg.pointer, *shape.values())
        if key not in self._tensor_maps:
            self._tensor_maps[key] = encode(arg.pointer, **shape)
        return self._tensor_maps[key]

    def _argument(
        self, arg: Mapping[str, Any], ids: DeviceBuffer, arena: list[DeviceBuffer], tokens: int
    ) -> DeviceBuffer | KernelScalar:
        if "ids" in arg:
            return ids
        if "weight" in arg:
            return self.weights[arg["weight"]]
        if "state" in arg:
            return self.states[arg["state"]]
        if "buffer" in arg:
            return arena[arg["buffer"]]
        if "tokens" in arg:
            return KernelScalar(tokens, "i32")
        if "position" in arg:
            return KernelScalar(self.position, "i32")
        raise RunError(f"program.json: unknown launch argument {dict(arg)}")


def _blocks(axis: Sequence[int | str], tokens: int) -> int:
    extent, per = axis
    count = tokens if extent == "tokens" else int(extent)
    return -(-count // int(per))
