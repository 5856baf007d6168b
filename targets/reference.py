"""The reference target: Graph-IR interpreted by the numpy executor (tessera.reference).

It is the executable specification every compiled target is checked against, so it adds no lowering:
its program is graph.mlir itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tessera.model.config import ModelSpec
from tessera.runtime.artifact import Artifact
from tessera.targets.backend import Backend, Job


class ReferenceBackend(Backend[Job]):
    """No stages: its program is graph.mlir itself, which every artifact carries."""

    name = "reference"
    job_type = Job

    def check(self, spec: ModelSpec) -> None:
        pass  # the executor runs whatever Graph-IR the builder accepted

    def manifest(self, job: Job) -> dict[str, Any]:
        return {"program": "graph.mlir", "stages": list(self.stage_names())}


class ReferenceSession:
    """Runs an artifact's Graph-IR with the numpy reference executor, carrying state between calls."""

    target = "reference"

    def __init__(self, executor: Any) -> None:
        self._executor = executor

    @classmethod
    def open(cls, artifact: Artifact) -> ReferenceSession:
        from tessera.dialects import MAX_MLIR_BYTES, parse_module
        from tessera.reference.executor import ReferenceExecutor
        from tessera.runtime.integrity import artifact_weights
        from tessera.safe_io import decode_text

        # Every artifact carries graph.mlir, so any of them can be checked against the reference.
        relative = artifact.targets.get("reference", {}).get("program", "graph.mlir")
        graph_path = artifact.file(relative, "targets.reference.program")
        module = parse_module(
            decode_text(artifact.checked_bytes(relative, "targets.reference.program", MAX_MLIR_BYTES), str(graph_path)),
            str(graph_path),
        )
        return cls(ReferenceExecutor(module, artifact_weights(artifact)))

    def prefill(self, input_ids: Sequence[int], last_only: bool = False) -> np.ndarray:
        logits = self._executor.prefill(input_ids)
        return logits[-1:] if last_only else logits

    def decode(self, token_id: int) -> np.ndarray:
        return self._executor.decode(token_id)
