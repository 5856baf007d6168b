"""What checking an artifact at open costs: the sha256 of the files a session uses, all recorded files, and
the program.json check (runtime/integrity.py, runtime/program_check.py). One JSON line per artifact.

    python benchmarks/artifact_integrity.py OUT [OUT ...]     # artifacts with an x86 target

Times are the best of five runs (the files in the page cache, as on a second open).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path


def best_of(function: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(path: Path) -> dict[str, object]:
    from tessera.manifest_json import read_manifest_json
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.program_check import FORMAT_VERSION, check_program
    from tessera.runtime.token_ids import RunError

    artifact = read_artifact(path)
    entry = artifact.targets["x86"]
    libraries = entry.get("libraries") or {"generic": entry["library"]}
    # What one open checks: program.json, and the LLVM IR (JIT) or one library (AOT), plus the AMX library
    # on a bf16 artifact on an AMX CPU.
    jit_open = [entry["program"], entry["llvm_ir"]]
    aot_open = [entry["program"], libraries.get("avx512", libraries["generic"])]
    program_path = artifact.file(entry["program"])
    program = read_manifest_json(program_path, "tessera-x86-program", FORMAT_VERSION, RunError, "missing")

    def check(names: list[str]) -> Callable[[], object]:
        return lambda: [artifact.checked(name) for name in names]

    def size(names: list[str]) -> int:
        return sum(int(artifact.files[name]["bytes"]) for name in names)

    return {
        "artifact": str(path),
        "launches": sum(len(body["launches"]) for body in program["programs"].values()),
        "jit_open_bytes": size(jit_open),
        "jit_open_hash_ms": round(best_of(check(jit_open)) * 1e3, 2),
        "aot_open_bytes": size(aot_open),
        "aot_open_hash_ms": round(best_of(check(aot_open)) * 1e3, 2),
        "all_files": len(artifact.files),
        "all_bytes": size(list(artifact.files)),
        "all_hash_ms": round(best_of(check(list(artifact.files))) * 1e3, 2),
        "program_check_ms": round(best_of(lambda: check_program(program, str(program_path), "x86")) * 1e3, 2),
    }


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(json.dumps(measure(Path(argument))))
