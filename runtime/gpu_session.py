"""GpuSession: runs a GPU target's programs (program.json of rocdl or nvvm) through a GpuDriver (runtime/gpu_module.py),
with the weights uploaded (or drawn) once, and the state (conv/SSM state, KV cache) and each program's arena
kept on the device between calls.

    session = GpuSession(program, driver, driver.load_module(code_object), weights)
    logits = session.prefill([5, 7, 9])      # [3, vocab]; call again to continue the same sequence
    last = session.prefill([4, 2], last_only=True)   # [1, vocab]: the rest stay on the device
    next_logits = session.decode(11)         # [vocab]
    profiler = session.start_profiling()     # each launch timed by device events from now on: profiler.report()

Each launch of a program: its arguments in order — a device pointer per operand (token ids, a weight, a
state, or a [tokens, F] view of an arena slot), then the token count and the position as i32 — on a grid
of ceil(extent / per) workgroups per axis ("tokens" = this call's token count), `threads` per workgroup,
and the launch's dynamic shared bytes (`shared_bytes`; 0 on ROCDL, whose LDS is static). When only the last
position's logits are asked for, the program's row tail (`row_tail`: the launches after the last one that
mixes tokens or touches the state — the final norm and lm_head, and the last layer's MLP or gated norm and
out_proj) runs on that one row: its buffers viewed from the row, a token count of 1. An NVVM launch's
`tensor_maps` name the arguments a TMA kernel takes as CUtensorMaps: the session encodes each through the
driver (`encode_tensor_map_2d`) for the buffer's address and rows and passes the 128 bytes by value in the
pointer's place. A program's launches are resolved once per shape of call — arguments, grids, tensor maps
over the kept arena (`Step`s of a plan) — so a decode step only puts its position in and launches. The
driver decides where it runs: HIP on an AMD GPU, CUDA on an NVIDIA one, or a simulator of the ISA in the
tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from tessera.model.philox import seed_key
from tessera.model.weight_init import SeededWeights
from tessera.runtime.artifact import Artifact
from tessera.runtime.gpu_module import (
    DeviceBuffer,
    EventTimer,
    GpuDriver,
    GpuError,
    GpuModule,
    KernelArg,
    KernelBytes,
    KernelHandle,
    KernelScalar,
)
from tessera.runtime.integrity import artifact_weights, seeded_weights
from tessera.runtime.profile import GpuProfiler
from tessera.runtime.program_check import DTYPE_BYTES, check_program
from tessera.runtime.program_check import FORMAT_VERSION as PROGRAM_VERSION
from tessera.runtime.token_ids import RunError, checked_ids, kv_capacity
from tessera.runtime.weights import prepare_weights

_DTYPES = {"f32": np.float32, "bf16": np.uint16, "i64": np.int64}
KEY_BYTES = 16  # a draw's key: seed low, seed high, stream, 0 (kernels/draw.py)
ID_BYTES = 8  # a token id: i64
MAX_PLANS = 16  # launch plans kept (one per program, call length and last-only)
# Kernel kinds whose every output row is a function of the same row of their buffers (and of weights): run on
# one row, they give that row's result.
ROW_WISE_KINDS = frozenset({"matmul", "rmsnorm", "gated_rmsnorm", "rms_scale"})
_DRIVERS = {"rocdl": "hip", "nvvm": "cuda"}


class GpuSession:
    def __init__(
        self,
        program: Mapping[str, Any],
        driver: GpuDriver,
        module: GpuModule,
        weights: Mapping[str, np.ndarray] | SeededWeights,
        target: str = "rocdl",
        source: str = "program.json",
    ) -> None:
        check_program(program, source, target)  # before anything is uploaded or launched from it
        self.target = target
        self.program = program
        self.driver = driver
        began = time.perf_counter()
        launches = [launch for listing in program["programs"].values() for launch in listing["launches"]]
        self.kernels = {
            launch["kernel"]: module.function(launch["kernel"])
            for launch in [*launches, *program.get("weight_draws", ())]
        }
        # A seeded model's large weights are drawn here by the program's draw kernels; the rest come from the host.
        draws = program.get("weight_draws", []) if isinstance(weights, SeededWeights) else []
        drawn = {draw["args"][0]["drawn"]["weight"] for draw in draws}
        uploaded = {name: entry for name, entry in program["weights"].items() if name not in drawn}
        host = weights.arrays(_sources(uploaded)) if isinstance(weights, SeededWeights) else weights
        prepared = prepare_weights(uploaded, host)
        self.weights = {name: self._upload(array, f"weight '{name}'") for name, array in prepared.items()}
        if draws:
            assert isinstance(weights, SeededWeights)
            self.weights |= self._draw(draws, weights.seed)
        self.states = {
            name: self._upload(np.zeros(entry["shape"], _DTYPES[entry["dtype"]]), f"state '{name}'")
            for name, entry in program["states"].items()
        }
        self.vocab_size = int(program["weights"]["embedding.weight"]["shape"][0])
        self.max_seq_len = kv_capacity(program["states"])
        self.position = 0
        self.profiler: GpuProfiler | None = None
        self._arenas: dict[str, Arena] = {}  # by program, kept between calls
        self._plans: dict[tuple[str, int, bool], list[Step]] = {}  # by program, tokens and last_only
        self.load_seconds = time.perf_counter() - began  # weights drawn or uploaded, state allocated

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
        weights = seeded_weights(artifact) or artifact_weights(artifact)
        return cls(program, driver, module, weights, target, source=str(program_path))

    def _draw(self, draws: Sequence[Mapping[str, Any]], seed: int) -> dict[str, DeviceBuffer]:
        """The drawn weights, each written a part at a time by its draw launches (program.json `weight_draws`):
        the part's rows viewed from the weight, its key (seed and stream) from one upload of all the keys."""
        buffers: dict[str, DeviceBuffer] = {}
        targets = [draw["args"][0]["drawn"] for draw in draws]
        for name in dict.fromkeys(target["weight"] for target in targets):
            shape = self.program["weights"][name]["shape"]
            buffers[name] = self._alloc(math.prod(shape[:-1]) * _row_bytes(self.program, name), f"weight '{name}'")
        low, high = seed_key(seed)
        keys = self._upload(
            np.array([[low, high, draw["args"][1]["key"], 0] for draw in draws], np.uint32), "draw keys"
        )
        try:
            for index, (draw, target) in enumerate(zip(draws, targets, strict=True)):
                rows = int(target["rows"])
                row_bytes = _row_bytes(self.program, target["weight"])
                first = buffers[target["weight"]].pointer + int(target["first_row"]) * row_bytes
                resolved: dict[str, KernelArg] = {  # each argument of a draw launch by its kind (program_check)
                    "drawn": DeviceBuffer(first, rows * row_bytes),
                    "key": DeviceBuffer(keys.pointer + index * KEY_BYTES, KEY_BYTES),
                    "tokens": KernelScalar(rows, "i32"),  # the rows drawn: one program each
                    "position": KernelScalar(0, "i32"),
                }
                args: list[KernelArg] = [resolved[next(iter(arg))] for arg in draw["args"]]
                grid = (_blocks(draw["grid"]["x"], rows), _blocks(draw["grid"]["y"], rows), 1)
                shared = int(draw.get("shared_bytes", 0))
                self.driver.launch(self.kernels[draw["kernel"]], grid, (draw["threads"], 1, 1), shared, args)
            self.driver.synchronize()
        finally:
            self.driver.free(keys)
        return buffers

    def _upload(self, array: np.ndarray, what: str) -> DeviceBuffer:
        array = np.ascontiguousarray(array)
        buffer = self._alloc(array.nbytes, what)
        self.driver.upload(buffer, array)
        return buffer

    def _alloc(self, nbytes: int, what: str) -> DeviceBuffer:
        """Device memory for `what`; out of memory ends in one line naming it and its size."""
        try:
            return self.driver.alloc(nbytes)
        except GpuError as exc:
            raise GpuError(
                f"{what}: {nbytes / 2**30:.2f} GiB do not fit on the {self.driver.name} device ({exc})"
            ) from None

    # --- public API --------------------------------------------------------------------------------------
    def prefill(self, input_ids: Sequence[int], last_only: bool = False) -> np.ndarray:
        """Logits [T, vocab] for every position of `input_ids`, continuing the current sequence; with
        `last_only`, [1, vocab] for the last position alone (the program's row tail runs on that row)."""
        return self._run("prefill", input_ids, last_only)

    def decode(self, token_id: int) -> np.ndarray:
        """Logits [vocab] after appending one token, by the single-step programs."""
        return self._run("decode", [token_id], last_only=False)[0]

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
    def _run(self, program_name: str, input_ids: Sequence[int], last_only: bool) -> np.ndarray:
        ids = checked_ids(input_ids, self.vocab_size, self.position, self.max_seq_len)
        program = self.program["programs"][program_name]
        tokens = int(ids.size)
        plan = self._plan(program_name, tokens, last_only)
        held = self._arenas[program_name]
        self.driver.upload(held.ids, ids)
        timer = self.driver if self.profiler is not None and isinstance(self.driver, EventTimer) else None
        events: list[Any] = []
        began = time.perf_counter()
        try:
            if timer is not None:
                events.append(timer.record_event())
            for step in plan:
                args = step.args
                if step.position is not None:  # the one argument that changes from call to call
                    at = step.position
                    args = (*args[:at], KernelScalar(self.position + step.rows.first, "i32"), *args[at + 1 :])
                self.driver.launch(step.kernel, step.grid, step.block, step.shared_bytes, args)
                if timer is not None:
                    events.append(timer.record_event())
            self.driver.synchronize()
            result = program["result"]
            first = tokens - 1 if last_only else 0
            logits = np.empty((tokens - first, result["features"]), _DTYPES[result["dtype"]])
            self.driver.download(_row_view(held.slots[result["buffer"]], result, first, tokens - first), logits)
            if timer is not None and self.profiler is not None:
                seconds = [timer.elapsed_seconds(start, end) for start, end in pairwise(events)]
                spans = [(step.rows.count, self.position + step.rows.first) for step in plan]
                self.profiler.record(program_name, tokens, spans, seconds, time.perf_counter() - began)
        finally:
            for event in events:
                assert timer is not None
                timer.destroy_event(event)
        self.position += tokens
        return logits

    def _plan(self, program_name: str, tokens: int, last_only: bool) -> list[Step]:
        """The program's launches for a call of `tokens` (its last row alone for the row tail of a last-only
        call), their arguments resolved against the kept arena — tensor maps encoded — once per shape of
        call: a decode step only puts its position in."""
        self._arena(program_name, tokens)  # (a larger arena drops the plans made on the old one)
        key = (program_name, tokens, last_only)
        if key in self._plans:
            return self._plans[key]
        held = self._arenas[program_name]
        ids = DeviceBuffer(held.ids.pointer, tokens * ID_BYTES)
        launches = self.program["programs"][program_name]["launches"]
        tail = row_tail(launches) if last_only else len(launches)
        plan = []
        for index, launch in enumerate(launches):
            rows = Rows(0, tokens) if index < tail else Rows(tokens - 1, 1)
            args: list[KernelArg] = [self._argument(arg, ids, held.slots, rows) for arg in launch["args"]]
            for tensor_map in launch.get("tensor_maps", ()):
                at = tensor_map["arg"]
                args[at] = self._tensor_map(tensor_map, args[at], rows)
            grid = (_blocks(launch["grid"]["x"], rows.count), _blocks(launch["grid"]["y"], rows.count), 1)
            position = next((at for at, arg in enumerate(launch["args"]) if "position" in arg), None)
            plan.append(Step(self.kernels[launch["kernel"]], grid, (launch["threads"], 1, 1),
                             int(launch.get("shared_bytes", 0)), tuple(args), position, rows))  # fmt: skip
        if len(self._plans) >= MAX_PLANS:  # prompts of many lengths: keep the newest
            del self._plans[next(iter(self._plans))]
        self._plans[key] = plan
        return plan

    def _arena(self, program_name: str, tokens: int) -> Arena:
        """The program's arena slots and token ids buffer for `tokens` rows: kept from call to call (a decode
        step allocates nothing), replaced by larger ones when a call has more tokens than any before."""
        held = self._arenas.get(program_name)
        if held is None or held.tokens < tokens:
            if held is not None:
                for buffer in (*held.slots, held.ids):
                    self.driver.free(buffer)
            self._plans = {key: plan for key, plan in self._plans.items() if key[0] != program_name}
            widths = self.program["programs"][program_name]["slots"]
            what = f"the {program_name} arena for {tokens} tokens"
            slots = [self._alloc(tokens * width, f"{what}, slot {slot}") for slot, width in enumerate(widths)]
            held = self._arenas[program_name] = Arena(tokens, slots, self._alloc(tokens * ID_BYTES, what))
        return held

    def _tensor_map(self, entry: Mapping[str, Any], arg: KernelArg, rows: Rows) -> KernelBytes:
        """The CUtensorMap of a TMA operand (program.json's `tensor_maps` entry) over its device buffer."""
        encode = getattr(self.driver, "encode_tensor_map_2d", None)
        if encode is None:
            raise RunError(f"the {self.driver.name} driver cannot encode the tensor maps of a {self.target} program")
        assert isinstance(arg, DeviceBuffer), entry
        shape = dict(dtype=entry["dtype"], rows=rows.count if entry["rows"] == "tokens" else int(entry["rows"]),
                     cols=int(entry["cols"]), box_rows=int(entry["box_rows"]), box_cols=int(entry["box_cols"]),
                     swizzle=entry["swizzle"])  # fmt: skip
        return encode(arg.pointer, **shape)  # type: ignore[no-any-return]

    def _argument(
        self, arg: Mapping[str, Any], ids: DeviceBuffer, arena: list[DeviceBuffer], rows: Rows
    ) -> DeviceBuffer | KernelScalar:
        if "ids" in arg:
            return ids  # read by no launch of a row tail
        if "weight" in arg:
            return self.weights[arg["weight"]]
        if "state" in arg:
            return self.states[arg["state"]]
        if "buffer" in arg:
            return _row_view(arena[arg["buffer"]], arg, rows.first, rows.count)
        if "tokens" in arg:
            return KernelScalar(rows.count, "i32")
        if "position" in arg:
            return KernelScalar(self.position + rows.first, "i32")
        raise RunError(f"program.json: unknown launch argument {dict(arg)}")


