"""What a tiling policy returns for one kernel: its tile sizes, its tile-level body and (optionally) a new
grid; and the constructors of the body's ops. Every target's policies (tiling/x86.py,
tiling/gpu.py) build these; tessera-tile-choose-tiles writes them into Tile-IR."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TileChoice:
    tiles: dict[str, int]
    body: list[tuple[str, dict[str, object]]] = field(default_factory=list)  # (op, properties)
    grid: int | None = None  # a new grid (e.g. GEMM panels instead of columns); None keeps it
    parallel: str | None = None
    # The kernel's body runs a range [first, end) of the grid per call (tessera.tile.kernel's `ranged`).
    ranged: bool = False
    # Tokens per program along a second grid dimension over the call's tokens (tessera.tile.kernel's
    # `token_block`; the body takes that dimension's program id too).
    token_block: int | None = None


def load(
    operand: str, shape: list[int], space: str = "cache", element: str = "f32", pad: int = 0, is_async: bool = False
) -> tuple[str, dict[str, object]]:
    """A tile brought into `space`; `pad` elements follow each row (a bank-conflict-free shared-memory layout),
    `is_async` marks a copy overlapped with compute (TMA, cp.async)."""
    props: dict[str, object] = {"operand": operand, "shape": shape, "element": element, "space": space}
    if pad:
        props["pad"] = pad
    if is_async:
        props["async"] = True
    return ("load", props)


def store(operand: str, shape: list[int], element: str = "f32") -> tuple[str, dict[str, object]]:
    return ("store", {"operand": operand, "shape": shape, "element": element, "space": "global"})


def mma(m: int, n: int, k: int, lhs: str = "f32", rhs: str = "f32") -> tuple[str, dict[str, object]]:
    return ("mma", {"m": m, "n": n, "k": k, "lhs": lhs, "rhs": rhs, "acc": "f32"})


def elementwise(fn: str) -> tuple[str, dict[str, object]]:
    return ("elementwise", {"fn": fn})


def reduce(fn: str, axis: int = 1) -> tuple[str, dict[str, object]]:
    return ("reduce", {"fn": fn, "axis": axis})


def scan(fn: str, axis: int = 0) -> tuple[str, dict[str, object]]:
    return ("scan", {"fn": fn, "axis": axis})
