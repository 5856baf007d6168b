"""The stages every compiled target shares: Graph-IR -> Schedule-IR (target-independent) -> Tile-IR (tiled for
one target). A backend adds its own stages below Tile-IR (targets/backend.py)."""

from __future__ import annotations

from typing import Any

from xdsl.dialects.builtin import ModuleOp

from tessera.model.config import ModelSpec
from tessera.targets.backend import Job, Stage


def _element(dtype: str) -> str:
    """A compile-section dtype (float32 | bfloat16) as an MLIR element type name."""
    return "bf16" if dtype == "bfloat16" else "f32"


def lower_to_schedule(graph: ModuleOp, spec: ModelSpec) -> ModuleOp:
    """Graph-IR -> planned Schedule-IR: the same program for every target (it reads no target)."""
    from tessera.lowering.convert_graph_to_schedule import convert_graph_to_schedule
    from tessera.passes.schedule_plan_buffers import plan_buffers

    module = convert_graph_to_schedule(
        graph,
        max_seq_len=spec.compile.max_seq_len,
        ssm_state_dtype=_element(spec.compile.ssm_state_dtype),
        chunk_size=spec.compile.chunk_size,
        activation_dtype="bf16" if spec.compile.effective_precision == "bf16" else "f32",
        kv_cache_dtype=_element(spec.compile.kv_cache_dtype),
    )
    plan_buffers(module)
    return module


def lower_to_tile(schedule_module: ModuleOp, spec: ModelSpec, target: str) -> ModuleOp:
    """Schedule-IR -> Tile-IR tiled for `target` (x86, gfx942, gfx90a, sm_90a): only the tiling differs, and
    on the GPUs the decode step's one-token kernels (lowering/decode_kernels.py) and the kernels that draw a
    seeded model's weights (lowering/weight_draws.py)."""
    from tessera.lowering.convert_schedule_to_tile import convert_schedule_to_tile
    from tessera.lowering.decode_kernels import specialize_decode
    from tessera.lowering.weight_draws import add_weight_draws
    from tessera.passes.tile_choose_tiles import choose_kernel_tiles, choose_tiles
    from tessera.passes.tile_compute_footprint import compute_footprints

    module = schedule_module.clone()
    convert_schedule_to_tile(module)
    if target != "x86":  # one-token kernels for the decode step (its GEMVs)
        specialize_decode(module)
    precision = spec.compile.effective_precision
    choose_tiles(module, target, precision)
    if target != "x86":  # a GPU session draws a seeded model's weights on the device (x86: on the host)
        choose_kernel_tiles(add_weight_draws(module, spec.config), target, precision)
    compute_footprints(module)
    module.verify()
    return module


def memory_report(tile_module: ModuleOp, spec: ModelSpec) -> dict[str, Any]:
    """Kernel count, state and KV-cache bytes per sequence, arena bytes per token: for the manifest."""
    from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr

    from tessera.dialects import tile

    def integer(name: str) -> int:
        attr = tile_module.attributes[name]
        assert isinstance(attr, IntegerAttr)
        return int(attr.value.data)

    arena = tile_module.attributes["tessera.arena_bytes_per_token"]
    assert isinstance(arena, DictionaryAttr)
    per_token = {k: int(v.value.data) for k, v in arena.data.items() if isinstance(v, IntegerAttr)}
    return {
        "kernels": sum(1 for op in tile_module.ops if isinstance(op, tile.KernelOp)),
        "state_bytes": integer("tessera.state_bytes"),
        "kv_cache_bytes": integer("tessera.kv_cache_bytes"),
        "arena_bytes_per_token": per_token,
        "prefill_arena_bytes_at_max_seq_len": per_token.get("prefill", 0) * spec.compile.max_seq_len,
    }


def _schedule(job: Job) -> str:
    job.schedule_module = lower_to_schedule(job.graph, job.spec)
    return str(job.schedule_module) + "\n"


def _tile(job: Job) -> str:
    assert job.schedule_module is not None
    job.tile_module = lower_to_tile(job.schedule_module, job.spec, job.arch)
    return str(job.tile_module) + "\n"


# The first two stages of every compiled target.
SCHEDULE: Stage[Job] = Stage("schedule", "schedule.mlir", _schedule)
TILE: Stage[Job] = Stage("tile", "tile.mlir", _tile)
