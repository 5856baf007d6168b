"""The profiles of `tessera-run --profile`: what the x86 target's instrumented native programs measured
(Profiler), and what a GPU target's launches took between events on the device's stream (GpuProfiler, at the
end).

With a Profiler attached, X86Session calls each program's instrumented entry (`tessera_<program>__profile`,
lowering/x86/native_program.py), which adds the CPU's cycle counter ticks of the call, of each launch and of
each thread's time inside kernels to a buffer. Ticks become seconds by the ratio of the whole call's ticks to
its wall time (perf_counter), so no tick rate is assumed. The report, per program: each kernel kind's
launches, time and share of the program's time, for the GEMMs their achieved rate (2 x tokens x the weight's
elements over their time), and each thread's busy share (time in kernels over the program's wall time) — how
much of the machine the program kept working.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ProgramProfile:
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0  # wall time of the calls
    ticks: int = 0  # the calls' ticks (the tick -> second ratio)
    launch_ticks: np.ndarray | None = None  # per launch, summed over calls
    busy_ticks: np.ndarray | None = None  # per thread, summed over calls


@dataclass
class Profiler:
    """Accumulates the instrumented calls of one session's programs; `report()` is the table."""

    launches: Mapping[str, list[Mapping[str, Any]]]  # program -> its launch list (program.json)
    threads: int
    weight_shapes: Mapping[str, list[int]]  # program.json weights: a GEMM's weight -> [N, K]
    programs: dict[str, ProgramProfile] = field(default_factory=lambda: defaultdict(ProgramProfile))

    def record(self, program: str, tokens: int, ticks: np.ndarray, seconds: float) -> None:
        count = len(self.launches[program])
        profile = self.programs[program]
        profile.calls += 1
        profile.tokens += tokens
        profile.seconds += seconds
        profile.ticks += int(ticks[0])
        launch, busy = ticks[1 : 1 + count].astype(np.float64), ticks[1 + count :].astype(np.float64)
        profile.launch_ticks = launch if profile.launch_ticks is None else profile.launch_ticks + launch
        profile.busy_ticks = busy if profile.busy_ticks is None else profile.busy_ticks + busy

    def summary(self) -> dict[str, Any]:
        """Per program: calls, tokens, seconds, time per kernel kind and each thread's busy share."""
        out: dict[str, Any] = {}
        for program, profile in self.programs.items():
            if not profile.calls or profile.launch_ticks is None or profile.busy_ticks is None:
                continue
            per_tick = profile.seconds / max(profile.ticks, 1)
            kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # launches, seconds, FLOPs
            for launch, ticks in zip(self.launches[program], profile.launch_ticks, strict=True):
                kinds[launch["kind"]][0] += profile.calls
                kinds[launch["kind"]][1] += float(ticks) * per_tick
                kinds[launch["kind"]][2] += profile.tokens * self._flops_per_token(launch)
            out[program] = {
                "calls": profile.calls,
                "tokens": profile.tokens,
                "seconds": profile.seconds,
                "kinds": {
                    kind: {"launches": int(n), "seconds": t, "share": t / profile.seconds}
                    | ({"flops_per_s": flops / t} if flops and t else {})
                    for kind, (n, t, flops) in sorted(kinds.items(), key=lambda item: -item[1][1])
                },
                "thread_busy": [float(ticks) * per_tick / profile.seconds for ticks in profile.busy_ticks],
            }
        return out

    def _flops_per_token(self, launch: Mapping[str, Any]) -> float:
        """A GEMM launch's FLOPs per token, 2 N K (0 for other kinds)."""
        if launch["kind"] != "matmul":
            return 0.0
        n, k = self.weight_shapes[launch["args"][1]["weight"]]
        return 2.0 * n * k

    def report(self) -> str:
        lines = []
        for program, entry in self.summary().items():
            lines.append(
                f"{program}: {entry['calls']} call(s), {entry['tokens']} token(s), {entry['seconds'] * 1e3:.2f} ms, "
                f"{self.threads} thread(s)"
            )
            lines += kinds_table(entry["kinds"], "GFLOP/s", 1e9, 0)
            busy = ", ".join(f"{share:.0%}" for share in entry["thread_busy"])
            lines.append(f"  thread busy share: {busy}")
        return "\n".join(lines)


# Dense bf16 tensor-core peaks (FLOP/s) of the GPUs the profile names its share of: NVIDIA's H100 / H200 SXM
# datasheets (989.4 TFLOPS BF16 without sparsity) and AMD's MI300X (1307.4 TFLOPS BF16).
BF16_PEAKS = {"H100": 989.4e12, "H200": 989.4e12, "MI300X": 1307.4e12}


def launch_flops(launch: Mapping[str, Any], weights: Mapping[str, Any], states: Mapping[str, Any], tokens: int,
                 position: int) -> float:  # fmt: skip
    """A launch's FLOPs (2 per multiply-add) for the kinds whose count is their arguments' shapes: a GEMM's 2 T
    N K, causal attention's 4 H D (T p + T (T + 1) / 2) (QKᵀ and P V over the keys each query sees, from
    position p; the decode step's split attention: 4 H D (p + 1)); 0 for the rest."""
    args = launch["args"]
    if launch["kind"] == "matmul":
        n, k = weights[args[1]["weight"]]["shape"]
        return 2.0 * tokens * n * k
    if launch["kind"] == "attention":
        head_dim = states[args[1]["state"]]["shape"][2]
        heads = args[3]["features"] // head_dim
        return 4.0 * heads * head_dim * (tokens * position + tokens * (tokens + 1) / 2)
    if launch["kind"] == "attention_split":  # the decode step's: one token over keys [0, position]
        _, kv_heads, head_dim = states[args[1]["state"]]["shape"]
        heads = args[0]["features"] // head_dim - 2 * kv_heads  # qkv: (Hq + 2 Hkv) D per token
        return 4.0 * heads * head_dim * (position + 1)
    return 0.0


