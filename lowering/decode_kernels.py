"""Kernels of their own for the decode step, on the GPU targets: @decode runs one token a call (a session's
`decode(token)`), so its projections are GEMVs — bound by streaming W, not by a GEMM's arithmetic — and its
attention one query row per head against the whole cache. Between convert-tessera-schedule-to-tile and
tessera-tile-choose-tiles, in @decode:

    matmul      each launch gets a kernel of its own: the prefill kernel's dims plus `tokens = 1` (its name
                says so: matmul_..._tokens1), tiled as a GEMV (tiling/gpu.py `gemv_tiles`: N / columns programs
                where the GEMM has N / 256)
    attention   each launch becomes attention_split into a state of its layer's (`attention_partials`,
                [Hq splits, D + 2] f32, scratch within the step) and attention_combine from it
                (kernels/attention_decode.py: flash-decoding, the splits combined in a fixed order)
    moe_experts each launch becomes moe_experts_up into a state of its layer's (`moe_hidden`, [K, F] f32)
                and moe_experts_down from it (kernels/moe_decode.py: GEMVs that read the selected
                experts' weights alone)

x86 keeps one kernel for both programs (its GEMM's panels already stream W per row block).
"""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, MemRefType, ModuleOp, StringAttr, SymbolRefAttr, f32, i64
from xdsl.ir import Attribute, SSAValue

from tessera.dialects import schedule, tile
from tessera.dialects.tile import plain_dict
from tessera.lowering.convert_schedule_to_tile import kernel_name, new_kernel

DECODE_PROGRAM = "decode"
ONE_TOKEN_KINDS = ("matmul",)
# The pieces the decode step's attention splits the keys into (kernels/attention_decode.py): with 40 query
# heads, 1280 programs — every SM busy — and each piece's keys 1 / 32 of the context.
ATTENTION_SPLITS = 32


def specialize_decode(module: ModuleOp) -> None:
    """Give each launch of @decode of a ONE_TOKEN_KINDS kernel the kernel's one-token form (added once, next
    to the kernel it comes from; bodies are written by tessera-tile-choose-tiles)."""
    kernels = {op.sym_name.data: op for op in module.ops if isinstance(op, tile.KernelOp)}
    decode = next((op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == DECODE_PROGRAM), None)
    if decode is None:
        return
    for launch in [op for op in decode.walk() if isinstance(op, tile.LaunchOp)]:
        kernel = kernels[launch.kernel.root_reference.data]
        if kernel.kind.data in ONE_TOKEN_KINDS:
            dims = {**kernel.dims.data, "tokens": IntegerAttr(1, i64)}
            launch.properties["kernel"] = SymbolRefAttr(_added(module, kernels, kernel, kernel.kind.data, dims))
        elif kernel.kind.data == "attention":
            _split_attention(module, kernels, kernel, launch)
        elif kernel.kind.data == "moe_experts":
            _split_experts(module, kernels, kernel, launch)


def _added(module: ModuleOp, kernels: dict[str, tile.KernelOp], after: tile.KernelOp, kind: str,
           dims: dict[str, Attribute]) -> str:  # fmt: skip
    """The name of the kernel of `kind` with `dims`, added after `after` unless the module has it."""
    name = kernel_name(kind, dims)
    if name not in kernels:
        kernels[name] = new_kernel(name, kind, dims, after.parallel.data, int(after.grid.value.data))
        module.body.block.insert_op_after(kernels[name], after)
    return name


def _split_attention(module: ModuleOp, kernels: dict[str, tile.KernelOp], kernel: tile.KernelOp,
                     launch: tile.LaunchOp) -> None:  # fmt: skip
    """The launch of attention as attention_split into a partials state of its own, then attention_combine
    (kernels/attention_decode.py)."""
    qkv, k_cache, v_cache = launch.ins
    (out,) = launch.outs
    dims = {**kernel.dims.data, "splits": IntegerAttr(ATTENTION_SPLITS, i64)}
    split = _added(module, kernels, kernel, "attention_split", dims)
    combine = _added(module, kernels, kernels[split], "attention_combine", dims)
    cache_state = k_cache.owner
    assert isinstance(cache_state, schedule.StateRefOp), cache_state
    layer = next(op for op in module.ops if isinstance(op, schedule.StateOp)
                 and op.sym_name.data == cache_state.state.root_reference.data).layer  # fmt: skip
    heads, head_dim = (int(plain_dict(kernel.dims)[key]) for key in ("num_heads", "head_dim"))
    partials = _scratch(module, launch, int(layer.value.data), "attention_partials",
                        [heads * ATTENTION_SPLITS, head_dim + 2])  # fmt: skip
    _launch(launch, split, [qkv, k_cache, v_cache], [partials])
    _launch(launch, combine, [partials], [out])
    launch.detach()
    launch.erase()


def _split_experts(module: ModuleOp, kernels: dict[str, tile.KernelOp], kernel: tile.KernelOp,
                   launch: tile.LaunchOp) -> None:  # fmt: skip
    """The launch of moe_experts as moe_experts_up into a hidden state of its own, then moe_experts_down
    (kernels/moe_decode.py: GEMVs over the selected experts only)."""
    x, ids, up, down = launch.ins
    (contrib,) = launch.outs
    dims = dict(kernel.dims.data)
    first = _added(module, kernels, kernel, "moe_experts_up", dims)
    second = _added(module, kernels, kernels[first], "moe_experts_down", dims)
    weight = up.owner
    assert isinstance(weight, schedule.WeightOp), weight
    layer = int(weight.weight_name.data.split(".")[1])  # layers.L.moe.experts.up_proj
    top_k, ffn = (int(plain_dict(kernel.dims)[key]) for key in ("top_k", "ffn"))
    hidden = _scratch(module, launch, layer, "moe_hidden", [top_k, ffn])
    _launch(launch, first, [x, ids, up], [hidden])
    _launch(launch, second, [hidden, ids, down], [contrib])
    launch.detach()
    launch.erase()


def _scratch(module: ModuleOp, launch: tile.LaunchOp, layer: int, kind: str, shape: list[int]) -> SSAValue:
    """A state `layers.L.<kind>` (f32 `shape`) declared with the module's others, referenced before `launch`."""
    type_ = MemRefType(f32, shape)
    name = f"layers.{layer}.{kind}"
    state = schedule.StateOp(properties={"sym_name": StringAttr(name), "type": type_, "kind": StringAttr(kind),
                                         "layer": IntegerAttr(layer, i64)})  # fmt: skip
    module.body.block.insert_op_after(state, next(op for op in module.ops if isinstance(op, schedule.StateOp)))
    reference = schedule.StateRefOp(properties={"state": SymbolRefAttr(name)}, result_types=[type_])
    block = launch.parent_block()
    assert block is not None
    block.insert_op_before(reference, launch)
    return reference.result


def _launch(before: tile.LaunchOp, kernel: str, ins: list[SSAValue], outs: list[SSAValue]) -> None:
    block = before.parent_block()
    assert block is not None
    block.insert_op_before(tile.LaunchOp(operands=[ins, outs], properties={"kernel": SymbolRefAttr(kernel)}), before)
