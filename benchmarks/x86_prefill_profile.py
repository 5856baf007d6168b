"""Where an x86 prefill's time goes, warm (not a test): the session's profiler around repeated prefills.

    python benchmarks/x86_prefill_profile.py OUT [--prompt 512] [--warmup 3] [--calls 3]

OUT is a compiled artifact (tessera-compile ... --target x86). After --warmup prefills of a random prompt (the
arena and caches settled; `tessera-run --profile` shows a single, cold one), the profiler
(X86Session.start_profiling) measures --calls more: the per-kind table of `tessera-run --profile`, then each
kernel's time per prompt and, for GEMMs, its achieved TFLOP/s (2 x tokens x N K over its time).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from checkout import make_tessera_importable

make_tessera_importable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()

    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.x86_session import X86Session

    session = X86Session.open(read_artifact(args.artifact))
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, 1000, args.prompt)]
    for _ in range(args.warmup):
        session.reset()
        session.prefill(prompt)
    profiler = session.start_profiling()
    for _ in range(args.calls):
        session.reset()
        session.prefill(prompt)
    print(f"{session.kernels.how}\n{profiler.report()}\n")

    measured = profiler.programs["prefill"]
    assert measured.launch_ticks is not None
    seconds_per_tick = measured.seconds / measured.ticks
    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # launches, seconds, FLOPs per prompt
    weights = session.program["weights"]
    for launch, ticks in zip(profiler.launches["prefill"], measured.launch_ticks, strict=True):
        row = kernels[launch["kernel"]]
        row[0] += 1
        row[1] += float(ticks) * seconds_per_tick / measured.calls
        if launch["kind"] == "matmul":
            n, k = weights[launch["args"][1]["weight"]]["shape"]
            row[2] += 2.0 * args.prompt * n * k
    print(f"per kernel, one prompt of {args.prompt} tokens ({measured.seconds / measured.calls * 1e3:.1f} ms):")
    for name, (launches, seconds, flops) in sorted(kernels.items(), key=lambda item: -item[1][1]):
        rate = f" {flops / seconds / 1e12:6.2f} TFLOP/s" if flops else ""
        print(f"  {name:58s} {launches:3.0f} {seconds * 1e3:8.2f} ms{rate}")


if __name__ == "__main__":
    main()
