"""Tile-IR -> the x86 target: upstream MLIR kernels (func/scf/arith/memref/vector/math) and the program
that sequences them.

    lower_kernels(module) -> str       one function per `tessera.tile.kernel` (each written in kernels/)
                                       through convert-tessera-tile-to-x86 and tessera-expand-math
    lower_programs(module) -> dict     each program (@prefill, @decode) as the list of launches the runtime
                                       makes: kernel symbol, argument list, parallel grid; the buffer plan's
                                       slots; the weights (with their packing) and the state

`tessera-opt file.mlir -t x86-mlir` prints lower_kernels' output; tessera-compile writes both into OUT/x86/.
A kernel's argument list is its launch's ins then outs, then the scalars its body reads (the sequence
position), then the [begin, end) range of its grid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, ModuleOp, StringAttr, UnitAttr, f64, i64
from xdsl.ir import Attribute, Block, Region

from tessera.dialects import tile
from tessera.dialects.tile import plain_dict
from tessera.dialects.upstream import upstream_text
from tessera.errors import TesseraError
from tessera.lowering.expand_math import expand_math
from tessera.lowering.programs import describe_programs
from tessera.lowering.tile_to_x86 import PROGRAM_RANGE, lower_to_x86
from tessera.tiling import x86 as tiling
from tessera.tiling import x86_gemm

# The launch fields a kernel is compiled for (program.json records them per kernel; runtime/program_check.py).
KERNEL_FIELDS = ("grid", "parallel", "align")
PROGRAM_FORMAT = "tessera-x86-program"


class X86LoweringError(TesseraError):
    """A Tile-IR module the x86 target cannot lower (an unknown kernel kind, tiles not chosen, ...)."""


def _dims(kernel: tile.KernelOp) -> dict[str, Any]:
    return dict(plain_dict(kernel.dims))


def gemm_tiles(kernel: tile.KernelOp) -> x86_gemm.GemmTiles:
    assert kernel.tiles is not None
    chosen = plain_dict(kernel.tiles)
    fields = {
        name for name in x86_gemm.GemmTiles.__dataclass_fields__ if x86_gemm.GemmTiles.__dataclass_fields__[name].init
    }
    return x86_gemm.GemmTiles(**{k: int(v) for k, v in chosen.items() if k in fields})


def gemm_spec(kernel: tile.KernelOp) -> x86_gemm.GemmSpec:
    """The GEMM a matmul kernel is: its dims, and the weight element type its tiles read (kernels/gemm.py)."""
    assert kernel.tiles is not None
    weight_bf16 = int(plain_dict(kernel.tiles).get("weight_bf16", 0))
    return tiling.gemm_spec(_dims(kernel), "bf16" if weight_bf16 else "f32")


def gemm_kernel(name: str, spec: x86_gemm.GemmSpec, tiles: x86_gemm.GemmTiles | None = None) -> tile.KernelOp:
    """The x86 `tessera.tile.kernel` of one projection (kernels/gemm.py), with `tiles` or the policy's: what
    tessera-tile-choose-tiles makes of a matmul, for the GEMM's tests and benchmarks."""
    tiles = tiles or x86_gemm.choose_tiles(spec)
    return _matmul_kernel(name, spec, tiles, tiling.gemm_tile_sizes(spec, tiles))


def _matmul_kernel(name: str, spec: x86_gemm.GemmSpec, tiles: x86_gemm.GemmTiles, chosen: dict[str, int],
                   ranged: bool = False) -> tile.KernelOp:  # fmt: skip
    """A matmul kernel over the vector blocking's grid of panels, its body built from `chosen` tiles."""
    from tessera.kernels.gemm import matmul

    dims = tiling.gemm_dims(spec)
    grid = x86_gemm.panel_count(spec, tiles)
    return _x86_kernel(name, "matmul", dims, ("panels", grid), chosen, matmul(dims, chosen), ranged)


def _x86_kernel(name: str, kind: str, dims: Mapping[str, Any], grid: tuple[str, int], tiles: Mapping[str, int],
                body: Block, ranged: bool) -> tile.KernelOp:  # fmt: skip
    """A `tessera.tile.kernel` for x86 built here (a variant or a test's kernel): `grid` its parallel dimension
    and extent, `body` built from `tiles`."""
    parallel, extent = grid
    properties: dict[str, Attribute] = {
        "sym_name": StringAttr(name),
        "kind": StringAttr(kind),
        "dims": DictionaryAttr({key: _attribute(value) for key, value in dims.items()}),
        "parallel": StringAttr(parallel),
        "grid": IntegerAttr(extent, i64),
        "target": StringAttr("x86"),
        "tiles": DictionaryAttr({key: IntegerAttr(value, i64) for key, value in tiles.items()}),
    }
    if ranged:
        properties["ranged"] = UnitAttr()
    return tile.KernelOp(properties=properties, regions=[Region(body)])


