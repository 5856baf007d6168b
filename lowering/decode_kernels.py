"""Kernels of their own for the decode step, on the GPU targets: @decode runs one token a call (a session's
`decode(token)`), so its projections are GEMVs — bound by streaming W, not by a GEMM's arithmetic — and want
another grid and body than the prefill's GEMM (tiling/gpu.py `_gemv`: N / columns programs where the GEMM
has N / 256). Between convert-tessera-schedule-to-tile and tessera-tile-choose-tiles, each launch of @decode
whose kind has a one-token form gets a kernel of its own: the prefill kernel's dims plus `tokens = 1` (its
name says so: matmul_..._tokens1). x86 keeps one kernel for both programs (its GEMM's panels already stream
W per row block).
"""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, SymbolRefAttr, i64
from xdsl.ir import Block, Region

from tessera.dialects import tile
from tessera.lowering.convert_schedule_to_tile import kernel_name

DECODE_PROGRAM = "decode"
ONE_TOKEN_KINDS = ("matmul",)


def specialize_decode(module: ModuleOp) -> None:
    """Give each launch of @decode of a ONE_TOKEN_KINDS kernel the kernel's one-token form (added once, next
    to the kernel it comes from; bodies are written by tessera-tile-choose-tiles)."""
    kernels = {op.sym_name.data: op for op in module.ops if isinstance(op, tile.KernelOp)}
    decode = next((op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == DECODE_PROGRAM), None)
    if decode is None:
        return
    for launch in [op for op in decode.walk() if isinstance(op, tile.LaunchOp)]:
        kernel = kernels[launch.kernel.root_reference.data]
        if kernel.kind.data not in ONE_TOKEN_KINDS:
            continue
        dims = {**kernel.dims.data, "tokens": IntegerAttr(1, i64)}
        name = kernel_name(kernel.kind.data, dims)
        if name not in kernels:
            kernels[name] = tile.KernelOp(
                properties={
                    "sym_name": StringAttr(name),
                    "kind": kernel.kind,
                    "dims": DictionaryAttr(dims),
                    "parallel": kernel.parallel,
                    "grid": kernel.grid,
                },
                regions=[Region(Block())],
            )
            module.body.block.insert_op_after(kernels[name], kernel)
        launch.properties["kernel"] = SymbolRefAttr(name)
