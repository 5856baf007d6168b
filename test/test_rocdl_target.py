"""The ROCDL target (AMD CDNA), proven without an AMD GPU: it compiles every config for gfx942 and gfx90a,
matrix kernels issue MFMA, each kernel descriptor's LDS equals Tile-IR's footprint and the manifest's,
the code object links where ld.lld exists, and bad input fails in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import NEEDS_MLIR, assert_one_line_error, run_tool

pytestmark = NEEDS_MLIR

CONFIGS = Path(__file__).parent.parent / "configs"
# The kinds lowered to MFMA (attention, written once in kernels/, multiplies in the SIMT lowering's loops until
# an MFMA pattern of tessera.tile.mma lands).
MATRIX_KINDS = ("matmul", "ssd_scan", "moe_experts")
EM_AMDGPU = 224


def compile_rocdl(out: Path, config: str, arch: str, *extra: str) -> dict:  # type: ignore[type-arg]
    run_tool("tessera_compile", CONFIGS / config, "--target", "rocdl", "--arch", arch, "-o", out, "-q", *extra)
    return json.loads((out / "tessera.json").read_text())


def _lld_present() -> bool:
    from tessera.toolchain import find_lld

    return find_lld() is not None


@pytest.mark.parametrize("arch", ["gfx942", "gfx90a"])
@pytest.mark.parametrize(
    ("config", "precision"),
    [
        ("nemotron_h_tiny.yaml", "fp32"),
        ("nemotron_h_tiny.yaml", "bf16"),
        ("nemotron_h_mid_moe.yaml", "bf16"),
        ("nemotron_h_mid_moe.yaml", "fp32"),
    ],
)
def test_compiles_with_mfma_and_descriptor_lds_equal_to_the_manifest(
    tmp_path: Path, config: str, precision: str, arch: str
) -> None:
    from tessera.lowering.rocdl.pipeline import kernel_assembly, kernel_descriptors

    manifest = compile_rocdl(tmp_path, config, arch, "--precision", precision)
    entry = manifest["targets"]["rocdl"]
    assert entry["arch"] == arch
    target_dir = tmp_path / "rocdl"
    descriptors = kernel_descriptors((target_dir / "kernels.o").read_bytes())
    bodies = kernel_assembly((target_dir / "kernels.s").read_text())
    tile_ir = (target_dir / "tile.mlir").read_text()
    program = json.loads((target_dir / "program.json").read_text())
    launches = [launch for p in program["programs"].values() for launch in p["launches"]]
    kinds = {launch["kernel"]: launch["kind"] for launch in [*launches, *program["weight_draws"]]}
    assert set(entry["kernel_table"]) == set(descriptors) == set(kinds)
    for name, row in entry["kernel_table"].items():
        assert descriptors[name].group_segment_fixed_size == row["lds_bytes"], name
        assert f"@{name} " in tile_ir and f"footprint = {row['lds_bytes']} : i64" in _kernel_line(tile_ir, name)
        assert descriptors[name].private_segment_fixed_size == 0, f"{name}: scratch (spills or a stack)"
        if kinds[name] in MATRIX_KINDS and not name.endswith("_tokens1"):  # a decode GEMV streams W on SIMT
            assert "v_mfma_f32_16x16x" in bodies[name], f"{name}: a matrix kernel without MFMA"
            assert row["lds_bytes"] > 0 and "ds_read" in bodies[name] and "ds_write" in bodies[name], name
    if _lld_present():
        from elftools.elf.elffile import ELFFile

        hsaco = target_dir / "kernels.hsaco"
        with hsaco.open("rb") as handle:
            elf = ELFFile(handle)
            assert elf["e_machine"] == "EM_AMDGPU" or elf.header["e_machine"] == EM_AMDGPU
            assert elf["e_type"] == "ET_DYN"
        linked = kernel_descriptors(hsaco.read_bytes())
        assert {name: d.group_segment_fixed_size for name, d in linked.items()} == {
            name: row["lds_bytes"] for name, row in entry["kernel_table"].items()
        }


def _kernel_line(tile_ir: str, name: str) -> str:
    return next(line for line in tile_ir.splitlines() if f"tessera.tile.kernel @{name} " in line)


def test_code_object_needs_ld_lld_or_says_so(tmp_path: Path) -> None:
    manifest = compile_rocdl(tmp_path, "nemotron_h_tiny.yaml", "gfx942")
    code_object = manifest["targets"]["rocdl"]["code_object"]
    if _lld_present():
        assert code_object == "rocdl/kernels.hsaco" and (tmp_path / code_object).stat().st_size > 0
    else:
        assert code_object is None and not (tmp_path / "rocdl" / "kernels.hsaco").exists()


@pytest.mark.parametrize("arch", ["gfx942", "gfx90a"])
def test_nano_12b_compiles(tmp_path: Path, arch: str) -> None:
    manifest = compile_rocdl(tmp_path, "nemotron_nano_12b_v2_base.yaml", arch)
    table = manifest["targets"]["rocdl"]["kernel_table"]
    assert all(row["lds_bytes"] <= 64 * 1024 for row in table.values())
    matrix = [row for name, row in table.items() if name.startswith(MATRIX_KINDS) and not name.endswith("_tokens1")]
    assert all(row["mfma"] > 0 for row in matrix)


def test_emit_stages_show_rocdl_and_amdgcn() -> None:
    rocdl = run_tool("tessera_compile", CONFIGS / "nemotron_h_tiny.yaml", "--target", "rocdl", "--emit=rocdl").stdout
    assert "gpu.module @kernels" in rocdl and "rocdl.mfma.f32.16x16x4f32" in rocdl
    assert "#gpu.address_space<workgroup>" in rocdl and 'flat_work_group_size = "64,64"' in rocdl
    asm = run_tool(
        "tessera_compile", CONFIGS / "nemotron_h_tiny.yaml", "--target", "rocdl", "--arch", "gfx90a", "--emit=amdgcn"
    ).stdout
    assert '.amdgcn_target "amdgcn-amd-amdhsa--gfx90a' in asm and "v_mfma_f32_16x16x4" in asm


def test_unknown_arch_is_one_line(tmp_path: Path) -> None:
    result = run_tool(
        "tessera_compile", CONFIGS / "nemotron_h_tiny.yaml", "--target", "rocdl", "--arch", "gfx1100",
        "-o", tmp_path / "out", ok=False,
    )  # fmt: skip
    assert_one_line_error(result, "field 'compile.arch': the rocdl target builds for gfx942, gfx90a, not 'gfx1100'")
    assert not (tmp_path / "out").exists()


def test_run_says_there_is_no_hip_runtime(tmp_path: Path) -> None:
    compile_rocdl(tmp_path, "nemotron_h_tiny.yaml", "gfx942")
    result = run_tool("tessera_run", tmp_path, "--target", "rocdl", "--input-ids", "1,2", ok=False)
    assert_one_line_error(result, "no HIP runtime on this machine")


def test_an_lds_plan_over_the_limit_is_refused() -> None:
    """A kernel whose scratch exceeds 64 KiB of LDS fails at Tile-IR, naming the kernel and the limit."""
    from xdsl.dialects.builtin import MemRefType, f32

    from tessera.dialects import tile
    from tessera.errors import TesseraError
    from tessera.frontend.config import load_model
    from tessera.frontend.graph_builder import build_graph
    from tessera.passes.tile_compute_footprint import compute_footprints
    from tessera.targets.stages import lower_to_schedule, lower_to_tile

    spec = load_model(str(CONFIGS / "nemotron_h_tiny.yaml"))
    module = lower_to_tile(lower_to_schedule(build_graph(spec.config, spec.source), spec), spec, "gfx942")
    kernel = next(op for op in module.ops if isinstance(op, tile.KernelOp) and op.kind.data == "moe_experts")
    kernel.body.block.add_op(tile.AllocOp(MemRefType(f32, [64, 1024])))  # 256 KiB of scratch
    with pytest.raises(TesseraError, match=rf"@{kernel.sym_name.data}: footprint \d+ bytes exceeds the gfx942 limit"):
        compute_footprints(module)