def _attribute(value: int | float | str) -> IntegerAttr | FloatAttr | StringAttr:
    if isinstance(value, str):
        return StringAttr(value)
    return FloatAttr(value, f64) if isinstance(value, float) else IntegerAttr(value, i64)


def emit_kernel(kernel: tile.KernelOp) -> str:
    name, kind = kernel.sym_name.data, kernel.kind.data
    if kernel.tiles is None:
        raise X86LoweringError(f"{kernel.name} @{name}: no tiles chosen (run tessera-tile-choose-tiles{{target=x86}})")
    if kernel.is_dataflow():
        return _lower_dataflow(kernel)
    raise X86LoweringError(f"{kernel.name} @{name}: kind '{kind}' has no x86 lowering")


def _lower_dataflow(kernel: tile.KernelOp) -> str:
    """A kernel written in kernels/: convert-tessera-tile-to-x86 and tessera-expand-math on a copy of it, as
    MLIR 22 text."""
    module = ModuleOp([kernel.clone()])
    lower_to_x86(module)
    expand_math(module, "x86")
    return upstream_text(module.body.block.first_op)  # type: ignore[arg-type]


def kernels(module: ModuleOp) -> list[tile.KernelOp]:
    return [op for op in module.ops if isinstance(op, tile.KernelOp)]


def parameter_names(kernel: tile.KernelOp) -> list[str]:
    """The parameters of the function convert-tessera-tile-to-x86 makes of `kernel`: its operands and scalars as
    Tile-IR names them, then the range of programs a call runs, [begin, end)."""
    args = kernel.body.block.args
    operands = args[: len(args) - len(kernel.program_args())]
    return [*(arg.name_hint or f"arg{index}" for index, arg in enumerate(operands)), *PROGRAM_RANGE]


def kernels_module(functions: list[str], names: Mapping[str, Sequence[str]] | None = None) -> str:
    """Kernels' functions (emit_kernel's) as one module in MLIR 22's form, parameters named by function."""
    from tessera import toolchain

    return toolchain.join_modules(functions, names)


def lower_kernels(module: ModuleOp) -> str:
    """The upstream MLIR module holding every kernel of `module`."""
    found = kernels(module)
    return kernels_module(
        [emit_kernel(kernel) for kernel in found], {k.sym_name.data: parameter_names(k) for k in found}
    )


def amx_kernel(name: str, spec: x86_gemm.GemmSpec, tiles: x86_gemm.GemmTiles) -> tile.KernelOp:
    """The AMX variant of a GEMM as Tile-IR: kernels/gemm.py's matrix-unit blocking (a ranged body over the
    vector kernel's panels, bf16 weights in k pairs), `<name>__amx`."""
    return _matmul_kernel(f"{name}__amx", spec, tiles, x86_gemm.matrix_unit_tiles(spec, tiles), ranged=True)


def amx_scan_kernel(name: str, dims: Mapping[str, Any]) -> tile.KernelOp | None:
    """The AMX variant of an ssd_scan as Tile-IR (kernels/ssd_matrix.py: its products bf16 on the matrix
    unit, a ranged body over heads as the vector kernel's), `<name>__amx`; None where its N and P do not fit."""
    from tessera.kernels.mamba import ssd_scan

    tiles = tiling.matrix_scan_tiles(dims)
    if tiles is None:
        return None
    grid = ("heads", int(dims["num_heads"]))
    return _x86_kernel(f"{name}__amx", "ssd_scan", dims, grid, tiles, ssd_scan(dims, tiles), ranged=True)


def bf16_dot_kernel(name: str, spec: x86_gemm.GemmSpec, tiles: x86_gemm.GemmTiles) -> tile.KernelOp | None:
    """The AVX-512 BF16 variant of a GEMM as Tile-IR: the vector blocking with k in pairs (bf16 weights packed
    as pair panels, one dot product per pair), `<name>__avx512bf16`; None where the GEMM has none (x or the
    weight not bf16, or K or the K block odd)."""
    if spec.weight_dtype != "bf16" or spec.x_dtype != "bf16" or spec.k % 2 or tiles.kc % 2:
        return None
    chosen = {**tiling.gemm_tile_sizes(spec, tiles), "pairs": 1}
    return _matmul_kernel(f"{name}__avx512bf16", spec, tiles, chosen)


