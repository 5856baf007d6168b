"""The weights a compiled program reads, prepared once at load: fused, packed and converted.

program.json says, per weight, its shape, whether it is a concatenation of layout tensors (`parts`: the
fused QKV projection), whether an RMSNorm's scale is folded into its columns (`column_scale`: W diag(g),
one multiply per weight at load), and how a GEMM reads it (`packing`: panels of `nr` output columns,
[panels, K, nr], zero past N, for each matrix of a stack; float32 or bfloat16 bits). The layout itself is the GEMM kernel's
(kernels/gemm.py), recorded in program.json, so no compiler import is needed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tessera.errors import TesseraError


class WeightError(TesseraError):
    """Weights that do not match the compiled program (missing, or of another shape)."""


CACHE_LINE = 64


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | type, alignment: int = CACHE_LINE) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `alignment`-byte boundary.

    numpy's large arrays start 16 bytes into a page, so every 512-bit weight load would straddle two cache
    lines (measured up to 1.5x slower prefill)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounded to nearest even; NaN stays NaN."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    bits = values.view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) >> 16
    return np.where(np.isnan(values), (bits >> 16) | 0x40, rounded).astype(np.uint16)


def pack_panels(weight: np.ndarray, nr: int, dtype: str) -> np.ndarray:
    """W [N, K] (nn.Linear layout) -> packed[p, k, j] = W[p * nr + j, k], zero past N, 64-byte aligned;
    float32, or for "bf16" uint16 bfloat16 bits rounded to nearest even. A stack of matrices [..., N, K] (the
    MoE experts') packs each: [..., panels, K, nr]."""
    *stack, n, k = weight.shape
    panels = -(-n // nr)
    padded = np.zeros((*stack, panels * nr, k), np.float32)
    padded[..., :n, :] = weight
    packed = np.swapaxes(padded.reshape(*stack, panels, nr, k), -1, -2)
    values = bf16_bits(packed) if dtype == "bf16" else packed
    out = aligned_empty(values.shape, values.dtype)
    out[...] = values
    return out


def pack_pair_panels(weight: np.ndarray, nr: int) -> np.ndarray:
    """W [N, K] (K even) -> panels of nr columns with k in pairs, as AVX-512 BF16 dot products read them:
    packed[p, i, 2j + t] = bf16(W[p nr + j, 2i + t]), shape [ceil(N/nr), K/2, 2 nr] uint16, zero past N,
    64-byte aligned (kernels/gemm.py weight_layout with `pairs`)."""
    n, k = weight.shape
    panels = -(-n // nr)
    padded = np.zeros((panels * nr, k), np.float32)
    padded[:n] = weight
    values = bf16_bits(padded.reshape(panels, nr, k // 2, 2).transpose(0, 2, 1, 3).reshape(panels, k // 2, 2 * nr))
    out = aligned_empty(values.shape, values.dtype)
    out[...] = values
    return out


def pack_amx_vnni(weight: np.ndarray) -> np.ndarray:
    """W [N, K] -> the bf16 VNNI tiles AMX's tdpbf16ps reads as B: packed[p, r, 2j + t] = bf16(W[16p + j,
    2r + t]), shape [ceil(N/16), ceil(K/32) * 16, 32] uint16, zero past N and K, 64-byte aligned. Rows
    [16 kb, 16 kb + 16) of panel p are one 16 x 64-byte tile: K block kb (32 values of k, in pairs) of the
    panel's 16 output columns."""
    n, k = weight.shape
    panels, rows = -(-n // 16), -(-k // 32) * 16
    padded = np.zeros((panels * 16, rows * 2), np.float32)
    padded[:n, :k] = weight
    values = bf16_bits(padded.reshape(panels, 16, rows, 2).transpose(0, 2, 1, 3).reshape(panels, rows, 32))
    out = aligned_empty(values.shape, values.dtype)
    out[...] = values
    return out


def prepare_weights(
    entries: Mapping[str, Mapping[str, Any]],
    weights: Mapping[str, np.ndarray],
    matrix: str | None = None,
    matrix_weights: frozenset[str] = frozenset(),
) -> dict[str, np.ndarray]:
    """Each weight the program reads: its parts concatenated, a folded norm applied, packed as its kernels
    read it (`matrix_weights`: those read by the GEMMs' `matrix` variant, packed for it instead of in panels:
    amx as bf16 VNNI tiles, avx512bf16 as pair panels)."""
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
        scale = entry.get("column_scale")
        if scale is not None:
            # An RMSNorm folded into this projection: W' = W diag(g), so rstd * (h @ W'^T) = norm(h) @ W^T.
            if scale not in weights:
                raise WeightError(f"weight '{scale}' is missing (the program folds it into '{name}')")
            array = array * np.asarray(weights[scale], np.float32)[None, :]
        packing = entry.get("packing")
        if name in matrix_weights and matrix == "amx":
            array = pack_amx_vnni(array)
        elif name in matrix_weights and matrix == "avx512bf16":
            array = pack_pair_panels(array, int(packing["nr"]) if packing else 64)
        elif packing is not None and packing.get("layout") == "rows":  # GPU targets: [N, K] as it is
            array = bf16_bits(array) if packing["dtype"] == "bf16" else array
        elif packing is not None:
            array = pack_panels(array, int(packing["nr"]), packing["dtype"])
        prepared[name] = array
    return prepared
