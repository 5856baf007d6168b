"""The package's layering, as its imports show it (lazy imports inside functions included): each layer may use
those below it only. `model/` and `toolchain.py` are leaves the rest builds on; the runtime loads compiled
artifacts without the compiler; lowering/ runs as passes without the targets that drive it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPILER = ("frontend", "dialects", "passes", "lowering", "kernels", "tiling", "interpreters", "targets", "tools")
# A layer (a folder, or a module at the root) -> the layers it must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "model": (*COMPILER, "runtime", "reference"),
    "toolchain": (*COMPILER, "runtime", "model", "reference"),
    "runtime": COMPILER,
    "dialects": ("frontend", "passes", "lowering", "kernels", "tiling", "targets", "tools", "runtime"),
    "kernels": ("lowering", "targets", "tools"),
    "passes": ("lowering", "targets", "tools"),
    # The compiler may read the runtime's formats (program.json's, the weight packings): they are the contract
    # between the two, kept on the runtime's side so that it needs nothing of the compiler.
    "lowering": ("targets", "tools", "frontend"),
}


def _layer(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tessera" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_lies_below_it(layer: str) -> None:
    files = [ROOT / f"{layer}.py"] if (ROOT / f"{layer}.py").is_file() else sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no module for layer {layer}"
    violations = [
        f"{path.relative_to(ROOT)} imports tessera.{used}"
        for path in files
        for used in sorted(_imported_layers(path) & set(FORBIDDEN[layer]))
    ]
    assert not violations, "\n".join(violations)