# The kinds whose kernels size their register blocks by the tiles' `lanes` and `accumulators` (the GEMMs and
# the MoE experts' GEMMs, kernels/gemm.py's; the SSD scan's products; attention's scores and p · V): those
# that have an AVX2 variant.
AVX2_KINDS = ("matmul", "moe_experts", "ssd_scan", "attention")


def avx2_kernel(kernel: tile.KernelOp) -> tile.KernelOp:
    """The AVX2 variant of a kernel of AVX2_KINDS as Tile-IR: the same kernel body, grid and buffers (the same
    packed weights) built from its tiles with register blocks for 16 ymm registers (x86_gemm.avx2_tiles: a
    6-row block takes its 64-column panel in 16-column stripes), `<name>__avx2`."""
    return _avx2_variant(_variant_request(kernel, "avx2"))


def _variant_request(kernel: tile.KernelOp, isa: str) -> dict[str, Any]:
    """What rebuilding `kernel` with other tiles takes, as JSON values."""
    assert kernel.tiles is not None
    return {"name": kernel.sym_name.data, "isa": isa, "kind": kernel.kind.data, "dims": _dims(kernel),
            "tiles": dict(plain_dict(kernel.tiles)), "grid": kernel.grid.value.data,
            "parallel": kernel.parallel.data, "ranged": kernel.ranged is not None}  # fmt: skip


def _avx2_variant(request: Mapping[str, Any]) -> tile.KernelOp:
    """The kernel `request` describes, its body written by tessera-tile-choose-tiles' write_body from the
    AVX2 tiles (so that its scalars and range are the vector kernel's)."""
    from tessera.passes.tile_choose_tiles import write_body
    from tessera.tiling.choice import TileChoice

    tiles = x86_gemm.avx2_tiles(request["tiles"])
    grid = (request["parallel"], request["grid"])
    kernel = _x86_kernel(f"{request['name']}__avx2", request["kind"], request["dims"], grid, tiles, Block(), False)
    write_body(kernel, TileChoice(tiles, ranged=request["ranged"]), [])
    return kernel


# The variants of the GEMMs an artifact carries beside the vector kernels, each in a library of its own
# (runtime/cpu_features.py picks one per CPU): for bf16, AMX tiles and AVX-512 BF16 dot products (the matrix
# variants; the AMX library also holds a bf16 artifact's SSD scans: amx_scan_kernel); for CPUs with AVX2 and
# no AVX-512, any precision's AVX2_KINDS in register blocks that fit 16 ymm registers.
MATRIX_VARIANTS = ("amx", "avx512bf16", "avx2")


def matrix_variant_pieces(module: ModuleOp, isa: str, emulated: bool = False) -> list[str]:
    """What building each kernel's `isa` variant takes, one JSON text per kernel that has one: a matmul's name,
    GEMM spec and tiles, for AMX each bf16 ssd_scan's name and dims, for AVX2 each AVX2_KINDS kernel's
    properties (_variant_request): the unit `matrix_variant` builds from, in a worker process, and the kernel
    cache keys."""
    if isa not in MATRIX_VARIANTS:
        raise X86LoweringError(f"unknown matrix variant '{isa}' (expected one of {', '.join(MATRIX_VARIANTS)})")
    pieces = []
    for kernel in kernels(module):
        request: dict[str, Any] = {"name": kernel.sym_name.data, "isa": isa, "emulated": emulated}
        if isa == "avx2":
            if kernel.kind.data not in AVX2_KINDS:
                continue
            request.update(_variant_request(kernel, isa))
        elif kernel.kind.data == "matmul":
            request.update(spec=vars(gemm_spec(kernel)), tiles=vars(gemm_tiles(kernel)))
        elif kernel.kind.data == "ssd_scan" and isa == "amx" and _scan_rounds_to_bf16(kernel):
            request.update(kind="ssd_scan", dims=_dims(kernel))
        else:
            continue
        pieces.append(json.dumps(request, sort_keys=True))
    return pieces


def _scan_rounds_to_bf16(kernel: tile.KernelOp) -> bool:
    """Whether an ssd_scan's artifact is bf16, so that its AMX variant may round the products' operands."""
    return kernel.tiles is not None and bool(plain_dict(kernel.tiles).get("operand_bf16", 0))