@dataclass
class GpuProgramProfile:
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0  # wall time of the calls (launch, synchronize, logits downloaded)
    launch_seconds: np.ndarray | None = None  # per launch, the device's time between its events, summed
    flops: np.ndarray | None = None  # per launch, summed over calls


@dataclass
class GpuProfiler:
    """tessera-run --profile on a GPU target: GpuSession records an event on the device's stream before the
    first launch of a program and after each launch (gpu_module.EventTimer), so each launch's time is the
    device's between two events. The report, per program: each kernel kind's launches, device time and share
    of the program's device time, and where its FLOPs follow from its shapes (GEMMs, attention) the achieved
    TFLOP/s and its share of the device's dense bf16 peak (BF16_PEAKS, where the device is listed)."""

    launches: Mapping[str, list[Mapping[str, Any]]]  # program -> its launch list (program.json)
    weights: Mapping[str, Any]  # program.json weights (shapes)
    states: Mapping[str, Any]  # program.json states (shapes)
    device: str
    programs: dict[str, GpuProgramProfile] = field(default_factory=lambda: defaultdict(GpuProgramProfile))

    @property
    def peak(self) -> float | None:
        return next((peak for name, peak in BF16_PEAKS.items() if name in self.device), None)

    def record(
        self, program: str, tokens: int, spans: Sequence[tuple[int, int]], launch_seconds: list[float], seconds: float
    ) -> None:
        """One call of `program` on `tokens` tokens: per launch, the (rows, position) it ran on (a last-only
        prefill runs its row tail on one row) and the device's seconds; `seconds` the call's wall time."""
        launches = self.launches[program]
        flops = np.array([
            launch_flops(launch, self.weights, self.states, rows, position)
            for launch, (rows, position) in zip(launches, spans, strict=True)
        ])  # fmt: skip
        times = np.asarray(launch_seconds, np.float64)
        profile = self.programs[program]
        profile.calls += 1
        profile.tokens += tokens
        profile.seconds += seconds
        profile.launch_seconds = times if profile.launch_seconds is None else profile.launch_seconds + times
        profile.flops = flops if profile.flops is None else profile.flops + flops

    def summary(self) -> dict[str, Any]:
        """Per program: calls, tokens, wall and device seconds, and per kernel kind launches, seconds, share
        of the device time and, where counted, FLOP/s (and its share of the bf16 peak)."""
        out: dict[str, Any] = {}
        for program, profile in self.programs.items():
            if not profile.calls or profile.launch_seconds is None or profile.flops is None:
                continue
            device_seconds = float(profile.launch_seconds.sum())
            kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # launches, seconds, FLOPs
            for launch, seconds, flops in zip(self.launches[program], profile.launch_seconds, profile.flops,
                                              strict=True):  # fmt: skip
                kinds[launch["kind"]][0] += profile.calls
                kinds[launch["kind"]][1] += float(seconds)
                kinds[launch["kind"]][2] += float(flops)
            rows: dict[str, Any] = {}
            for kind, (count, seconds, flops) in sorted(kinds.items(), key=lambda item: -item[1][1]):
                row: dict[str, Any] = {"launches": int(count), "seconds": seconds,
                                       "share": seconds / device_seconds if device_seconds else 0.0}  # fmt: skip
                if flops and seconds:
                    row["flops_per_s"] = flops / seconds
                    if self.peak is not None:
                        row["of_peak"] = row["flops_per_s"] / self.peak
                rows[kind] = row
            out[program] = {"calls": profile.calls, "tokens": profile.tokens, "seconds": profile.seconds,
                            "device_seconds": device_seconds, "kinds": rows}  # fmt: skip
        return out

    def report(self) -> str:
        lines = []
        for program, entry in self.summary().items():
            lines.append(
                f"{program}: {entry['calls']} call(s), {entry['tokens']} token(s), {entry['seconds'] * 1e3:.2f} ms "
                f"({entry['device_seconds'] * 1e3:.2f} ms of launches), {self.device}"
            )
            lines += kinds_table(entry["kinds"], "TFLOP/s", 1e12, 2)
        return "\n".join(lines)


def kinds_table(kinds: Mapping[str, Mapping[str, Any]], rate: str, unit: float, decimals: int) -> list[str]:
    """A profile's per-kind rows: launches, ms, share, the achieved rate in `unit` FLOP/s where counted and its
    share of the device's peak where known."""
    peak = f" {'of peak':>8}" if any("of_peak" in row for row in kinds.values()) else ""
    lines = [f"  {'kernel kind':<16} {'launches':>9} {'ms':>10} {'share':>7} {rate:>9}{peak}"]
    for kind, row in kinds.items():
        line = f"  {kind:<16} {row['launches']:>9} {row['seconds'] * 1e3:>10.3f} {row['share']:>7.1%}"
        if "flops_per_s" in row:
            line += f" {row['flops_per_s'] / unit:>9.{decimals}f}"
            line += f" {row['of_peak']:>8.1%}" if "of_peak" in row else ""
        lines.append(line)
    return lines
