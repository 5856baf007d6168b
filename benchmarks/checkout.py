"""`import tessera` from a bare copy of the checkout, for the scripts that run on a lent machine where Tessera
is not installed (benchmarks/amx_host.py, benchmarks/h100_gemm.py): the repository root is the package,
whatever its folder is called there, so a link named tessera in a scratch folder goes on sys.path."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_tessera_importable() -> None:
    try:
        import tessera  # noqa: F401
    except ImportError:
        scratch = Path(tempfile.mkdtemp(prefix="tessera-path-"))
        (scratch / "tessera").symlink_to(ROOT, target_is_directory=True)
        sys.path.insert(0, str(scratch))


def prepare_or_check(
    script: str, doc: str, out: Path, prepare: Callable[[Path], None], check: Callable[[Path], int]
) -> int:
    """The command line of a lent-machine script: `prepare` here, `check` (the default) there, on --out."""
    parser = argparse.ArgumentParser(prog=f"benchmarks/{script}", description=doc.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "check"], nargs="?", default="check")
    parser.add_argument("--out", type=Path, default=out)
    options = parser.parse_args()
    if options.command == "prepare":
        prepare(options.out)
        return 0
    return check(options.out)
