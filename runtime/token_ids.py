"""What every session checks of the token ids it is given, before any kernel runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tessera.errors import TesseraError


class RunError(TesseraError):
    """A program that cannot run with the inputs given (token ids, sequence length, missing kernels)."""


def checked_ids(input_ids: Sequence[int], vocab_size: int, position: int, max_seq_len: int | None) -> np.ndarray:
    """The ids as int64, refused in one line when empty, outside the vocabulary, or past the KV cache."""
    ids = np.asarray(input_ids, np.int64).reshape(-1)
    if ids.size == 0:
        raise RunError("empty prompt")
    bad = ids[(ids < 0) | (ids >= vocab_size)]
    if bad.size:
        raise RunError(f"token id {int(bad[0])} is outside the vocabulary [0, {vocab_size})")
    if max_seq_len is not None and position + ids.size > max_seq_len:
        raise RunError(
            f"the sequence would reach {position + ids.size} tokens, beyond the compiled maximum of "
            f"{max_seq_len} (compile with a larger --max-seq-len)"
        )
    return ids


def kv_capacity(states: dict[str, dict[str, object]]) -> int | None:
    """Positions the program's KV caches hold (None: no attention layer, no limit)."""
    capacities = [int(entry["shape"][0]) for entry in states.values() if entry["kind"] == "k_cache"]  # type: ignore[index]
    return min(capacities) if capacities else None
