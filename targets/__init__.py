"""Targets: one backend per hardware family, each an ordered list of stages from Graph-IR down
(targets/backend.py), all run by one compiler (targets/compiler.py).

A backend is looked up by the name users pass to `--target`; the registry maps names to classes
lazily so that asking for one target never imports another's toolchain.
"""

from __future__ import annotations

import importlib
from typing import Any

from tessera.errors import TesseraError
from tessera.targets.backend import Backend

_BACKENDS = {
    "reference": "tessera.targets.reference:ReferenceBackend",
    "x86": "tessera.targets.x86:X86Backend",
    "rocdl": "tessera.targets.rocdl:RocdlBackend",
    "nvvm": "tessera.targets.nvvm:NvvmBackend",
}
# Named in configs and the README, built by later work: a clear message instead of "unknown".
_PLANNED: tuple[str, ...] = ()


def target_names() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def get_backend(name: str) -> Backend[Any]:
    target = _BACKENDS.get(name)
    if target is None:
        if name in _PLANNED:
            raise TesseraError(
                f"target '{name}' is not available in this build of Tessera (available: {', '.join(_BACKENDS)})"
            )
        raise TesseraError(f"unknown target '{name}' (known: {', '.join(_BACKENDS)})")
    return _backend_class(target)()


def emittable_stages() -> tuple[str, ...]:
    """Every stage whose IR some target prints (`tessera-compile --emit`): graph, then each target's in order.
    It imports every target's module, which is cheap: their toolchains load only when a stage runs."""
    names = dict.fromkeys(["graph"])
    for target in _BACKENDS.values():
        names.update(dict.fromkeys(stage.name for stage in _backend_class(target).stages if stage.file is not None))
    return tuple(names)


def _backend_class(target: str) -> type[Backend[Any]]:
    module_name, class_name = target.split(":")
    backend: type[Backend[Any]] = getattr(importlib.import_module(module_name), class_name)
    return backend
