"""Kernels of their own for the decode step, on the GPU targets: @decode runs one token a call (a session's
`decode(token)`), so its projections are GEMVs — bound by streaming W, not by a GEMM's arithmetic — and its
attention one query row per head against the whole cache. Between convert-tessera-schedule-to-tile and
tessera-tile-choose-tiles, in @decode:

    matmul      each launch gets a kernel of its own: the prefill kernel's dims plus `tokens = 1` (its name
                says so: matmul_..._tokens1), tiled as a GEMV (tiling/gpu.py `_gemv`: N / columns programs
                where the GEMM has N / 256)
    attention   each launch becomes attention_split into a state of its layer's (`attention_partials`,
                [Hq splits, D + 2] f32, scratch within the step) and attention_combine from it
                (kernels/attention_decode.py: flash-decoding, the splits combined in a fixed order)

x86 keeps one kernel for both programs (its GEMM's panels already stream W per row block).
"""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, MemRefType, ModuleOp, StringAttr, SymbolRefAttr, f32, i64
from xdsl.ir import Attribute

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
    heads, head_dim = (plain_dict(kernel.dims)[key] for key in ("num_heads", "head_dim"))
    partials_type = MemRefType(f32, [int(heads) * ATTENTION_SPLITS, int(head_dim) + 2])
    name = f"layers.{layer.value.data}.attention_partials"
    state = schedule.StateOp(properties={"sym_name": StringAttr(name), "type": partials_type,
                                         "kind": StringAttr("attention_partials"), "layer": layer})  # fmt: skip
    module.body.block.insert_op_after(state, next(op for op in module.ops if isinstance(op, schedule.StateOp)))
    partials = schedule.StateRefOp(properties={"state": SymbolRefAttr(name)}, result_types=[partials_type])
    block = launch.parent_block()
    assert block is not None
    block.insert_op_before(partials, launch)
    for kernel_name_, ins, outs in (
        (split, [qkv, k_cache, v_cache], [partials.result]),
        (combine, [partials.result], [out]),
    ):
        block.insert_op_before(
            tile.LaunchOp(operands=[ins, outs], properties={"kernel": SymbolRefAttr(kernel_name_)}), launch
        )
    launch.detach()
    launch.erase()
