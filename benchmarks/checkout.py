"""What the scripts that run on a lent machine share (benchmarks/amx_host.py, hopper.py and its parts):
`import tessera` from a bare copy of the checkout where Tessera is not installed (the repository root is the
package, whatever its folder is called there, so a link named tessera in a scratch folder goes on sys.path),
their command line, and transformers' wheels, downloaded here and installed offline there (the lent host
reaches no registry)."""

from __future__ import annotations

import argparse
import subprocess
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


TRANSFORMERS = "transformers==5.23.0"  # the test extra's pin (pyproject.toml): the oracle the tests use
_THERE_ALREADY = ("torch", "numpy", "safetensors", "triton")  # installed on the lent machines (and large)


def download_transformers(wheels: Path) -> None:
    """transformers' wheels and what it needs for Python 3.12 into `wheels`, less what is installed there."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.12",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64", "-d", str(wheels),
         TRANSFORMERS],
        check=True,
    )  # fmt: skip
    for wheel in wheels.glob("*"):
        if wheel.name.split("-")[0].lower() in _THERE_ALREADY or wheel.name.startswith("nvidia"):
            wheel.unlink()


def install_wheels(wheels: Path, site: Path) -> str | None:
    """The carried wheels installed offline into `site` (put it first on sys.path); an error line, or None."""
    if site.exists():
        return None
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "--target",
         str(site), "--no-deps", *map(str, wheels.glob("*.whl"))],
        capture_output=True, text=True,
    )  # fmt: skip
    if install.returncode != 0:
        return f"installing the carried wheels failed: {install.stderr.strip()[-300:]}"
    return None


def trim_for_carrying(artifact: Path, target: str) -> None:
    """Leave out of a GPU artifact the stage dumps a session never reads (LLVM IR, MLIR, PTX where a cubin is
    the code object, SASS): only tessera.json, program.json and the code object travel (a call carries 64 MiB)."""
    import json

    entry = json.loads((artifact / "tessera.json").read_text())["targets"][target]
    kept = {artifact / entry["program"], artifact / entry["code_object"]}
    for path in (artifact / target).iterdir():
        if path not in kept:
            path.unlink()
