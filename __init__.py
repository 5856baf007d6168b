"""Tessera: an MLIR-based compiler for NVIDIA's Nemotron-H hybrid Mamba/attention models.

The public API is imported lazily: `import tessera` (and `tessera.runtime`) loads neither xDSL
nor the MLIR bindings, so compiled models run where only numpy and safetensors are installed.

    >>> import tessera
    >>> spec = tessera.load_model("configs/nemotron_h_tiny.yaml")
    >>> module = tessera.build_graph(spec.config)          # a tessera.graph module (xDSL)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute", resolved on first use
_LAZY = {
    "TesseraError": "tessera.errors:TesseraError",
    "ModelConfig": "tessera.model.config:ModelConfig",
    "ModelSpec": "tessera.model.config:ModelSpec",
    "CompileOptions": "tessera.model.config:CompileOptions",
    "load_model": "tessera.frontend.config:load_model",
    "param_count": "tessera.model.weights_layout:param_count",
    "build_graph": "tessera.frontend.graph_builder:build_graph",
    "convert_checkpoint": "tessera.frontend.checkpoint:convert_checkpoint",
    "export_checkpoint": "tessera.frontend.checkpoint:export_checkpoint",
    "ReferenceExecutor": "tessera.reference.executor:ReferenceExecutor",
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'tessera' has no attribute {name!r}")
    module_name, attribute = target.split(":")
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
