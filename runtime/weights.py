"""The weights a compiled program reads, prepared once at load: fused, packed and converted.

program.json says, per weight, its shape, whether it is a concatenation of layout tensors (`parts`: the
fused QKV projection) and how a GEMM reads it (`packing`: panels of `nr` output columns, [panels, K, nr],
zero past N; float32 or bfloat16 bits). This module only moves and rounds numbers — the layout itself is
the GEMM kernel's (lowering/x86/gemm.py), recorded in program.json, so no compiler import is needed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tessera.errors import TesseraError


class WeightError(TesseraError):
    """Weights that do not match the compiled program (missing, or of another shape)."""


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounded to nearest even; NaN stays NaN."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    bits = values.view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) >> 16
    return np.where(np.isnan(values), (bits >> 16) | 0x40, rounded).astype(np.uint16)


def pack_panels(weight: np.ndarray, nr: int, dtype: str) -> np.ndarray:
    """W [N, K] (nn.Linear layout) -> [ceil(N / nr), K, nr], zero-padded past N."""
    n, k = weight.shape
    panels = -(-n // nr)
    padded = np.zeros((panels * nr, k), np.float32)
    padded[:n] = weight
    packed = np.ascontiguousarray(padded.reshape(panels, nr, k).transpose(0, 2, 1))
    return bf16_bits(packed) if dtype == "bf16" else packed


def prepare_weights(
    entries: Mapping[str, Mapping[str, Any]], weights: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    prepared: dict[str, np.ndarray] = {}
    for name, entry in entries.items():
        parts = entry.get("parts") or [name]
        for part in parts:
            if part not in weights:
                raise WeightError(f"weight '{part}' is missing (the program reads it)")
        array = np.concatenate([np.asarray(weights[p], np.float32) for p in parts]) if len(parts) > 1 else weights[name]
        array = np.ascontiguousarray(array, np.float32)
        if list(array.shape) != list(entry["shape"]):
            raise WeightError(
                f"weight '{name}' has shape {list(array.shape)}, the program expects {list(entry['shape'])}"
            )
        packing = entry.get("packing")
        if packing is not None:
            array = pack_panels(array, int(packing["nr"]), packing["dtype"])
        prepared[name] = array
    return prepared
