"""The sm_90a GEMM (lowering/nvvm), proven without a GPU: its descriptor, swizzle, fragment and mbarrier
reasoning checked in Python; its text through MLIR 22, LLVM's NVPTX back end and ptxas, with WGMMA, TMA and
mbarriers in the PTX, HGMMA and UTMALDG in the SASS and no spills. Numerics need a GPU (see
lowering/nvvm/__init__.py)."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from conftest import NEEDS_MLIR

from tessera.arch import gpu_arch
from tessera.errors import TesseraError
from tessera.lowering.nvvm import gemm
from tessera.lowering.nvvm.gemm import Sm90GemmPlan, accumulator_coordinate, smem_descriptor, stage_and_parity
from tessera.tiling.gpu import policies

Shape = tuple[int, int, str, str, bool, bool, int | None]
if TYPE_CHECKING:
    from tessera.lowering.nvvm.pipeline import Cubin

SHAPES: list[Shape] = [
    # (n, k, epilogue, y dtype, bias, row_scale, mma_n override)
    (200, 64, "store", "f32", True, True, None),
    (200, 64, "relu2", "bf16", False, False, None),
    (5120, 5120, "accumulate", "bf16", True, False, None),
    (5120, 5120, "relu2", "f32", False, True, None),
    (5120, 5120, "store", "f32", True, True, 128),
]


def plan_tiles(n: int, k: int, epilogue: str, y_dtype: str) -> tuple[dict[str, int], int]:
    """The Tile-IR plan of the matmul on sm_90a and the shared-memory bytes its body loads into."""
    choice = policies()["matmul"](
        {"n": n, "k": k, "epilogue": epilogue, "y_dtype": y_dtype}, "bf16", gpu_arch("sm_90a")
    )
    shared = 0
    for op, props in choice.body:
        if op == "load" and props["space"] == "shared":
            count = 2  # bf16
            for dim in props["shape"]:  # type: ignore[attr-defined]
                count *= int(dim)
            shared += count
    return choice.tiles, shared


# --- the reasoning, in Python ----------------------------------------------------------------------------


def test_shared_memory_is_the_plan_plus_six_mbarriers() -> None:
    tiles, planned = plan_tiles(5120, 5120, "store", "f32")
    kernel = gemm.gemm_sm90_kernel("g", 5120, 5120, True, True, "store", "f32", tiles)
    plan = Sm90GemmPlan.from_tiles(tiles)
    assert planned == plan.operand_bytes == 3 * (128 * 64 + 128 * 64) * 2 == 98304
    assert kernel.lds_bytes == plan.shared_bytes == 98304 + 6 * 8
    assert [plan.full_barrier(s) for s in range(3)] == [98304, 98312, 98320]
    assert [plan.empty_barrier(s) for s in range(3)] == [98328, 98336, 98344]
    assert all(offset % 1024 == 0 for s in range(3) for offset in (plan.x_offset(s), plan.w_offset(s)))
    assert kernel.threads == 384 and kernel.grid.plain() == {"x": [5120, 128], "y": ["tokens", 128]}


def test_descriptor_fields() -> None:
    descriptor = smem_descriptor(0x1400)
    assert descriptor & 0x3FFF == 0x1400 >> 4  # start address >> 4
    assert (descriptor >> 16) & 0x3FFF == 1  # leading byte offset (unused for swizzled K-major) = 16 B
    assert (descriptor >> 32) & 0x3FFF == 1024 >> 4  # stride byte offset: 8 rows of 128 B
    assert (descriptor >> 49) & 7 == 0  # base offset
    assert descriptor >> 62 == 1  # 128-byte swizzle


@pytest.mark.parametrize("mma_n", [64, 128])
def test_descriptor_addresses_match_the_tma_swizzle(mma_n: int) -> None:
    """What WGMMA reads for (row, k) of its operand, from the descriptors the kernel forms (base + stage,
    + consumer rows or N chunk, + 32 bytes per K-step), is where TMA wrote that element of the tile."""
    plan = Sm90GemmPlan(mma_n=mma_n)
    smem = 0x400  # where sm_90's dynamic shared memory starts (after 1 KiB reserved), 1024-aligned
    for stage in range(plan.stages):
        for step in range(plan.block_k // 16):
            for consumer in range(plan.consumers):
                descriptor = smem_descriptor(smem + gemm.a_operand_offset(plan, stage, consumer, step))
                for row, kk in itertools.product(range(64), range(16)):
                    tma = gemm.tma_byte_address(smem + plan.x_offset(stage), consumer * 64 + row, step * 16 + kk)
                    assert gemm.operand_byte_address(descriptor, row, kk) == tma, (stage, step, consumer, row, kk)
            for chunk in range(plan.block_n // mma_n):
                descriptor = smem_descriptor(smem + gemm.b_operand_offset(plan, stage, chunk, step))
                for row, kk in itertools.product(range(mma_n), range(16)):
                    tma = gemm.tma_byte_address(smem + plan.w_offset(stage), chunk * mma_n + row, step * 16 + kk)
                    assert gemm.operand_byte_address(descriptor, row, kk) == tma, (stage, step, chunk, row, kk)


def test_the_kernel_forms_those_descriptors() -> None:
    """The constants of the emitted descriptor arithmetic: the fixed fields, the stage and K-step strides."""
    tiles, _ = plan_tiles(5120, 5120, "store", "f32")
    text = gemm.emit_gemm_sm90("g", 5120, 5120, False, False, "store", "f32", tiles)
    plan = Sm90GemmPlan.from_tiles(tiles)
    assert f"arith.constant {smem_descriptor(0)} : i64" in text
    assert f"arith.constant {plan.x_tile_bytes >> 4} : i64" in text  # a stage, in 16-byte units
    assert f"arith.constant {gemm.K_STEP_BYTES >> 4} : i64" in text  # a K-step
    assert f"arith.constant {gemm.CONSUMER_ROWS_BYTES} : i32" in text
    assert text.count("nvvm.wgmma.mma_async") == 2 * 4 * (plan.block_n // plan.mma_n)  # k-block 0 peeled
    assert text.count("D[<f32>, <zero>, <wrapped>]") == plan.block_n // plan.mma_n


@pytest.mark.parametrize("n", [64, 128])
def test_every_accumulator_element_has_one_owner(n: int) -> None:
    owners = {accumulator_coordinate(w, lane, i) for w in range(4) for lane in range(32) for i in range(n // 2)}
    assert owners == {(row, col) for row in range(64) for col in range(n)}
    assert accumulator_coordinate(0, 0, 0) == (0, 0) and accumulator_coordinate(0, 5, 3) == (9, 3)
    assert accumulator_coordinate(3, 31, n // 2 - 1) == (63, n - 1)


class _Mbarrier:
    """An mbarrier as the PTX ISA describes it: pending arrivals and transaction bytes, phase completion."""

    def __init__(self, count: int) -> None:
        self.count, self.pending, self.tx, self.phase = count, count, 0, 0

    def arrive(self, expect_tx: int = 0) -> None:
        self.tx += expect_tx
        self.pending -= 1
        self._complete()

    def complete_tx(self, count: int) -> None:
        self.tx -= count
        self._complete()

    def _complete(self) -> None:
        assert self.pending >= 0, "more arrivals than the barrier's count"
        if self.pending == 0 and self.tx == 0:
            self.phase, self.pending = self.phase + 1, self.count

    def passed(self, parity: int) -> bool:
        return self.phase % 2 != parity


def _run_protocol(k_blocks: int, seed: int) -> None:
    """Producer, TMA engine and the 8 consumer warps, interleaved at random: no deadlock, and every warp
    reads each k-block's data from its stage (no overwrite before release, no read before arrival)."""
    plan = Sm90GemmPlan()
    rng = random.Random(seed)
    full = [_Mbarrier(1) for _ in range(plan.stages)]
    empty = [_Mbarrier(plan.empty_arrivals) for _ in range(plan.stages)]
    slots: list[dict[str, int]] = [{} for _ in range(plan.stages)]
    in_flight: list[tuple[int, str, int]] = []  # TMA copies: (stage, operand, k-block)

    def producer() -> Iterator[bool]:
        for kb in range(k_blocks):
            stage, _, released = stage_and_parity(kb, plan.stages)
            while not empty[stage].passed(released):
                yield False
            full[stage].arrive(expect_tx=plan.x_tile_bytes + plan.w_tile_bytes)
            in_flight.extend([(stage, "x", kb), (stage, "w", kb)])
            yield True

    def warp() -> Iterator[bool]:
        for kb in range(k_blocks):
            stage, landed, _ = stage_and_parity(kb, plan.stages)
            while not full[stage].passed(landed):
                yield False
            assert slots[stage] == {"x": kb, "w": kb}, f"k-block {kb} read {slots[stage]}"
            yield True  # the WGMMAs read the stage until wait_group 0
            assert slots[stage] == {"x": kb, "w": kb}, f"stage {stage} overwritten while k-block {kb} was read"
            empty[stage].arrive()
            yield True

    consumer_warps = plan.consumers * gemm.WARPGROUP // 32  # each releases a stage once (its lane 0)
    actors = [producer(), *(warp() for _ in range(consumer_warps))]
    blocked = 0  # actor steps in a row that waited, with no copy in flight
    while actors or in_flight:
        if in_flight and (not actors or rng.random() < 0.3):
            stage, operand, kb = in_flight.pop(rng.randrange(len(in_flight)))
            slots[stage][operand] = kb
            full[stage].complete_tx(plan.x_tile_bytes if operand == "x" else plan.w_tile_bytes)
            blocked = 0
            continue
        actor = rng.choice(actors)
        try:
            progressed = next(actor)
        except StopIteration:
            actors.remove(actor)
            progressed = True
        blocked = 0 if progressed or in_flight else blocked + 1
        assert blocked < 100 * len(actors) + 100, f"deadlock: every actor waits ({k_blocks} k-blocks)"
    assert all(barrier.pending == barrier.count and barrier.tx == 0 for barrier in full + empty)


