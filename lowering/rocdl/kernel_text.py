"""A builder for one ROCDL kernel as MLIR text: a `gpu.func` whose global buffers are `!llvm.ptr<1>`
arguments, whose LDS tiles are workgroup attributions (address space 3), and whose loops and arithmetic
are scf/arith/math/vector, all lowered by upstream `convert-gpu-to-rocdl`.

Kernel ABI (every ROCDL kernel; docs/lowering.md):

    gpu.func @name(%a0: !llvm.ptr<1>, ...,      one pointer per launch operand, ins then outs (Tile-IR order)
                   %tokens: i32,                 rows of this call (the token count)
                   %position: i32)               sequence position of the call's first token
        workgroup(<one memref per LDS tile of the kernel's Tile-IR body>)
        kernel attributes {known_block_size, rocdl.flat_work_group_size}

Global offsets are i32 element indices (buffers stay below 2^31 elements); LDS indices are `index`,
32-bit after lowering. bf16 buffers hold raw bfloat16 bits and are read and written as i16: widening is
exact and rounding is to nearest even in integer ops (lowering/mlir_text.py), as on the other targets.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.arch import GpuArch
from tessera.lowering.mlir_text import MlirBuilder, f32_to_bf16_bits

GLOBAL = "!llvm.ptr<1>"
WAVE_SIZE = 64  # CDNA's wave64
WORKGROUP = "#gpu.address_space<workgroup>"
_STORAGE = {"f32": "f32", "bf16": "i16", "i64": "i64", "i32": "i32"}


@dataclass(frozen=True)
class LdsTile:
    """An LDS buffer: `shape` elements of `element` ("f32" or "bf16", held as i16), `pad` more per row."""

    name: str
    shape: tuple[int, ...]
    element: str
    pad: int = 0

    @property
    def storage(self) -> str:
        return _STORAGE[self.element]

    @property
    def memref(self) -> str:
        *outer, row = self.shape
        dims = "x".join(str(d) for d in (*outer, row + self.pad))
        return f"memref<{dims}x{self.storage}, {WORKGROUP}>"

    @property
    def bytes(self) -> int:
        *outer, row = self.shape
        count = row + self.pad
        for dim in outer:
            count *= dim
        return count * (4 if self.storage in ("f32", "i32") else 2 if self.storage == "i16" else 8)


class GpuKernelBuilder(MlirBuilder):
    """The body of one gpu.func. `operands` name its pointer arguments (in launch order); `lds` its tiles."""

    def __init__(self, name: str, operands: list[str], lds: list[LdsTile], threads: int) -> None:
        super().__init__()
        self.name = name
        self.operands = operands
        self.lds_tiles = {tile.name: tile for tile in lds}
        self.threads = threads
        self.tokens = "%tokens"
        self.position = "%position"
        self.wave_size = WAVE_SIZE

    # --- arguments, ids, constants -----------------------------------------------------------------------

    def arg(self, operand: str) -> str:
        """The pointer argument of a launch operand."""
        if operand not in self.operands:
            raise AssertionError(f"{self.name}: no operand '{operand}' (has {self.operands})")
        return f"%{operand}"

    def lds(self, name: str) -> str:
        if name not in self.lds_tiles:
            raise AssertionError(f"{self.name}: no LDS tile '{name}' in its Tile-IR body (has {list(self.lds_tiles)})")
        return f"%lds_{name}"

    def i32(self, value: int) -> str:
        return self.const(str(value), "i32")

    def thread_id(self) -> str:
        return self.let("tid", "gpu.thread_id x")

    def block_id(self, dim: str = "x") -> str:
        return self.let("bid", f"gpu.block_id {dim}")

    def to_i32(self, value: str) -> str:
        return self.let("c", f"arith.index_cast {value} : index to i32")

    def to_index(self, value: str) -> str:
        return self.let("c", f"arith.index_cast {value} : i32 to index")

    def barrier(self) -> None:
        self.emit("gpu.barrier")

    # --- integer helpers on i32 or index (type_ names which) ------------------------------------------

    def add(self, x: str, y: str, type_: str = "index") -> str:
        return self.let("o", f"arith.addi {x}, {y} : {type_}")

    def mul(self, x: str, y: str, type_: str = "index") -> str:
        return self.let("o", f"arith.muli {x}, {y} : {type_}")

    def div(self, x: str, y: str, type_: str = "index") -> str:
        return self.let("o", f"arith.divui {x}, {y} : {type_}")

    def rem(self, x: str, y: str, type_: str = "index") -> str:
        return self.let("o", f"arith.remui {x}, {y} : {type_}")

    def lt(self, x: str, y: str, type_: str = "index") -> str:
        return self.let("p", f"arith.cmpi ult, {x}, {y} : {type_}")

    def min_(self, x: str, y: str, type_: str = "index") -> str:
        return self.let("o", f"arith.minui {x}, {y} : {type_}")

    # --- global memory -----------------------------------------------------------------------------------

    def gaddr(self, operand: str, offset: str, element: str) -> str:
        """The address of element `offset` (an i32) of a launch operand of `element` type."""
        return self.let(
            "g", f"llvm.getelementptr {self.arg(operand)}[{offset}] : ({GLOBAL}, i32) -> {GLOBAL}, {_STORAGE[element]}"
        )

    def gload(self, operand: str, offset: str, element: str = "f32") -> str:
        """One element as f32 (bf16 widened exactly); i64 / i32 elements as they are."""
        raw = self.let("v", f"llvm.load {self.gaddr(operand, offset, element)} : {GLOBAL} -> {_STORAGE[element]}")
        return self.widen(raw) if element == "bf16" else raw

    def gload_vector(self, operand: str, offset: str, element: str, count: int) -> str:
        """`count` consecutive elements (as stored: bf16 as i16), one wide load; offset aligned to count."""
        storage = _STORAGE[element]
        size = count * (2 if storage == "i16" else 4)
        return self.let(
            "v",
            f"llvm.load {self.gaddr(operand, offset, element)} {{alignment = {size} : i64}} : "
            f"{GLOBAL} -> vector<{count}x{storage}>",
        )

    def gstore(self, value: str, operand: str, offset: str, element: str = "f32") -> None:
        """Store an f32 `value` as `element` (bf16 rounded to nearest even)."""
        stored = self.narrow(value) if element == "bf16" else value
        storage = _STORAGE[element]
        self.emit(f"llvm.store {stored}, {self.gaddr(operand, offset, element)} : {storage}, {GLOBAL}")

    def store_epilogue(self, value: str, operand: str, offset: str, epilogue: str, element: str) -> None:
        """A GEMM result into y[offset]: "store" y = value, "accumulate" y += value (the residual add),
        "relu2" y = max(value, 0)^2; y of `element` type (bf16 rounded once, at the store)."""
        if epilogue == "relu2":
            positive = self.fmax(value, self.f32(0.0))
            value = self.fmul(positive, positive)
        elif epilogue == "accumulate":
            value = self.fadd(self.gload(operand, offset, element), value)
        self.gstore(value, operand, offset, element)

    # --- LDS -----------------------------------------------------------------------------------------------

    def lds_load(self, name: str, indices: list[str]) -> str:
        """One element as stored (f32, or bf16 bits as i16)."""
        tile = self.lds_tiles[name]
        return self.let("l", f"memref.load {self.lds(name)}[{', '.join(indices)}] : {tile.memref}")

    def lds_store(self, value: str, name: str, indices: list[str]) -> None:
        """Store a value already in the tile's storage type."""
        tile = self.lds_tiles[name]
        self.emit(f"memref.store {value}, {self.lds(name)}[{', '.join(indices)}] : {tile.memref}")

    def lds_load_vector(self, name: str, indices: list[str], count: int) -> str:
        tile = self.lds_tiles[name]
        return self.let(
            "l", f"vector.load {self.lds(name)}[{', '.join(indices)}] : {tile.memref}, vector<{count}x{tile.storage}>"
        )

    def lds_store_vector(self, value: str, name: str, indices: list[str], count: int) -> None:
        tile = self.lds_tiles[name]
        self.emit(
            f"vector.store {value}, {self.lds(name)}[{', '.join(indices)}] : {tile.memref}, vector<{count}x{tile.storage}>"
        )

    # --- element conversions and math -----------------------------------------------------------------

    def widen(self, bits: str) -> str:
        """bf16 bits (i16) -> f32, exactly."""
        wide = self.let("h", f"arith.extui {bits} : i16 to i32")
        high = self.let("h", f"arith.shli {wide}, {self.i32(16)} : i32")
        return self.let("h", f"arith.bitcast {high} : i32 to f32")

    def narrow(self, value: str) -> str:
        """f32 -> bf16 bits (i16), rounded to nearest even."""
        return f32_to_bf16_bits(self, value, "f32", quiet_nan=True)

    def to_storage(self, value: str, element: str) -> str:
        """An f32 as an LDS/global element of `element` type."""
        return self.narrow(value) if element == "bf16" else value

    def fadd(self, x: str, y: str) -> str:
        return self.let("f", f"arith.addf {x}, {y} : f32")

    def fmul(self, x: str, y: str) -> str:
        return self.let("f", f"arith.mulf {x}, {y} : f32")

    def fmax(self, x: str, y: str) -> str:
        return self.let("f", f"arith.maximumf {x}, {y} : f32")

    def math(self, fn: str, x: str) -> str:
        """math.exp / log / rsqrt / sqrt ...: the AMDGPU back end has each as an instruction sequence."""
        return self.let("m", f"math.{fn} {x} : f32")

    def shuffle_xor(self, value: str, offset: int, type_: str = "f32") -> str:
        """The `value` of lane (this lane xor offset) of the wave."""
        result = self.fresh("s")
        self.emit(
            f"{result}, {self.fresh('ok')} = gpu.shuffle xor {value}, {self.i32(offset)}, "
            f"{self.i32(self.wave_size)} : {type_}"
        )
        return result

    def wave_reduce(self, value: str, op: str = "add", width: int | None = None) -> str:
        """The sum (op "add") or maximum ("max") of `value` over `width` consecutive lanes (default: the
        whole wave), in every lane."""
        combine = {"add": "arith.addf", "max": "arith.maximumf"}[op]
        offset = (width or self.wave_size) // 2
        while offset >= 1:
            shuffled = self.shuffle_xor(value, offset)
            value = self.let("r", f"{combine} {value}, {shuffled} : f32")
            offset //= 2
        return value

    # --- the function ----------------------------------------------------------------------------------

    def render(self) -> str:
        params = [f"%{operand}: {GLOBAL}" for operand in self.operands] + ["%tokens: i32", "%position: i32"]
        workgroup = ", ".join(f"%lds_{tile.name}: {tile.memref}" for tile in self.lds_tiles.values())
        attribution = f" workgroup({workgroup})" if workgroup else ""
        attrs = (
            f"known_block_size = array<i32: {self.threads}, 1, 1>, "
            f'rocdl.flat_work_group_size = "{self.threads},{self.threads}"'
        )
        body = "\n".join(["    " + definition for _, definition in self.constants.values()])
        lines = "\n".join("  " + line for line in self.lines)
        return (
            f"  gpu.func @{self.name}({', '.join(params)}){attribution} kernel attributes {{{attrs}}} {{\n"
            f"{body}\n{lines}\n    gpu.return\n  }}\n"
        )


def kernels_module(functions: list[str]) -> str:
    """Kernels as one gpu.module (the unit convert-gpu-to-rocdl lowers)."""
    return "module attributes {gpu.container_module} {\ngpu.module @kernels {\n" + "\n".join(functions) + "}\n}\n"


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
    """What an emitter reads of one Tile-IR kernel: its identity, dims and tiles, its LDS tiles (from the
    body's loads into LDS, so the code allocates exactly what Tile-IR planned) and the arch."""

    name: str
    kind: str
    dims: dict[str, int | float | str]
    tiles: dict[str, int | float | str]
    lds: list[LdsTile]
    arch: GpuArch
    mma_element: str | None  # the element type of the body's matrix tiles ("bf16" | "f32"), if any

    def dim(self, key: str) -> int:
        return int(self.dims[key])

    def tile(self, key: str) -> int:
        return int(self.tiles[key])


@dataclass(frozen=True)
class GpuKernel:
    """An emitted kernel: its gpu.func text and launch geometry."""

    name: str
    text: str
    threads: int
    grid: Grid
    lds_bytes: int
