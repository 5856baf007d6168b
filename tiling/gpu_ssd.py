"""GPU tiling policies: ssd_scan (CDNA: the chunked scan of its ROCDL emitter, lowering/rocdl/ssd.py; Hopper:
kernels/mamba.py's recurrence form until its WGMMA scan).

ssd_scan (the chunked SSD of a prefill): a workgroup owns one head and `block_p` of its P channels (columns
of y and rows of the state are independent of one another) and walks the call's chunks of L tokens in order.
Within a chunk the L rows are processed in row blocks of `block_rows` (CDNA: 32, or 16 for L <= 16, 4 waves
sharing each product's 16x16 MFMA tiles; Hopper, planned only: 64, a warpgroup's WGMMA rows): per row
block I the scores C_I·B_Jᵀ of each J <= I, masked and decayed, times (dt x)_J; C_I times the state
entering the chunk; and after all row blocks the state update Bᵀ·(decay dt x) over every J. What sits in
the scratchpad (every tile in the matrix element type unless said):

    C          [block_rows, N]         C rows of the row block I
    B          [block_rows, N]         B rows of the column block J
    x          [block_p, block_rows]   (dt x)_J or (decay dt x)_J, transposed (K = the token, contiguous)
    scores     [block_rows, block_rows] C_I·B_Jᵀ ∘ decay ∘ causal
    ssm_state  [block_p, N]            the state entering the chunk, as an operand (the f32 state itself is
                                       held in the state update's accumulators, in registers)
    cum_hi, cum_lo, dt  [chunk] f32    the cumulative log-decay as an f32 hi/lo pair, and dt

N is padded to 16 and the chunk to a whole number of row blocks. `block_p` is the largest multiple of 16
that fits the scratchpad, then evened out over the blocks a head needs (Nano-12B, P = 80, N = L = 128 on
CDNA: fp32 3 blocks of 32 channels, 59,520 bytes; bf16 one block of 80, 47,616 bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.errors import TesseraError
from tessera.tiling.choice import TileChoice, elementwise, load, mma, scan, store
from tessera.tiling.gpu import GpuPolicy, bank_pad, matrix_element

_WAVES = 4  # CDNA: 4 waves share a workgroup's MFMA tiles
# Hopper's scan as the recurrence: state rows per program (a warp); 8 keeps about as many warps busy per head as
# the 8-warp workgroup per head it replaced.
RECURRENCE_ROWS = 8


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def scan_tiles(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> dict[str, int]:
    """The ssd_scan tile sizes: block_rows, block_p, the padded state and chunk, threads."""
    p, n, chunk = int(dims["head_dim"]), int(dims["state_size"]), int(dims["chunk_size"])
    element = matrix_element(precision)
    size = 2 if element == "bf16" else 4
    pad = bank_pad(element, arch)
    padded_n, padded_p = _ceil_to(n, 16), _ceil_to(p, 16)
    if arch.vendor == "amd":
        rows, threads = min(32, _ceil_to(chunk, 16)), _WAVES * arch.wave_size
    else:  # a warpgroup's m64 rows (WGMMA), two warpgroups
        rows, threads = min(64, _ceil_to(chunk, 16)), 256
    padded_chunk = _ceil_to(chunk, rows)
    fixed = (2 * rows * (padded_n + pad) + rows * (rows + pad)) * size + 3 * padded_chunk * 4
    per_channel = ((rows + pad) + (padded_n + pad)) * size
    fitting = (arch.scratch_limit - fixed) // per_channel // 16 * 16
    if fitting < 16:
        raise TesseraError(
            f"ssd_scan: chunk {chunk}, state {n} leave no room for 16 channels in {arch.name}'s scratchpad"
        )
    blocks = -(-padded_p // min(fitting, padded_p))
    block_p = _ceil_to(-(-padded_p // blocks), 16)
    return {
        "chunk": chunk,
        "padded_chunk": padded_chunk,
        "padded_state": padded_n,
        "block_rows": rows,
        "block_p": block_p,
        "threads": threads,
    }


def _ssd_scan(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    if arch.vendor == "nvidia":
        return _ssd_recurrence(dims, arch)
    tiles = scan_tiles(dims, precision, arch)
    rows, block_p, padded_n, padded_chunk = (
        tiles[k] for k in ("block_rows", "block_p", "padded_state", "padded_chunk")
    )
    element = matrix_element(precision)
    pad, space = bank_pad(element, arch), arch.scratch_space
    state = str(dims["state_dtype"])
    body = [
        load("C", [rows, padded_n], space, element, pad),
        load("B", [rows, padded_n], space, element, pad),
        load("x", [block_p, rows], space, element, pad),
        load("scores", [rows, rows], space, element, pad),
        load("ssm_state", [block_p, padded_n], space, element, pad),
        load("cum_hi", [padded_chunk], space, "f32"),
        load("cum_lo", [padded_chunk], space, "f32"),
        load("dt", [padded_chunk], space, "f32"),
        elementwise("softplus"),
        scan("cumsum_log_decay"),
        mma(rows, rows, padded_n, element, element),  # C_I·B_Jᵀ
        elementwise("decay_causal_mask"),
        mma(rows, block_p, rows, element, element),  # scores·(dt x)_J
        mma(rows, block_p, padded_n, element, element),  # C_I·stateᵀ
        mma(block_p, padded_n, rows, element, element),  # state += (decay dt x)ᵀ·B
        store("y", [rows, block_p]),
        store("ssm_state", [block_p, int(dims["state_size"])], element=state),
    ]
    instruction = arch.instruction(element)
    if instruction is not None:
        tiles |= {"mma_m": instruction.m, "mma_n": instruction.n, "mma_k": instruction.k}
    return TileChoice(tiles, body, emitter=True)


def _ssd_recurrence(dims: Mapping[str, Any], arch: GpuArch) -> TileChoice:
    """Hopper, for now: kernels/mamba.py's ssd_scan_recurrence, a warp per head and RECURRENCE_ROWS of its
    state rows, a state element per lane, the rows staged as f32 in shared memory for the call. The chunked
    WGMMA scan replaces it (issue 14)."""
    blocks = -(-int(dims["head_dim"]) // RECURRENCE_ROWS)
    tiles = {"threads": arch.wave_size, "block": arch.wave_size, "rows": RECURRENCE_ROWS}
    return TileChoice(tiles, grid=int(dims["num_heads"]) * blocks, parallel="head_rows")


POLICIES: dict[str, GpuPolicy] = {"ssd_scan": _ssd_scan}
