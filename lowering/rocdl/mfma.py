"""One wave's 16x16 matrix tile on CDNA's MFMA: operand fragments read from LDS, the instruction, and where
each accumulator element lives — the layout every ROCDL matrix kernel shares.

Layouts of the two instructions Tessera uses (wave64; AMD's matrix instruction calculator, CDNA2/CDNA3):

    rocdl.mfma.f32.16x16x16bf16.1k   A: vector<4xi16>, lane l holds A[l % 16][4 (l / 16) + i], i = 0..3
                                     B: vector<4xi16>, lane l holds B[4 (l / 16) + i][l % 16]
    rocdl.mfma.f32.16x16x4f32        A: f32, lane l holds A[l % 16][l / 16];  B: B[l / 16][l % 16]
    both                             D: vector<4xf32>, lane l holds D[4 (l / 16) + i][l % 16]

So A is read along K from a row of its tile, and B along K from a column: both operands want K
contiguous in LDS when B is stored transposed ([n][k], the weight's own layout). `k_per_lane` is 4 (bf16)
or 1 (f32).
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.arch import GpuArch, MatrixInstruction
from tessera.lowering.rocdl.kernel_text import GpuKernelBuilder

ACC = "vector<4xf32>"


@dataclass(frozen=True)
class Mfma:
    """The MFMA for one operand element type ("bf16" or "f32") on one arch."""

    instruction: MatrixInstruction
    element: str

    @staticmethod
    def for_element(arch: GpuArch, element: str) -> Mfma:
        instruction = arch.instruction(element)
        assert instruction is not None and instruction.name.startswith("rocdl.mfma"), (arch.name, element)
        return Mfma(instruction, element)

    @property
    def k(self) -> int:
        return self.instruction.k

    @property
    def k_per_lane(self) -> int:
        return 4 if self.element == "bf16" else 1

    @property
    def operand_type(self) -> str:
        return "vector<4xi16>" if self.element == "bf16" else "f32"


class WaveLanes:
    """A lane's coordinates in a 16x16 tile: `col` = l % 16, `quad` = l / 16 (0..3), as index values."""

    def __init__(self, b: GpuKernelBuilder, lane: str) -> None:
        self.lane = lane
        self.col = b.rem(lane, b.index(16))
        self.quad = b.div(lane, b.index(16))


def read_k_contiguous(b: GpuKernelBuilder, mfma: Mfma, tile: str, lanes: WaveLanes, row0: str, k0: str) -> str:
    """An A fragment from a [m][k] LDS tile, or a B fragment from a [n][k] tile (B transposed):
    lane l reads tile[row0 + l % 16][k0 + k_per_lane (l / 16) + i]."""
    row = b.add(row0, lanes.col)
    k = b.add(k0, b.mul(lanes.quad, b.index(mfma.k_per_lane)))
    if mfma.element == "bf16":
        return b.lds_load_vector(tile, [row, k], 4)
    return b.lds_load(tile, [row, k])


def read_k_strided(b: GpuKernelBuilder, mfma: Mfma, tile: str, lanes: WaveLanes, k0: str, col0: str) -> str:
    """A B fragment from a [k][n] LDS tile, or an A fragment from a [k][m] tile (A transposed):
    lane l reads tile[k0 + k_per_lane (l / 16) + i][col0 + l % 16]."""
    col = b.add(col0, lanes.col)
    base = b.add(k0, b.mul(lanes.quad, b.index(mfma.k_per_lane)))
    if mfma.element != "bf16":
        return b.lds_load(tile, [base, col])
    values = [b.lds_load(tile, [b.add(base, b.index(i)), col]) for i in range(4)]
    return b.let("frag", f"vector.from_elements {', '.join(values)} : vector<4xi16>")


def multiply(b: GpuKernelBuilder, mfma: Mfma, a: str, b_operand: str, acc: str) -> str:
    """acc + A·B on the wave's 16x16 tile."""
    zero = b.i32(0)
    t = mfma.operand_type
    return b.let(
        "acc",
        f"{mfma.instruction.name} {a}, {b_operand}, {acc}, {zero}, {zero}, {zero} : "
        f"({t}, {t}, {ACC}, i32, i32, i32) -> {ACC}",
    )


def zero_accumulator(b: GpuKernelBuilder) -> str:
    return b.const("0.0", ACC)


def accumulator_row(b: GpuKernelBuilder, lanes: WaveLanes, item: int) -> str:
    """The tile row of accumulator element `item` (0..3) in this lane: 4 (l / 16) + item; its column is l % 16."""
    return b.add(b.mul(lanes.quad, b.index(4)), b.index(item))


def element(b: GpuKernelBuilder, acc: str, item: int) -> str:
    return b.let("e", f"vector.extract {acc}[{item}] : f32 from {ACC}")
