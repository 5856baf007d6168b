"""The sm_90a GEMM — kernels/gemm_blocks.py's pipelined K loop through the WGMMA + TMA pattern
(lowering/nvvm/wgmma.py) — proven without a GPU: its descriptor, swizzle, fragment and mbarrier reasoning
checked in Python; the kernel through MLIR 22, LLVM's NVPTX back end and ptxas, with WGMMA, TMA and mbarriers
in the PTX, HGMMA and UTMALDG in the SASS and no spills; and its numbers against float64 in the lockstep
simulator (rocdl_sim.py's Hopper model: TMA boxes, mbarrier phases, WGMMA fragments, producer and consumer
warps taking turns). What only a GPU shows is listed in lowering/nvvm/__init__.py."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest
from conftest import NEEDS_MLIR
from rocdl_sim import Simulator, TensorMap
from tile_kernels import tile_kernel

from tessera.arch import WARPGROUP, WarpgroupFragments, gpu_arch
from tessera.dialects import tile
from tessera.lowering.nvvm import wgmma
from tessera.lowering.nvvm.wgmma import Ring, smem_descriptor, stage_and_parity
from tessera.runtime.weights import bf16_bits, bf16_to_f32
from tessera.tiling.gpu import policies

# (n, k, epilogue, y dtype, bias, row_scale)
Shape = tuple[int, int, str, str, bool, bool]
if TYPE_CHECKING:
    from tessera.lowering.convert_tile_to_nvvm import NvvmKernel
    from tessera.lowering.nvvm.pipeline import Cubin

SHAPES: list[Shape] = [
    (200, 64, "store", "f32", True, True),
    (200, 64, "relu2", "bf16", False, False),
    (5120, 5120, "accumulate", "f32", True, False),
    (5120, 5120, "relu2", "f32", False, True),
    (5120, 5120, "accumulate", "f32", True, True),
]
BLOCK_M, BLOCK_N, BLOCK_K, STAGES = 128, 256, 64, 4  # tiling/gpu.py's _matmul on sm_90a
RING = Ring(stages=STAGES, a_bytes=BLOCK_M * BLOCK_K * 2, b_bytes=BLOCK_N * BLOCK_K * 2)
MMA_N = BLOCK_N  # the N of one WGMMA: the whole column block, one per K-step
CONSUMERS = 2


def _dims(shape: Shape) -> dict[str, int | str]:
    n, k, epilogue, y_dtype, bias, row_scale = shape
    return {"n": n, "k": k, "epilogue": epilogue, "y_dtype": y_dtype, "x_dtype": "bf16", "bias": int(bias),
            "row_scale": int(row_scale)}  # fmt: skip


@functools.cache
def _kernel(shape: Shape) -> tuple[tile.KernelOp, NvvmKernel]:
    from tessera.lowering.convert_tile_to_nvvm import emit_kernel

    kernel = tile_kernel("matmul", _dims(shape), "sm_90a", "bf16", name="gemm_sm90")
    return kernel, emit_kernel(kernel)


# --- the reasoning, in Python ----------------------------------------------------------------------------


def test_the_policy_pipelines_bf16_projections_whose_rows_tma_reads() -> None:
    arch = gpu_arch("sm_90a")
    tiles = policies()["matmul"]({"n": 5120, "k": 5120, "epilogue": "store", "x_dtype": "bf16"}, "bf16", arch).tiles
    assert (tiles["block_m"], tiles["block_n"], tiles["block_k"], tiles["stages"]) == (
        BLOCK_M,
        BLOCK_N,
        BLOCK_K,
        STAGES,
    )
    assert tiles["threads"] == WARPGROUP * (CONSUMERS + 1) and tiles["swizzle"] == 128
    for dims in ({"n": 200, "k": 60, "x_dtype": "bf16"}, {"n": 200, "k": 64, "x_dtype": "f32"}):  # K % 8, f32 x
        assert "stages" not in policies()["matmul"]({**dims, "epilogue": "store"}, "bf16", arch).tiles


@NEEDS_MLIR
def test_shared_memory_is_the_ring_plus_two_mbarriers_a_stage() -> None:
    """4 stages of a 128 x 64 x tile and a 256 x 64 W tile (192 KiB: one program an SM, as 154 registers for
    384 threads leave it), then full[s] and empty[s]."""
    kernel, emitted = _kernel(SHAPES[2])
    assert wgmma.pipeline_ring(kernel) == RING
    assert kernel.footprint is not None and kernel.footprint.value.data == RING.operand_bytes == 196608
    assert emitted.dynamic_shared_bytes == RING.shared_bytes == 196608 + 8 * 8
    assert [RING.full(s) for s in range(STAGES)] == [196608, 196616, 196624, 196632]
    assert [RING.empty(s) for s in range(STAGES)] == [196640, 196648, 196656, 196664]
    assert all(offset % 1024 == 0 for s in range(STAGES) for offset in (RING.a_offset(s), RING.b_offset(s)))
    assert emitted.kernel.threads == 384 and emitted.kernel.grid.plain() == {"x": [20, 1], "y": ["tokens", 128]}
    assert [(m.arg, m.rows, m.cols, m.box_rows, m.box_cols) for m in emitted.tensor_maps] == [
        (0, "tokens", 5120, BLOCK_M, 64), (1, 5120, 5120, BLOCK_N, 64)
    ]  # fmt: skip


def test_descriptor_fields() -> None:
    descriptor = smem_descriptor(0x1400)
    assert descriptor & 0x3FFF == 0x1400 >> 4  # start address >> 4
    assert (descriptor >> 16) & 0x3FFF == 1  # leading byte offset (unused for swizzled K-major) = 16 B
    assert (descriptor >> 32) & 0x3FFF == 1024 >> 4  # stride byte offset: 8 rows of 128 B
    assert (descriptor >> 49) & 7 == 0  # base offset
    assert descriptor >> 62 == 1  # 128-byte swizzle


@pytest.mark.parametrize("mma_n", [64, 128, 256])
def test_descriptor_addresses_match_the_tma_swizzle(mma_n: int) -> None:
    """What WGMMA reads for (row, k) of its operand, from the descriptors the pattern forms (base + stage,
    + consumer rows or N chunk, + 32 bytes per K-step), is where TMA wrote that element of the tile."""
    smem = 0x400  # where sm_90's dynamic shared memory starts (after 1 KiB reserved), 1024-aligned
    for stage, step in itertools.product(range(RING.stages), range(64 // 16)):
        k_bytes = step * wgmma.K_STEP_BYTES
        for consumer in range(CONSUMERS):
            a = smem + RING.a_offset(stage) + consumer * 64 * wgmma.SWIZZLE_BYTES + k_bytes
            for row, kk in itertools.product(range(64), range(16)):
                tma = wgmma.tma_byte_address(smem + RING.a_offset(stage), consumer * 64 + row, step * 16 + kk)
                assert wgmma.operand_byte_address(smem_descriptor(a), row, kk) == tma, (stage, step, consumer)
        for chunk in range(BLOCK_N // mma_n):
            b = smem + RING.b_offset(stage) + chunk * mma_n * wgmma.SWIZZLE_BYTES + k_bytes
            for row, kk in itertools.product(range(mma_n), range(16)):
                tma = wgmma.tma_byte_address(smem + RING.b_offset(stage), chunk * mma_n + row, step * 16 + kk)
                assert wgmma.operand_byte_address(smem_descriptor(b), row, kk) == tma, (stage, step, chunk)


@NEEDS_MLIR
def test_the_kernel_forms_those_descriptors() -> None:
    """The constants of the lowered descriptor arithmetic: the fixed fields, the stage and K-step strides."""
    text = _kernel(SHAPES[2])[1].text  # K = 5120: k-block 0, then the loop
    assert f"arith.constant {smem_descriptor(0)} : i64" in text
    assert f"arith.constant {RING.a_bytes >> 4} : i64" in text  # a stage, in 16-byte units
    assert f"arith.constant {wgmma.K_STEP_BYTES >> 4} : i64" in text  # a K-step
    assert f"arith.constant {64 * wgmma.SWIZZLE_BYTES} : i32" in text  # a consumer's 64 rows
    assert text.count("nvvm.wgmma.mma_async") == 2 * 4 * (BLOCK_N // MMA_N)  # k-block 0 peeled
    assert text.count("<zero>") == BLOCK_N // MMA_N


def test_upstream_text_is_xdsls_generic_print() -> None:
    """dialects/upstream.py's printer (each distinct attribute rendered once, text written straight to the
    stream) prints the lowered WGMMA GEMM — builtin, llvm and nvvm attributes, nested regions — byte for byte
    as xDSL's own generic printer does."""
    import io

    from xdsl.dialects.builtin import ModuleOp
    from xdsl.printer import Printer

    from tessera.dialects.upstream import upstream_text
    from tessera.lowering.expand_math import expand_math
    from tessera.lowering.tile_to_simt import lower_to_simt, wrap_in_gpu_module

    arch = gpu_arch("sm_90a")
    module = ModuleOp([_kernel(SHAPES[2])[0].clone()])
    lower_to_simt(module, arch)
    expand_math(module, "sm_90a")
    wrap_in_gpu_module(module, arch)
    stream = io.StringIO()
    Printer(stream=stream, print_generic_format=True).print_op(module)
    assert upstream_text(module) == stream.getvalue() + "\n"


