"""convert-tessera-schedule-to-tile: each Schedule-IR step -> a `tessera.tile.launch` of a shared kernel.

A kernel is identified by what it computes: the step's kind, its static dimensions and its fusion
attributes (epilogue, bias, element types). Steps that agree on all of them launch one kernel, which is
how the 62 layers of a Nemotron-H model compile into a few dozen kernels. The kernel's parallel dimension
(what threads, CTAs or workgroups split) is decided here; tile sizes are not (tessera-tile-choose-tiles).
A grid of 0 means "the call's token count" (row-parallel kernels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    SymbolRefAttr,
    i64,
)
from xdsl.ir import Attribute, Block, Region
from xdsl.passes import ModulePass

from tessera.dialects import schedule, tile

# Step op -> (kernel kind, parallel dimension, the dimension name whose extent is the grid, or None for tokens)
_KINDS: dict[type[schedule.StepOp], tuple[str, str, str | None]] = {
    schedule.EmbeddingOp: ("embedding", "tokens", None),
    schedule.RMSNormOp: ("rmsnorm", "tokens", None),
    schedule.RMSScaleOp: ("rms_scale", "tokens", None),
    schedule.MatmulOp: ("matmul", "columns", "n"),
    schedule.ConvSiluOp: ("conv_silu", "channels", "channels"),
    schedule.SSDScanOp: ("ssd_scan", "heads", "num_heads"),
    schedule.SSDStepOp: ("ssd_step", "heads", "num_heads"),
    schedule.GatedRMSNormOp: ("gated_rmsnorm", "tokens", None),
    schedule.KVAppendOp: ("kv_append", "tokens", None),
    schedule.AttentionOp: ("attention", "tokens", None),
    schedule.MoERouterOp: ("moe_router", "tokens", None),
    schedule.MoEExpertsOp: ("moe_experts", "experts", "num_experts"),
    schedule.MoECombineOp: ("moe_combine", "tokens", None),
}

# Kernel kind -> the dimension whose extent is its grid (None: one program per token).
GRID_DIMS: dict[str, str | None] = {kind: grid_dim for kind, _, grid_dim in _KINDS.values()}


def _element(value: object) -> str:
    assert isinstance(value, MemRefType)
    return str(value.element_type)


def _shape(value: object) -> tuple[int, ...]:
    assert isinstance(value, MemRefType)
    return tuple(value.get_shape())


# Which step properties a kernel depends on (the rest, e.g. chunk_size for the conv, would only split
# identical kernels apart).
_RELEVANT = {
    "conv_silu": ("num_heads", "head_dim", "n_groups", "state_size", "conv_kernel"),
    "ssd_scan": ("num_heads", "head_dim", "n_groups", "state_size", "chunk_size", "time_step_min"),
    "ssd_step": ("num_heads", "head_dim", "n_groups", "state_size"),
    "gated_rmsnorm": ("num_heads", "head_dim", "n_groups", "state_size", "epsilon"),
}
# Short names for kernel symbols: ssd_scan_h8_p8_g2_n16_l16_f32 reads better than the property names.
_ABBREVIATIONS = {
    "num_heads": "h",
    "head_dim": "p",
    "n_groups": "g",
    "state_size": "n",
    "conv_kernel": "kw",
    "chunk_size": "l",
    "time_step_min": "dtmin",
    "epsilon": "eps",
    "num_kv_heads": "hkv",
    "max_seq_len": "s",
    "num_experts": "e",
    "top_k": "topk",
    "n_group": "ng",
    "topk_group": "tg",
    "norm_topk_prob": "norm",
    "routed_scaling_factor": "scale",
    "x_dtype": "x",
    "y_dtype": "y",
    "out_dtype": "out",
    "state_dtype": "state",
    "cache_dtype": "cache",
}


def step_dims(step: schedule.StepOp) -> dict[str, Attribute]:
    """The static facts that identify a step's kernel: its properties and the operand shapes it depends on."""
    kind = _KINDS[type(step)][0]
    relevant = _RELEVANT.get(kind)
    dims: dict[str, Attribute] = {}
    for name, value in step.properties.items():
        if name == "operandSegmentSizes" or (relevant is not None and name not in relevant):
            continue
        if isinstance(value, (IntegerAttr, FloatAttr, StringAttr)) and name != "row_scale":
            dims[name] = value
    shapes = [_shape(v.type) for v in (*step.ins, *step.outs)]
    if isinstance(step, schedule.MatmulOp):
        n, k = shapes[1]
        scaled = step.row_scale is not None
        bias = len(step.ins) - int(scaled) == 3
        dims |= {"n": IntegerAttr(n, i64), "k": IntegerAttr(k, i64), "bias": IntegerAttr(int(bias), i64)}
        if scaled:
            dims["row_scale"] = IntegerAttr(1, i64)
    elif isinstance(step, (schedule.EmbeddingOp,)):
        dims |= {"vocab": IntegerAttr(shapes[1][0], i64), "hidden": IntegerAttr(shapes[1][1], i64)}
    elif isinstance(step, (schedule.RMSNormOp, schedule.RMSScaleOp)):
        dims |= {"hidden": IntegerAttr(shapes[0][1], i64)}
    elif isinstance(step, schedule.ConvSiluOp):
        dims |= {"channels": IntegerAttr(shapes[-1][1], i64), "conv_bias": IntegerAttr(int(len(step.ins) == 3), i64)}
    elif isinstance(step, (schedule.SSDScanOp, schedule.SSDStepOp)):
        dims |= {"state_dtype": StringAttr(_element(step.outs[0].type))}
    elif isinstance(step, (schedule.KVAppendOp, schedule.AttentionOp)):
        cache = step.outs[0] if isinstance(step, schedule.KVAppendOp) else step.ins[1]
        dims |= {"max_seq_len": IntegerAttr(_shape(cache.type)[0], i64)}
        if _element(cache.type) == "bf16":
            dims["cache_dtype"] = StringAttr("bf16")
    elif isinstance(step, schedule.MoEExpertsOp):
        _, ffn, latent = _shape(step.ins[2].type)
        dims |= {"ffn": IntegerAttr(ffn, i64), "latent": IntegerAttr(latent, i64)}
    elif isinstance(step, schedule.MoECombineOp):
        dims |= {"latent": IntegerAttr(_shape(step.outs[0].type)[1], i64)}
    elif isinstance(step, schedule.MoERouterOp):
        pass
    dims |= _bf16_buffers(step)
    return dict(sorted(dims.items()))


