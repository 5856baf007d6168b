# ruff: noqa: F821  (lit injects `config`)
# lit configuration: every .mlir under test/ runs its RUN lines with tessera-opt and FileCheck.
import os
import shutil
import sys

import lit.formats

config.name = "Tessera"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["inputs", "Output"]

# The tools of the Python environment running lit (the project's venv).
bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, config.environment.get("PATH", os.environ.get("PATH", ""))])
# lit passes few variables through: keep PYTHONPATH, so that the tools import the tessera this lit run is
# testing (a worktree's, say) rather than whichever is installed.
if "PYTHONPATH" in os.environ:
    config.environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
config.substitutions.append(("%python", sys.executable))
config.substitutions.append(("%root", os.path.dirname(config.test_source_root)))
# The `filecheck` package is a Python FileCheck; LLVM's own is used where installed.
filecheck = shutil.which("FileCheck") or os.path.join(bin_dir, "filecheck")
config.substitutions.append(("FileCheck", filecheck))