@pytest.mark.parametrize("n", [64, 128, 256])
def test_every_accumulator_element_has_one_owner(n: int) -> None:
    fragments = WarpgroupFragments()
    owners = {fragments.coordinate(thread, i) for thread in range(WARPGROUP) for i in range(n // 2)}
    assert owners == {(row, col) for row in range(64) for col in range(n)}
    assert fragments.coordinate(0, 0) == (0, 0) and fragments.coordinate(5, 3) == (9, 3)
    assert fragments.coordinate(WARPGROUP - 1, n // 2 - 1) == (63, n - 1)


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
    rng = random.Random(seed)
    full = [_Mbarrier(1) for _ in range(RING.stages)]
    empty = [_Mbarrier(wgmma.RELEASES_PER_CONSUMER * CONSUMERS) for _ in range(RING.stages)]
    slots: list[dict[str, int]] = [{} for _ in range(RING.stages)]
    in_flight: list[tuple[int, str, int]] = []  # TMA copies: (stage, operand, k-block)

    def producer() -> Iterator[bool]:
        for kb in range(k_blocks):
            stage, _, released = stage_and_parity(kb, RING.stages)
            while not empty[stage].passed(released):
                yield False
            full[stage].arrive(expect_tx=RING.a_bytes + RING.b_bytes)
            in_flight.extend([(stage, "x", kb), (stage, "w", kb)])
            yield True

    def warp() -> Iterator[bool]:
        for kb in range(k_blocks):
            stage, landed, _ = stage_and_parity(kb, RING.stages)
            while not full[stage].passed(landed):
                yield False
            assert slots[stage] == {"x": kb, "w": kb}, f"k-block {kb} read {slots[stage]}"
            yield True  # the WGMMAs read the stage until wait_group 0
            assert slots[stage] == {"x": kb, "w": kb}, f"stage {stage} overwritten while k-block {kb} was read"
            empty[stage].arrive()
            yield True

    consumer_warps = CONSUMERS * WARPGROUP // 32  # each releases a stage once (its lane 0)
    actors = [producer(), *(warp() for _ in range(consumer_warps))]
    blocked = 0  # actor steps in a row that waited, with no copy in flight
    while actors or in_flight:
        if in_flight and (not actors or rng.random() < 0.3):
            stage, operand, kb = in_flight.pop(rng.randrange(len(in_flight)))
            slots[stage][operand] = kb
            full[stage].complete_tx(RING.a_bytes if operand == "x" else RING.b_bytes)
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
def _ptx(shape: Shape) -> str:
    from tessera.lowering.nvvm.pipeline import to_llvm_ir, to_ptx

    return to_ptx(to_llvm_ir(_kernel(shape)[1].text))


@functools.cache
def _cubin(shape: Shape) -> tuple[Cubin, str]:
    from tessera.lowering.nvvm.pipeline import assemble, disassemble

    cubin = assemble(_ptx(shape), "gemm_sm90")
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
    ptx = _ptx(shape)
    assert ".target sm_90a" in ptx and ".version 8.0" in ptx
    assert f"wgmma.mma_async.sync.aligned.m64n{MMA_N}k16.f32.bf16.bf16" in ptx
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
    cubin, sass = _cubin(shape)
    report = cubin.kernels["gemm_sm90"]
    assert report.spill_stores == report.spill_loads == report.stack_frame == 0, cubin.log
    # 384 threads share 64K registers: 168 each at launch, the pool that setmaxnreg's 40 / 232 split (a
    # kernel given fewer would leave the consumers' setmaxnreg.inc waiting for registers that never come).
    assert report.registers == wgmma.launch_registers(384) == 168, report
    assert wgmma.consumer_registers(CONSUMERS) == 232
    # ptxas inserts its own warpgroup.arrive / wait (and serializes WGMMAs) when accumulators are touched
    # between them: none here.
    assert "injected" not in cubin.log and "serialized" not in cubin.log, cubin.log
    counts = sass_opcodes(sass)
    assert counts["HGMMA"] >= 64 // 16 * (BLOCK_N // MMA_N), counts
    assert counts["UTMALDG"] >= 2, counts
    assert f"HGMMA.64x{MMA_N}x16.F32.BF16" in sass
    assert "UTMALDG.2D" in sass and "WARPGROUP.ARRIVE" in sass


# --- numerics, in the lockstep simulator (producer and consumer warps taking turns at their mbarrier waits) ---

# (n, k, epilogue, y dtype, bias, row_scale): two column blocks with a tail (N = 300), K of one ragged box (72:
# the copy engine zero-fills past K) and of six k-blocks (328, the last ragged: the 4-stage ring wraps, so
# both parities).
SIMULATED: list[Shape] = [
    (300, 72, "store", "f32", False, False),
    (300, 328, "accumulate", "f32", True, True),
    (128, 328, "relu2", "bf16", True, False),
    (200, 64, "store", "bf16", False, True),
    (300, 72, "store", "bf16", False, False),  # the accumulator converted and stored as it comes from the loop
]


@NEEDS_MLIR
@pytest.mark.parametrize("tokens", [1, 70, 130])
@pytest.mark.parametrize("shape", SIMULATED, ids=lambda shape: "-".join(map(str, shape)))
def test_gemm_matches_float64_in_the_simulator(rng: np.random.Generator, shape: Shape, tokens: int) -> None:
    """y against float64 on the same bf16 operands: TMA boxes (swizzle, zero fill past the tokens, N and K),
    the mbarrier ring, WGMMA's descriptors and accumulator fragments, the epilogue in the consumers."""
    n, k, epilogue, y_dtype, bias, row_scale = shape
    kernel, emitted = _kernel(shape)
    assert kernel.tiles is not None
    block_m, block_n = (int(tile.plain_dict(kernel.tiles)[key]) for key in ("block_m", "block_n"))
    x = bf16_bits(rng.standard_normal((tokens, k)).astype(np.float32))
    w = bf16_bits((rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32))
    buffers: dict[str, np.ndarray] = {}
    if bias:
        buffers["bias"] = rng.standard_normal(n).astype(np.float32)
    if row_scale:
        buffers["row_scale"] = (rng.random(tokens) + 0.5).astype(np.float32)
    y0 = rng.standard_normal((tokens, n)).astype(np.float32)
    y = y0.copy() if epilogue == "accumulate" else np.full((tokens, n), np.nan, np.float32)
    buffers["y"] = bf16_bits(y) if y_dtype == "bf16" else y
    x_map, w_map = emitted.tensor_maps
    maps = {"x": TensorMap(x, x_map.box_rows, x_map.box_cols), "w": TensorMap(w, w_map.box_rows, w_map.box_cols)}
    grid = (-(-n // block_n), -(-tokens // block_m))
    Simulator.of(emitted.kernel, wave_size=32).run(
        grid, buffers, {"tokens": tokens, "position": 0}, tensor_maps=maps, shared_bytes=emitted.dynamic_shared_bytes
    )
    want = bf16_to_f32(x).astype(np.float64) @ bf16_to_f32(w).astype(np.float64).T
    if row_scale:
        want *= buffers["row_scale"][:, None]
    if bias:
        want += buffers["bias"]
    if epilogue == "accumulate":
        want += y0
    elif epilogue == "relu2":
        want = np.maximum(want, 0) ** 2
    got = bf16_to_f32(buffers["y"]) if y_dtype == "bf16" else buffers["y"]
    assert not np.isnan(got).any(), "an element of y left unwritten"
    # f32 sums of k exact products (bf16 x bf16), then the epilogue's few roundings; a bf16 y rounds once more.
    unit = 2.0**-8 if y_dtype == "bf16" else 2.0**-24
    bound = (k + 4) * 2.0**-24 * (np.abs(want) + np.abs(bf16_to_f32(x)) @ np.abs(bf16_to_f32(w)).T) + unit * np.abs(
        want
    )
    assert (np.abs(got - want) <= bound).all(), f"error {np.abs(got - want).max():.2e} above the bound"


@NEEDS_MLIR
def test_the_simulator_refuses_a_stage_released_while_its_wgmmas_are_pending(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumers release k-block kb - 1's stage once wait_group(1) leaves only kb's WGMMAs pending. Were two
    groups left in flight, the released stage would still be read by kb - 1's: the producer's next copy into it
    is refused (rocdl_sim models WGMMA groups, commit and wait_group)."""
    from rocdl_sim import SimulationError

    from tessera.lowering.convert_tile_to_nvvm import emit_kernel

    monkeypatch.setattr(wgmma, "IN_FLIGHT", 2)
    n, k, tokens = 128, 328, 70  # 6 k-blocks: the 4-stage ring wraps
    emitted = emit_kernel(tile_kernel("matmul", _dims((n, k, "store", "f32", False, False)), "sm_90a", "bf16"))
    x = bf16_bits(rng.standard_normal((tokens, k)).astype(np.float32))
    w = bf16_bits(rng.standard_normal((n, k)).astype(np.float32))
    x_map, w_map = emitted.tensor_maps
    maps = {"x": TensorMap(x, x_map.box_rows, x_map.box_cols), "w": TensorMap(w, w_map.box_rows, w_map.box_cols)}
    with pytest.raises(SimulationError, match="pending WGMMA group"):
        Simulator.of(emitted.kernel, wave_size=32).run(
            (1, 1), {"y": np.zeros((tokens, n), np.float32)}, {"tokens": tokens, "position": 0}, tensor_maps=maps,
            shared_bytes=emitted.dynamic_shared_bytes,
        )  # fmt: skip
