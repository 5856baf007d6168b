"""tessera-tile-choose-tiles: pick each kernel's tile sizes for a target and write its tile-level body.

Options: target (x86, or a GPU: gfx942, gfx90a, sm_90a), precision (fp32 | bf16: the element type of
weights the matrix tiles read; on a GPU, of the matrix instructions' operands).
Policies: tiling/x86.py for x86, tiling/gpu.py (one per kind for every GPU, reading the
arch table arch.py) for the GPUs.
Writes on every `tessera.tile.kernel`: `target`, `tiles`, the body of tile ops, and — for kernels whose
parallel unit is a tile (GEMM panels) — `parallel` and `grid`. Later passes and the lowering read these
and never re-derive them (IREE's "choose, then lower").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xdsl.context import Context
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    UnitAttr,
    i64,
)
from xdsl.passes import ModulePass

from tessera.arch import TARGETS
from tessera.dialects import tile
from tessera.dialects.tile import plain_dict
from tessera.errors import TesseraError
from tessera.tiling.choice import TileChoice

if TYPE_CHECKING:
    from tessera.arch import GpuArch
    from tessera.tiling.gpu import GpuPolicy

PRECISIONS = ("fp32", "bf16")


def choose_tiles(module: ModuleOp, target: str = "x86", precision: str = "fp32") -> None:
    if target not in TARGETS:
        raise TesseraError(
            f"tessera-tile-choose-tiles: target '{target}' has no tiling policy (known: {', '.join(TARGETS)})"
        )
    if precision not in PRECISIONS:
        raise TesseraError(f"tessera-tile-choose-tiles: precision must be fp32 or bf16, got '{precision}'")
    kernels = [op for op in module.ops if isinstance(op, tile.KernelOp)]
    choose_kernel_tiles(kernels, target, precision, _launch_buffer_types(module))


def choose_kernel_tiles(kernels: list[tile.KernelOp], target: str, precision: str,
                        buffer_types: dict[str, list[MemRefType]] | None = None) -> None:  # fmt: skip
    """Tile `kernels` for `target` and write their bodies (launched with `buffer_types`, by kernel name, where
    known)."""
    policies = _policies(target)
    for kernel in kernels:
        policy = policies.get(kernel.kind.data)
        if policy is None:
            raise TesseraError(
                f"{kernel.name} @{kernel.sym_name.data}: kind '{kernel.kind.data}' has no {target} tiling"
            )
        choice = policy(dict(plain_dict(kernel.dims)), precision)
        kernel.properties["target"] = StringAttr(target)
        kernel.properties["tiles"] = DictionaryAttr({k: IntegerAttr(v, i64) for k, v in choice.tiles.items()})
        if choice.grid is not None:
            kernel.properties["grid"] = IntegerAttr(choice.grid, i64)
        if choice.parallel is not None:
            kernel.properties["parallel"] = StringAttr(choice.parallel)
        write_body(kernel, choice, (buffer_types or {}).get(kernel.sym_name.data, []))


def write_body(kernel: tile.KernelOp, choice: TileChoice, buffer_types: list[MemRefType]) -> None:
    """The kernel's body: the dataflow Tile-IR of kernels/, built from its dims and the chosen tiles (its
    launches must pass the buffers it takes)."""
    from tessera.kernels import KERNELS, PACKED, SCALARS

    build = KERNELS.get(kernel.kind.data)
    if build is None:
        raise TesseraError(
            f"{kernel.name} @{kernel.sym_name.data}: kind '{kernel.kind.data}' has no kernel in kernels/"
        )
    dims = dict(plain_dict(kernel.dims))
    body = build(dims, dict(choice.tiles))
    # [first, end) of the grid, the program ids along the grid and the token blocks, or the program id
    programs = 2 if choice.ranged or choice.token_block is not None else 1
    buffers = body.args[: len(body.args) - len(SCALARS.get(kernel.kind.data, ())) - programs]
    signature = [arg.type for arg in buffers]
    # A buffer the runtime packs at load is launched in its model layout: the kernel takes the packed one.
    packed = PACKED.get(kernel.kind.data, {})
    expected = [
        packed[arg.name_hint](dims, choice.tiles) if arg.name_hint in packed else launched
        for arg, launched in zip(buffers, buffer_types, strict=False)
    ]
    if buffer_types and (len(buffer_types) != len(signature) or expected != signature):
        raise TesseraError(
            f"{kernel.name} @{kernel.sym_name.data}: launched with buffers {buffer_types}, "
            f"its {kernel.kind.data} kernel takes {signature}"
        )
    kernel.body.detach_block(kernel.body.block).erase()
    kernel.body.add_block(body)
    if choice.ranged:
        kernel.properties["ranged"] = UnitAttr()
    if choice.token_block is not None:
        kernel.properties["token_block"] = IntegerAttr(choice.token_block, i64)
    scalars = SCALARS.get(kernel.kind.data, ())
    if scalars:
        kernel.properties["scalars"] = ArrayAttr([StringAttr(name) for name in scalars])


def _launch_buffer_types(module: ModuleOp) -> dict[str, list[MemRefType]]:
    """Each kernel's buffer types: the operand types of its first launch (ins, then outs); launches of one
    kernel agree, since Tile-IR deduplicates kernels by kind and dims."""
    found: dict[str, list[MemRefType]] = {}
    for op in module.walk():
        if isinstance(op, tile.LaunchOp):
            name = op.kernel.root_reference.data
            types = [value.type for value in (*op.ins, *op.outs)]
            if found.setdefault(name, types) != types:  # type: ignore[arg-type]
                raise TesseraError(f"{op.name} @{name}: launched with buffers {types} and {found[name]}")
    return found  # type: ignore[return-value]


Policy = Callable[[dict[str, Any], str], TileChoice]


def _policies(target: str) -> dict[str, Policy]:
    """The target's policy for each kernel kind, as (dims, precision) -> TileChoice."""
    if target == "x86":
        from tessera.tiling.x86 import POLICIES

        return dict(POLICIES)
    from tessera.arch import gpu_arch
    from tessera.tiling.gpu import policies

    arch = gpu_arch(target)
    return {kind: functools.partial(_with_arch, policy, arch) for kind, policy in policies().items()}


def _with_arch(policy: GpuPolicy, arch: GpuArch, dims: dict[str, Any], precision: str) -> TileChoice:
    return policy(dims, precision, arch)


@dataclass(frozen=True)
class TileChooseTilesPass(ModulePass):
    name = "tessera-tile-choose-tiles"

    target: str = "x86"
    precision: str = "fp32"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        choose_tiles(op, self.target, self.precision)
