"""A lowered GPU kernel and what a GPU lowering reads of its Tile-IR kernel.

Kernel ABI (every GPU kernel; docs/lowering.md): one pointer per launch operand, ins then outs (Tile-IR order;
on Hopper a CUtensorMap by value for an operand only async loads read), then `%tokens: i32` (rows of this
call) and `%position: i32` (the sequence position of its first token); scratch buffers are workgroup
attributions (LDS / static shared memory), a TMA kernel's operand stages one dynamic allocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tessera.arch import GpuArch


@dataclass(frozen=True)
class Grid:
    """Workgroups per launch along x and y: ceil(extent / per) for each (extent, per), where an extent is a
    number or "tokens" (the call's token count)."""

    x: tuple[int | str, int]
    y: tuple[int | str, int] = (1, 1)

    def plain(self) -> dict[str, list[int | str]]:
        return {"x": list(self.x), "y": list(self.y)}


@dataclass(frozen=True)
class KernelInfo:
    """What a lowering reads of one Tile-IR kernel beside its body: its identity, dims and tiles, the arch, and
    the element its matrix instructions read the weight in."""

    name: str
    kind: str
    dims: dict[str, int | float | str]
    tiles: dict[str, int | float | str]
    arch: GpuArch
    weight_element: str | None  # the element a matrix kernel reads its weights in ("bf16" | "f32"), if any


@dataclass(frozen=True)
class GpuKernel:
    """A lowered kernel: the text of its GPU module (MLIR 22's form: its function and the globals it
    addresses), the names of its function's block arguments (what the text names them, which MLIR forgets once
    it parses it: the kernel ABI's parameters, then the workgroup attributions) and launch geometry."""

    name: str
    text: str
    names: tuple[str, ...]
    inputs: int  # how many of `names` are parameters
    threads: int
    grid: Grid
    lds_bytes: int

    @property
    def params(self) -> tuple[str, ...]:
        """The kernel ABI's parameter names, in order."""
        return self.names[: self.inputs]


def kernels_module(kernels: Sequence[GpuKernel]) -> str:
    """Kernels' GPU modules as one (a global they share declared once), their values named: the module a GPU
    target writes (OUT/<target>/kernels.mlir) and lowers."""
    from tessera import toolchain

    return toolchain.join_modules(
        [kernel.text for kernel in kernels], {kernel.name: kernel.names for kernel in kernels}
    )
