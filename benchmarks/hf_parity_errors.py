"""Prints the relative error of every HF-parity comparison in test/test_hf_contract.py (not a test).

python benchmarks/hf_parity_errors.py
"""

import sys

import pytest

sys.path.insert(0, "test")
import test_hf_contract as t

orig = t.relative_error
worst = []


def rec(a, b):
    r = orig(a, b)
    worst.append(r)
    return r


t.relative_error = rec
pytest.main(["-q", "-p", "no:cacheprovider", "test/test_hf_contract.py"])
print("relative errors:", ["%.1e" % w for w in worst], "max %.2e" % max(worst))