def matrix_variant(piece: str) -> str:
    """One kernel's variant (amx_kernel or amx_scan_kernel / bf16_dot_kernel / avx2_kernel) through
    convert-tessera-tile-to-x86 with that pattern, as JSON: its function as MLIR 22 text and its parameter
    names ({} where the kernel has no such variant).
    emulated (AMX only): lowered without the AMX pattern (its products as vector FMAs), for CPUs without
    AMX: the same kernel, its numbers testable anywhere."""
    request = json.loads(piece)
    name, isa = request["name"], request["isa"]
    if isa == "avx2":
        tiled: tile.KernelOp | None = _avx2_variant(request)
    elif request.get("kind") == "ssd_scan":
        tiled = amx_scan_kernel(name, request["dims"])
    else:
        spec, tiles = x86_gemm.GemmSpec(**request["spec"]), x86_gemm.GemmTiles(**request["tiles"])
        tiled = amx_kernel(name, spec, tiles) if isa == "amx" else bf16_dot_kernel(name, spec, tiles)
    if tiled is None:
        return "{}"
    names = parameter_names(tiled)
    variant = ModuleOp([tiled])
    lower_to_x86(variant, amx=isa == "amx" and not request["emulated"], bf16_dot=isa == "avx512bf16")
    expand_math(variant, "x86")
    return json.dumps({"name": name, "text": upstream_text(variant.body.block.first_op), "names": names})  # type: ignore[arg-type]


def matrix_variants(module: ModuleOp, isa: str, emulated: bool = False) -> dict[str, tuple[str, list[str]]]:
    """Every GEMM's `isa` variant (matrix_variant of each piece, here in this process), by kernel name: its
    function as MLIR 22 text and its parameter names; GEMMs without one are left out."""
    return variants_by_name(matrix_variant(piece) for piece in matrix_variant_pieces(module, isa, emulated))


def variants_by_name(built: Iterable[str]) -> dict[str, tuple[str, list[str]]]:
    """matrix_variant's results by kernel name, those without a variant left out."""
    variants = {}
    for text in built:
        variant = json.loads(text)
        if variant:
            variants[variant["name"]] = variant["text"], variant["names"]
    return variants


def variants_module(isa: str, variants: Mapping[str, tuple[str, list[str]]]) -> str:
    """The `isa` variants (matrix_variants') as one module, parameters named."""
    return kernels_module(
        [text for text, _ in variants.values()], {f"{name}__{isa}": names for name, (_, names) in variants.items()}
    )


def _launch_fields(kernel: tile.KernelOp, args: list[dict[str, Any]], program: str,
                   weights: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The x86 launch: the emitter's argument order and scalars, the thread split's alignment, weight packing.
    How many threads a launch takes is the native program's call (lowering/x86/native_program.py)."""
    scalars = kernel.scalar_names()
    args += [{name: True} for name in scalars]
    _note_packing(weights, args, kernel)
    fields: dict[str, Any] = {"args": args, "parallel": kernel.parallel.data, "grid": int(kernel.grid.value.data)}
    align = int(plain_dict(kernel.tiles).get("align", 1)) if kernel.tiles is not None else 1
    if align > 1:  # the kernel's programs share work in runs of `align` (the heads of an SSM group)
        fields["align"] = align
    return fields


def lower_programs(module: ModuleOp) -> dict[str, Any]:
    """The launch lists of every program, with the weights and state they use (program.json)."""
    return describe_programs(module, PROGRAM_FORMAT, _launch_fields, KERNEL_FIELDS)


def _note_packing(weights: dict[str, dict[str, Any]], args: list[dict[str, Any]], kernel: tile.KernelOp) -> None:
    """The weights a kernel of kernels/ reads in panels (kernels.PACKED: a GEMM's weight, the MoE experts'
    stacks): the runtime packs them once at load as program.json's `packing` says."""
    from tessera.kernels import PACKED

    packed = PACKED.get(kernel.kind.data, {})
    if not packed or not kernel.is_dataflow():
        return
    assert kernel.tiles is not None
    tiles = plain_dict(kernel.tiles)
    packing = {"layout": "gemm_panels", "nr": int(tiles["nr"]), "dtype": "bf16" if tiles.get("weight_bf16") else "f32"}
    for arg, buffer in zip(args, kernel.body.block.args, strict=False):
        if buffer.name_hint not in packed:
            continue
        name = arg["weight"]
        previous = weights[name].get("packing")
        if previous is not None and previous != packing:
            raise X86LoweringError(f"weight '{name}': read by kernels with different packings {previous} and {packing}")
        weights[name]["packing"] = packing