@pytest.mark.parametrize("k_blocks", [1, 2, 3, 4, 7, 80])
def test_mbarrier_protocol_model(seed: int, k_blocks: int) -> None:
    for interleaving in range(20 if k_blocks < 80 else 3):
        _run_protocol(k_blocks, seed + interleaving)


def test_bad_shapes_fail_in_one_line() -> None:
    tiles, _ = plan_tiles(200, 60, "store", "f32")
    with pytest.raises(TesseraError, match="K a positive multiple of 8") as error:
        gemm.emit_gemm_sm90("g", 200, 60, False, False, "store", "f32", tiles)
    assert "\n" not in str(error.value)
    with pytest.raises(TesseraError, match="unknown GEMM epilogue"):
        gemm.emit_gemm_sm90("g", 200, 64, False, False, "gelu", "f32", tiles)


def test_grid_constant_marking() -> None:
    """The tensor-map parameters a lowered kernel names become by-value grid constants; others stay."""
    pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
    from xdsl.dialects import llvm
    from xdsl.dialects.builtin import DenseArrayBase, IntAttr, ModuleOp, UnitAttr, i32
    from xdsl.ir import Block, Region

    from tessera import toolchain
    from tessera.dialects.upstream import upstream_text
    from tessera.toolchain import ToolchainError

    def kernel(marked: list[int]) -> str:
        generic, global_ = llvm.LLVMPointerType(), llvm.LLVMPointerType(IntAttr(1))
        body = Block(arg_types=[generic, generic, global_, i32])
        body.add_op(llvm.ReturnOp())
        function = llvm.FuncOp(
            "g",
            llvm.LLVMFunctionType([generic, generic, global_, i32]),
            linkage=llvm.LinkageAttr("external"),
            body=Region(body),
            extra_attrs={"nvvm.kernel": UnitAttr(), "tessera.grid_constants": DenseArrayBase.from_list(i32, marked)},
        )
        return upstream_text(ModuleOp([function]))

    marked = toolchain.mark_by_value_parameters(kernel([0, 1]), "tessera.grid_constants", 128, 64)
    by_value = "{llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant}"
    assert f"%arg0: !llvm.ptr {by_value}, %arg1: !llvm.ptr {by_value}" in marked
    assert "%arg2: !llvm.ptr<1>, %arg3: i32" in marked and "tessera.grid_constants" not in marked
    with pytest.raises(ToolchainError, match=r"@g: parameter 2 is not a plain !llvm\.ptr tensor map"):
        toolchain.mark_by_value_parameters(kernel([2]), "tessera.grid_constants", 128, 64)


