"""`import tessera` from a bare copy of the checkout, for the scripts that run on a lent machine where Tessera
is not installed (benchmarks/amx_host.py, benchmarks/h100_gemm.py): the repository root is the package,
whatever its folder is called there, so a link named tessera in a scratch folder goes on sys.path."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_tessera_importable() -> None:
    try:
        import tessera  # noqa: F401
    except ImportError:
        scratch = Path(tempfile.mkdtemp(prefix="tessera-path-"))
        (scratch / "tessera").symlink_to(ROOT, target_is_directory=True)
        sys.path.insert(0, str(scratch))
