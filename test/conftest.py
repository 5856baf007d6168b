"""Helpers the pytest files share: running a Tessera CLI, and the one-line error contract."""

from __future__ import annotations

import subprocess
import sys


def run_tool(module: str, *args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `python -m tessera.tools.<module> ARGS` as a user would; with ok, insist it succeeds."""
    result = subprocess.run(
        [sys.executable, "-m", f"tessera.tools.{module}", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """Bad input: a non-zero exit, no traceback, and exactly one stderr line holding every phrase."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
