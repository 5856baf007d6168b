"""A whole ROCDL program — every kernel of a compiled model, in launch order, with the state carried on the
"device" between calls — run through GpuSession on the ISA simulator, against the reference executor.
This is what runtime/hip.py would run on an AMD GPU; here the device is test/kernels/rocdl_sim.py.
The tiny config has every layer kind (M, *, -, E); configs/nemotron_h_mid_moe.yaml in fp32 passes too
(within 1e-4) but takes about 4 minutes on the simulator, too long for every CI run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import NEEDS_MLIR, run_tool
from sim_driver import SimulatedDriver

pytestmark = NEEDS_MLIR

CONFIGS = Path(__file__).parent.parent.parent / "configs"
PROMPT = [5, 7, 9, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43]


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert np.isfinite(actual).all(), "NaN / inf in the logits"
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize(("config", "precision", "bound"), [
    ("nemotron_h_tiny.yaml", "fp32", 1e-4),
    ("nemotron_h_tiny.yaml", "bf16", 2e-2),
])  # fmt: skip
def test_whole_program_matches_the_reference(tmp_path: Path, config: str, precision: str, bound: float) -> None:
    from tessera.model.config import config_from_dict
    from tessera.model.weight_init import random_weights
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_session import GpuSession
    from tessera.targets.reference import ReferenceSession

    out = tmp_path / "out"
    run_tool("tessera_compile", CONFIGS / config, "--target", "rocdl", "--precision", precision,
             "--max-seq-len", "32", "-o", out, "-q")  # fmt: skip
    artifact = read_artifact(out)
    program = json.loads((out / "rocdl" / "program.json").read_text())
    config_ = config_from_dict(artifact.config, str(out / "tessera.json"), strict=False)
    weights = random_weights(config_, int(artifact.weights.get("seed", 0)))
    driver = SimulatedDriver()
    session = GpuSession(program, driver, driver.load_module((out / "rocdl" / "kernels.mlir").read_bytes()), weights)
    reference = ReferenceSession.open(artifact)

    expected = reference.prefill(PROMPT[:9])
    assert relative_error(session.prefill(PROMPT[:9]), expected) <= bound
    # A second prefill piece and two decode steps continue the same sequence from the device state.
    assert relative_error(session.prefill(PROMPT[9:]), reference.prefill(PROMPT[9:])) <= bound
    for token in (3, 4):
        assert relative_error(session.decode(token), reference.decode(token)) <= bound
    assert driver.launches == sum(len(p["launches"]) for p in program["programs"].values()) * 2
    # Past the KV cache (32 positions here) is refused before any kernel runs, as on x86.
    from tessera.runtime.token_ids import RunError

    with pytest.raises(RunError, match="beyond the compiled maximum of 32"):
        session.prefill(list(range(1, 20)))
    assert driver.launches == sum(len(p["launches"]) for p in program["programs"].values()) * 2
