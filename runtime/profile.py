"""The x86 profile (`tessera-run --profile`): what the instrumented native programs measured.

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
from collections.abc import Mapping
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
            lines.append(f"  {'kernel kind':<16} {'launches':>9} {'ms':>10} {'share':>7} {'GFLOP/s':>9}")
            for kind, row in entry["kinds"].items():
                rate = f"{row['flops_per_s'] / 1e9:>9.0f}" if "flops_per_s" in row else ""
                line = f"  {kind:<16} {row['launches']:>9} {row['seconds'] * 1e3:>10.3f} {row['share']:>7.1%} {rate}"
                lines.append(line.rstrip())
            busy = ", ".join(f"{share:.0%}" for share in entry["thread_busy"])
            lines.append(f"  thread busy share: {busy}")
        return "\n".join(lines)
