"""Prints the relative error of every HF-parity comparison in test/test_hf_contract.py (not a test).

python benchmarks/hf_parity_errors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))

import test_hf_contract  # noqa: E402

measured: list[float] = []
_relative_error = test_hf_contract.relative_error


def _recording(actual: np.ndarray, expected: np.ndarray) -> float:
    error = _relative_error(actual, expected)
    measured.append(error)
    return error


test_hf_contract.relative_error = _recording
pytest.main(["-q", "-p", "no:cacheprovider", str(ROOT / "test" / "test_hf_contract.py")])
print("relative errors:", [f"{e:.1e}" for e in measured], f"max {max(measured):.2e}")
