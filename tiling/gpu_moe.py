"""GPU tiling policies: moe kernels (written with their ROCDL emitters in lowering/rocdl/moe.py).

moe_experts: a workgroup per (expert, group of `tokens_per_group` tokens) takes the slots of those tokens
routed to its expert, 16 at a time (`rows`), and computes their expert outputs with the expert's weights
read straight from global memory into matrix fragments (each weight element is used by the 16 rows of one
instruction, so staging weights in the scratchpad would buy no reuse). Its scratchpad holds:

    slots        [slot_capacity] the slot numbers found so far (i32 bits in f32 words)
    slot_counts  [waves]         each wave's matches in one scan step (i32 bits)
    x            [16, block_k]   the 16 rows' gathered x, one K block, as the matrix element (row padded)
    partial      [waves, 16, block_l] each wave's partial output block (f32, row padded), summed over waves

The hidden activations never leave registers: each wave keeps its share of ffn as accumulators, which
become the down product's A fragments (lowering/rocdl/moe.py). So the footprint does not grow with ffn or
latent: 29024 bytes on CDNA for every config and precision (13408 on Hopper).

Tiles: `threads`, `rows` (16), `block_k` (x columns per stage: one `group` vector per thread), `block_l`
(output columns per reduction step: one per thread over 16 rows), `group` (matrix elements per 16-byte
vector), `tokens_per_group`, `slot_capacity`, and the MFMA shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice, elementwise, load, mma, reduce, store
from tessera.tiling.gpu import GpuPolicy, matrix_element

ROWS = 16  # routed rows per block: the M of one 16x16 matrix tile
WAVES = 8  # waves (warps) per workgroup
VECTOR_BYTES = 16  # one global / scratchpad vector per lane: a dwordx4
# Expected routed rows per workgroup (tokens_per_group * top_k / num_experts): enough to fill a few blocks of
# 16, so that most blocks are whole (each block streams the expert's weights once).
ROWS_PER_GROUP = 32


def _element_bytes(element: str) -> int:
    return 2 if element == "bf16" else 4


def _row_pad(element: str, arch: GpuArch) -> int:
    """Elements after each LDS row read by 16-byte lane vectors down 16 rows: 16 bytes, so that the 8 lanes
    of one ds_read_b128 pass (8 rows) start 4 banks apart and cover the 32 banks once. Hopper: none."""
    return VECTOR_BYTES // _element_bytes(element) if arch.vendor == "amd" else 0


def _moe_experts(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    experts, top_k, ffn = int(dims["num_experts"]), int(dims["top_k"]), int(dims["ffn"])
    element = matrix_element(precision)
    space = arch.scratch_space
    threads = WAVES * arch.wave_size
    group = VECTOR_BYTES // _element_bytes(element)  # elements of one lane vector: 8 bf16, 4 f32
    block_k = threads * group // ROWS  # one x vector per thread per stage
    block_l = threads // ROWS  # one output per thread per reduction step
    slot_capacity = threads + ROWS  # < 16 pending + one scan step of `threads` slots
    per_group = -(-ROWS_PER_GROUP * experts // top_k)
    tokens_per_group = -(-per_group // 64) * 64
    ffn_span = -(-ffn // (4 * group * WAVES)) * 4 * group * WAVES  # every wave's ffn share, whole groups
    body = [
        load("slots", [slot_capacity], space, "f32"),
        load("slot_counts", [WAVES], space, "f32"),
        load("x", [ROWS, block_k], space, element, _row_pad(element, arch)),
        load("experts_up", [ROWS, 4 * group], "registers", element),
        mma(ffn_span, ROWS, block_k, element, element),
        elementwise("relu2"),
        load("experts_down", [ROWS, 4 * group], "registers", element),
        mma(ROWS, block_l, ffn_span, element, element),
        load("partial", [WAVES, ROWS, block_l], space, "f32", 4 if arch.vendor == "amd" else 0),
        reduce("sum", axis=0),
        store("contrib", [ROWS, block_l]),
    ]
    tiles = {
        "threads": threads,
        "rows": ROWS,
        "block_k": block_k,
        "block_l": block_l,
        "group": group,
        "tokens_per_group": tokens_per_group,
        "slot_capacity": slot_capacity,
    }
    instruction = arch.instruction(element)
    if instruction is not None:
        tiles |= {"mma_m": instruction.m, "mma_n": instruction.n, "mma_k": instruction.k}
    # kernels/moe.py's moe_experts is written for a CPU (whole-GEMM steps over main-memory scratch rows): the
    # GPUs keep their emitter (lowering/rocdl/moe.py) until the experts are a grouped GEMM of tile mmas.
    return TileChoice(tiles, body, emitter=True)


POLICIES: dict[str, GpuPolicy] = {"moe_experts": _moe_experts}
