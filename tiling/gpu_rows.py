"""GPU tiling policies of the SIMT kernels without a matrix instruction (written with their ROCDL emitters in
lowering/rocdl/rows.py and lowering/rocdl/mamba_simt.py): the per-token row kernels (embedding, rmsnorm,
rms_scale, gated_rmsnorm, moe_router, moe_combine), the KV-cache append, and the Mamba decode pieces
(conv_silu, ssd_step).

None of them allocates LDS: a row kernel is one wave (warp) per token striding over the row's features and
reducing with lane shuffles, conv_silu is a thread per channel, ssd_step a workgroup per head whose waves
each reduce one state row with shuffles. So every tile they load lives in "registers" (streamed through the
threads' registers, never counted as scratchpad) and their footprint is 0 on every GPU.

Tiles: `threads` (workgroup size: one wave of 64 on CDNA, one warp of 32 on Hopper, for the row kernels;
64 for conv_silu, a thread per channel; 256 for ssd_step, 4 waves / 8 warps per head), and
`rows_per_workgroup` / `channels_per_workgroup` / `heads_per_workgroup` for the unit one workgroup owns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.arch import GpuArch
from tessera.tiling.choice import TileChoice, elementwise, load, reduce, store
from tessera.tiling.gpu import GpuPolicy

REGISTERS = "registers"
CONV_THREADS = 64  # a thread per channel, a workgroup of 64 channels
SSD_STEP_THREADS = 256  # per head: 4 waves (CDNA) / 8 warps (Hopper), each reducing whole state rows


def _row_tiles(arch: GpuArch) -> dict[str, int]:
    return {"threads": arch.wave_size, "rows_per_workgroup": 1}


def _row_block(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """A kernel written in kernels/rows.py: one wave per row, a feature per lane per step."""
    return TileChoice({"threads": arch.wave_size, "block": arch.wave_size})


def _moe_router(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    experts, top_k = int(dims["num_experts"]), int(dims["top_k"])
    body = [
        load("logits", [1, experts], REGISTERS),
        load("bias", [1, experts], REGISTERS),
        elementwise("sigmoid"),
        elementwise("group_topk"),
        store("weights", [1, top_k]),
    ]
    return TileChoice(_row_tiles(arch), body)


def _conv_silu(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """A thread per channel walks the call's tokens with its taps and carried inputs in registers."""
    taps = int(dims["conv_kernel"])
    carried = [load("conv_state", [CONV_THREADS, taps - 1], REGISTERS)] if taps > 1 else []
    body = [
        load("conv_weight", [CONV_THREADS, taps], REGISTERS),
        *carried,
        elementwise("silu"),
        store("xbc", [1, CONV_THREADS]),
        *([store("conv_state", [CONV_THREADS, taps - 1])] if taps > 1 else []),
    ]
    return TileChoice({"threads": CONV_THREADS, "channels_per_workgroup": CONV_THREADS}, body)


def _ssd_step(dims: Mapping[str, Any], precision: str, arch: GpuArch) -> TileChoice:
    """A workgroup per head: the head's state [P, N] is read and written once per token, by waves of rows."""
    head_dim, state_size = int(dims["head_dim"]), int(dims["state_size"])
    state = str(dims.get("state_dtype", "f32"))
    body = [
        load("ssm_state", [head_dim, state_size], REGISTERS, state),
        elementwise("softplus"),
        elementwise("decay_update"),
        reduce("dot_C"),
        store("ssm_state", [head_dim, state_size], element=state),
        store("y", [1, head_dim]),
    ]
    return TileChoice({"threads": SSD_STEP_THREADS, "heads_per_workgroup": 1}, body)


POLICIES: dict[str, GpuPolicy] = {
    "embedding": _row_block,
    "rmsnorm": _row_block,
    "rms_scale": _row_block,
    "gated_rmsnorm": _row_block,
    "moe_router": _moe_router,
    "moe_combine": _row_block,
    "kv_append": _row_block,
    "conv_silu": _conv_silu,
    "ssd_step": _ssd_step,
}