def test_missing_cuda_tools_fail_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from tessera.lowering.nvvm import pipeline
    from tessera.toolchain import ToolchainError

    monkeypatch.setattr(pipeline, "_find", lambda tool, candidates=(): None)
    with pytest.raises(ToolchainError, match="ptxas not found") as error:
        pipeline.assemble(".version 8.0", "g")
    assert "\n" not in str(error.value)
    with pytest.raises(ToolchainError, match="nvdisasm / cuobjdump not found"):
        pipeline.disassemble(b"", "g")


# --- through MLIR, LLVM, ptxas and the disassembler ---------------------------------------------------


@functools.cache
def _ptx(shape: Shape) -> tuple[Sm90GemmPlan, str]:
    from tessera.lowering.nvvm.kernel_text import kernels_module
    from tessera.lowering.nvvm.pipeline import to_llvm_ir, to_ptx

    n, k, epilogue, y_dtype, bias, row_scale, mma_n = shape
    tiles, _ = plan_tiles(n, k, epilogue, y_dtype)
    if mma_n is not None:
        tiles = {**tiles, "mma_n": mma_n}
    text = kernels_module([gemm.emit_gemm_sm90("gemm_sm90", n, k, bias, row_scale, epilogue, y_dtype, tiles)])
    return Sm90GemmPlan.from_tiles(tiles), to_ptx(to_llvm_ir(text))