# Buffers that may be bf16 under --precision bf16, by step: (dims key, operand index among ins + outs).
_ACTIVATION_OPERANDS: dict[type[schedule.StepOp], tuple[tuple[str, int], ...]] = {
    schedule.MatmulOp: (("x_dtype", 0), ("y_dtype", -1)),
    schedule.RMSNormOp: (("out_dtype", -1),),
    schedule.GatedRMSNormOp: (("out_dtype", -1),),
    schedule.AttentionOp: (("out_dtype", -1),),
    schedule.MoEExpertsOp: (("x_dtype", 0),),
}


def _bf16_buffers(step: schedule.StepOp) -> dict[str, Attribute]:
    """The activation buffers a step reads or writes in bf16 (f32, the default, is not named)."""
    operands = [*step.ins, *step.outs]
    found: dict[str, Attribute] = {}
    for key, index in _ACTIVATION_OPERANDS.get(type(step), ()):
        if _element(operands[index].type) == "bf16":
            found[key] = StringAttr("bf16")
    return found


def kernel_name(kind: str, dims: dict[str, Attribute]) -> str:
    parts = [kind]
    for name, value in dims.items():
        key = _ABBREVIATIONS.get(name, name)
        if isinstance(value, IntegerAttr):
            parts.append(f"{key}{value.value.data}")
        elif isinstance(value, StringAttr):
            # Dtypes are named by role (xbf16 vs ybf16); other strings (the epilogue) by value.
            parts.append(f"{key}{value.data}" if name.endswith("_dtype") else value.data)
        elif isinstance(value, FloatAttr):
            parts.append(f"{key}{value.value.data:g}".replace(".", "p").replace("-", "m").replace("+", ""))
    return "_".join(parts)


def new_kernel(name: str, kind: str, dims: Mapping[str, Attribute], parallel: str, grid: int) -> tile.KernelOp:
    """A `tessera.tile.kernel` without a body (tessera-tile-choose-tiles writes it) or tiles yet."""
    return tile.KernelOp(
        properties={
            "sym_name": StringAttr(name),
            "kind": StringAttr(kind),
            "dims": DictionaryAttr(dict(dims)),
            "parallel": StringAttr(parallel),
            "grid": IntegerAttr(grid, i64),
        },
        regions=[Region(Block())],
    )


def convert_schedule_to_tile(module: ModuleOp) -> None:
    """Rewrite `module` in place: steps become launches; kernels are added before the programs."""
    kernels: dict[str, tile.KernelOp] = {}
    for program in [op for op in module.ops if isinstance(op, func.FuncOp)]:
        for step in [op for op in program.walk() if isinstance(op, schedule.StepOp)]:
            kind, parallel, grid_dim = _KINDS[type(step)]
            dims = step_dims(step)
            name = kernel_name(kind, dims)
            if name not in kernels:
                grid = 0 if grid_dim is None else _grid(dims, grid_dim, kind)
                kernels[name] = new_kernel(name, kind, dims, parallel, grid)
            launch = tile.LaunchOp(
                operands=[list(step.ins), list(step.outs)],
                properties={"kernel": SymbolRefAttr(name)},
            )
            step.parent_block().insert_op_before(launch, step)  # type: ignore[union-attr]
            step.detach()
            step.erase()
    first_program = next(op for op in module.ops if isinstance(op, func.FuncOp))
    for kernel in kernels.values():
        module.body.block.insert_op_before(kernel, first_program)


def _grid(dims: dict[str, Attribute], name: str, kind: str) -> int:
    value = dims[name]
    assert isinstance(value, IntegerAttr), f"{kind}: {name}"
    return int(value.value.data)


@dataclass(frozen=True)
class ConvertTesseraScheduleToTilePass(ModulePass):
    name = "convert-tessera-schedule-to-tile"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        convert_schedule_to_tile(op)
