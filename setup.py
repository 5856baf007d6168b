"""Package discovery for the one shape setuptools' own cannot express: the repository root IS `tessera`.

`[tool.setuptools.packages.find]` names what it finds relative to its `where` folder ("lowering.gpu") and has
no prefix option, so it cannot map the root to `tessera`; a hand-kept list in pyproject.toml went stale (the
GPU lowerings were missing from the wheel). Here every folder with an `__init__.py` under the root is a
`tessera.` subpackage, found at build time; the metadata, package-dir and package-data stay in pyproject.toml.
test/ and benchmarks/ are no packages, and are excluded by name too in case one becomes one.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

NOT_SHIPPED = ("test", "test.*", "benchmarks", "benchmarks.*", "build", "build.*", "docs", "docs.*", "out", "out.*")


class BuildPy(build_py):
    """build_py without this script: it lies in the root, so it would ship as the module `tessera.setup`
    (distutils skips its setup script by name, which under a PEP 517 build is the backend's, not this one)."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [entry for entry in modules if entry[:2] != ("tessera", "setup")]


setup(
    packages=["tessera", *(f"tessera.{name}" for name in find_packages(where=".", exclude=NOT_SHIPPED))],
    cmdclass={"build_py": BuildPy},
)