@functools.cache
def _cubin(shape: Shape) -> tuple[Cubin, str]:
    from tessera.lowering.nvvm.pipeline import assemble, disassemble

    cubin = assemble(_ptx(shape)[1], "gemm_sm90")
    return cubin, disassemble(cubin.data, "gemm_sm90")


def _need(tool: str) -> None:
    from tessera.lowering.nvvm import pipeline

    found = pipeline.find_ptxas() if tool == "ptxas" else pipeline.find_disassembler()
    if found is None:
        pytest.skip(
            f"{tool} is not installed: CUDA's ptxas, and nvdisasm / cuobjdump from pip install "
            "nvidia-cuda-nvdisasm nvidia-cuda-cuobjdump"
        )


@NEEDS_MLIR
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "-".join(map(str, shape)))
def test_ptx_has_wgmma_tma_and_mbarriers(shape: Shape) -> None:
    plan, ptx = _ptx(shape)
    assert ".target sm_90a" in ptx and ".version 8.0" in ptx
    assert f"wgmma.mma_async.sync.aligned.m64n{plan.mma_n}k16.f32.bf16.bf16" in ptx
    assert "wgmma.fence.sync.aligned" in ptx and "wgmma.commit_group.sync.aligned" in ptx
    assert "wgmma.wait_group.sync.aligned" in ptx
    assert "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes" in ptx
    for op in ("mbarrier.init", "mbarrier.arrive.expect_tx", "mbarrier.try_wait.parity", "mbarrier.arrive"):
        assert op in ptx, op
    # The tensor maps are by-value grid constants, reached through cvta.param.
    assert ".param .align 64 .b8 gemm_sm90_param_0[128]" in ptx and ".param .align 64 .b8 gemm_sm90_param_1[128]" in ptx
    assert "cvta.param" in ptx
    assert ".extern .shared .align 1024 .b8 tessera_dynamic_smem[]" in ptx


@NEEDS_MLIR
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "-".join(map(str, shape)))
def test_cubin_has_no_spills_and_sass_has_hgmma_and_utmaldg(shape: Shape) -> None:
    from tessera.lowering.nvvm.pipeline import sass_opcodes

    _need("ptxas")
    _need("nvdisasm")
    plan, (cubin, sass) = _ptx(shape)[0], _cubin(shape)
    report = cubin.kernels["gemm_sm90"]
    assert report.spill_stores == report.spill_loads == report.stack_frame == 0, cubin.log
    assert 0 < report.registers <= 168, report  # 384 threads share 64K registers
    # ptxas inserts its own warpgroup.arrive / wait (and serializes WGMMAs) when accumulators are touched
    # between them: none here.
    assert "injected" not in cubin.log and "serialized" not in cubin.log, cubin.log
    counts = sass_opcodes(sass)
    assert counts["HGMMA"] >= plan.block_k // 16 * (plan.block_n // plan.mma_n), counts
    assert counts["UTMALDG"] >= 2, counts
    assert f"HGMMA.64x{plan.mma_n}x16.F32.BF16" in sass
    assert "UTMALDG.2D" in sass and "WARPGROUP.ARRIVE" in sass