@dataclass(frozen=True)
class Step:
    """One launch of a plan: its kernel, geometry and arguments, and which argument is the position (the
    call's position plus the first of its `rows`)."""

    kernel: KernelHandle
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int
    args: tuple[KernelArg, ...]
    position: int | None
    rows: Rows


@dataclass(frozen=True)
class Arena:
    """A program's buffers for calls of up to `tokens` tokens: its arena slots and the token ids."""

    tokens: int
    slots: list[DeviceBuffer]
    ids: DeviceBuffer


@dataclass(frozen=True)
class Rows:
    """The token rows a launch runs on: `count` rows from row `first` of this call's tokens."""

    first: int
    count: int


def row_tail(launches: Sequence[Mapping[str, Any]]) -> int:
    """The index of the first launch of the program's row tail: the launches after the last one that mixes
    tokens (attention, the scan, conv, MoE routing) or reads the token ids or a state. Run on one row, the tail
    gives that row's logits."""
    tail = len(launches)
    while tail > 0 and _row_wise(launches[tail - 1]):
        tail -= 1
    return tail


def _row_wise(launch: Mapping[str, Any]) -> bool:
    return launch["kind"] in ROW_WISE_KINDS and not any("state" in arg or "ids" in arg for arg in launch["args"])


def _row_view(buffer: DeviceBuffer, arg: Mapping[str, Any], first: int, count: int) -> DeviceBuffer:
    """Rows [first, first + count) of a [tokens, features] buffer."""
    row_bytes = int(arg["features"]) * DTYPE_BYTES[arg["dtype"]]
    return DeviceBuffer(buffer.pointer + first * row_bytes, count * row_bytes)


def _row_bytes(program: Mapping[str, Any], weight: str) -> int:
    """Bytes of one row (the last dimension) of a weight as the device holds it."""
    entry = program["weights"][weight]
    return int(entry["shape"][-1]) * DTYPE_BYTES[entry.get("packing", {}).get("dtype", "f32")]


def _sources(entries: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The layout tensors that the weights `entries` are made of: their parts and folded norms."""
    names: set[str] = set()
    for name, entry in entries.items():
        names.update(entry.get("parts") or [name])
        if "column_scale" in entry:
            names.add(entry["column_scale"])
    return names


def _blocks(axis: Sequence[int | str], tokens: int) -> int:
    extent, per = axis
    count = tokens if extent == "tokens" else int(extent)
    return -(-count // int(per))
