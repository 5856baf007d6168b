"""dialects/nvvm.py: one kernel using every op, printed in generic form, read by MLIR 22 and lowered through
LLVM's NVPTX back end to the PTX instructions each op stands for; the verifiers; and each op's properties
as MLIR itself prints them, so that a change in MLIR's definitions shows here."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from conftest import NEEDS_MLIR
from xdsl.context import Context
from xdsl.dialects import gpu, llvm
from xdsl.dialects.builtin import Builtin, IntegerAttr, ModuleOp, StringAttr, UnitAttr, f32, i32, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from tessera.arch import NVPTX_DATA_LAYOUT
from tessera.dialects import nvvm
from tessera.dialects.upstream import upstream_text

ACCUMULATOR = llvm.LLVMStructType.from_type_list([f32] * 32)  # m64n64, f32: 64 / 2 registers per thread
# The kernel's parameters: the tensor map, the TMA destination, the mbarrier, two coordinates and the
# descriptors of A and B. (A real kernel derives the shared pointers from one allocation.)
PARAMETERS = [nvvm.GENERIC_PTR, nvvm.CLUSTER_PTR, nvvm.SHARED_PTR, i32, i32, i64, i64]


def constant(block: Block, value: int) -> SSAValue:
    op = llvm.ConstantOp(IntegerAttr(value, i32), i32)
    block.add_op(op)
    return op.results[0]


def kernel_module() -> ModuleOp:
    """A gpu.module holding one kernel that uses every op once, in the order Tessera's kernels use them."""
    body = Block(arg_types=PARAMETERS)
    tensor_map, destination, barrier, x, y, descriptor_a, descriptor_b = body.args
    one, bytes_, ticks, parity = (constant(body, value) for value in (1, 8192, 10_000_000, 0))
    accumulator = llvm.ZeroOp(result_types=[ACCUMULATOR])
    body.add_ops([nvvm.MBarrierInitOp(barrier, one), nvvm.FenceMbarrierInitOp(), accumulator])
    body.add_op(nvvm.SetMaxRegisterOp("increase", 232))
    body.add_ops(
        [
            nvvm.MBarrierArriveExpectTxOp(barrier, bytes_),
            nvvm.CpAsyncBulkTensorSharedClusterGlobalOp(destination, tensor_map, [x, y], barrier),
            nvvm.MBarrierTryWaitParityOp(barrier, parity, ticks),
            nvvm.FenceProxyOp(),
            nvvm.WgmmaFenceAlignedOp(),
            nvvm.WgmmaMmaAsyncOp(accumulator.results[0], descriptor_a, descriptor_b, (64, 64, 16), scale_d="zero"),
            nvvm.WgmmaCommitGroupSyncAlignedOp(),
            nvvm.WgmmaWaitGroupSyncAlignedOp(0),
            nvvm.MBarrierArriveOp(barrier),
        ]
    )
    body.add_op(gpu.ReturnOp([]))  # the MMA stays unused: it lowers to inline PTX with side effects
    function = gpu.FuncOp("k", (PARAMETERS, []), Region(body), kernel=True)
    function.attributes["gpu.kernel"] = UnitAttr()
    kernels = gpu.ModuleOp(StringAttr("kernels"), Region(Block([function])))  # type: ignore[arg-type]
    kernels.attributes["llvm.data_layout"] = StringAttr(NVPTX_DATA_LAYOUT)
    module = ModuleOp([kernels])
    module.attributes["gpu.container_module"] = UnitAttr()
    module.verify()
    return module


def entries(dictionary: str) -> list[str]:
    """`a = x, b = #d<m = 1, n = 2>` -> its top-level entries, sorted (MLIR prints them sorted)."""
    depth, start, found = 0, 0, []
    for index, char in enumerate(dictionary + ","):
        depth += (char in "<([{") - (char in ">)]}")
        if char == "," and depth == 0:
            found.append(dictionary[start:index].strip())
            start = index + 1
    return sorted(entry for entry in found if entry)


def nvvm_ops(text: str) -> list[tuple[str, list[str], str]]:
    """Each op of the dialect in generic MLIR text, in order: its name, properties and type."""
    names = "|".join(re.escape(op.name) for op in nvvm.NVVM_OPS)
    pattern = rf'"({names})"\([^)]*\)(?: <\{{(.*)\}}>)? : (.*)$'
    return [(m[1], entries(m[2] or ""), m[3]) for m in re.finditer(pattern, text, re.MULTILINE)]


def test_generic_form() -> None:
    text = upstream_text(kernel_module())
    ops = nvvm_ops(text)
    assert sorted(name for name, _, _ in ops) == sorted(op.name for op in nvvm.NVVM_OPS)
    properties = {name: props for name, props, _ in ops}
    assert properties[nvvm.CpAsyncBulkTensorSharedClusterGlobalOp.name] == [
        "isCTAOnly = false",
        "mode = #nvvm.tma_load_mode<tile>",
        "operandSegmentSizes = array<i32: 1, 1, 2, 1, 0, 0, 0, 0>",
    ]
    assert "shape = #nvvm.shape<m = 64, n = 64, k = 16>" in properties[nvvm.WgmmaMmaAsyncOp.name]
    assert properties[nvvm.MBarrierArriveOp.name] == ["relaxed = false", "scope = #nvvm.mem_scope<cta>"]
    assert properties[nvvm.SetMaxRegisterOp.name] == ["action = #nvvm<action increase>", "regCount = 232 : i32"]
    assert properties[nvvm.FenceProxyOp.name] == [
        "kind = #nvvm.proxy_kind<async.shared>",
        "space = #nvvm.shared_space<cta>",
    ]


def test_xdsl_reads_the_generic_form_back() -> None:
    context = Context()
    for dialect in (Builtin, gpu.GPU, llvm.LLVM, nvvm.Nvvm):
        context.load_dialect(dialect)
    text = upstream_text(kernel_module())
    module = Parser(context, text).parse_module()
    module.verify()
    assert upstream_text(module) == text


@NEEDS_MLIR
def test_mlir_prints_the_same_generic_form() -> None:
    """MLIR 22 reads the kernel and prints each op with the same properties (all of them: none defaulted)
    and types."""
    from tessera import toolchain

    text = upstream_text(kernel_module())
    ir = toolchain.mlir().ir
    with ir.Context():
        reprinted = ir.Module.parse(text).operation.get_asm(print_generic_op_form=True)
    assert nvvm_ops(reprinted) == nvvm_ops(text)


@NEEDS_MLIR
def test_ptx_has_each_instruction() -> None:
    from tessera.lowering.nvvm.pipeline import to_llvm_ir, to_ptx

    ptx = to_ptx(to_llvm_ir(upstream_text(kernel_module())))
    for instruction in (
        "mbarrier.init.shared.b64",
        "fence.mbarrier_init",
        "mbarrier.arrive.expect_tx",
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes",
        "mbarrier.try_wait.parity",
        "fence.proxy.async.shared::cta",
        "wgmma.fence.sync.aligned",
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16",
        "wgmma.commit_group.sync.aligned",
        "wgmma.wait_group.sync.aligned",
        "mbarrier.arrive.shared.b64",
        "setmaxnreg.inc.sync.aligned.u32",
    ):
        assert instruction in ptx, instruction


def mma(
    accumulator: Attribute = ACCUMULATOR, descriptor: Attribute = i64, shape: tuple[int, int, int] = (64, 64, 16)
) -> nvvm.WgmmaMmaAsyncOp:
    block = Block(arg_types=[accumulator, descriptor, descriptor])
    return nvvm.WgmmaMmaAsyncOp(block.args[0], block.args[1], block.args[2], shape)


def test_wgmma_verifier_accepts_each_n() -> None:
    for n in (8, 64, 128, 256):
        mma(llvm.LLVMStructType.from_type_list([f32] * (n // 2)), shape=(64, n, 16)).verify()


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (
            lambda: mma(llvm.LLVMStructType.from_type_list([f32] * 16)),
            "the m64n64 f32 accumulator is !llvm.struct<(f32",
        ),
        (lambda: mma(descriptor=i32), "A's matrix descriptor is i64, got i32"),
        (lambda: mma(shape=(64, 64, 8)), "bf16 shapes are m64nNk16"),
        (lambda: mma(shape=(64, 12, 16)), "bf16 shapes are m64nNk16"),
        (lambda: mma(shape=(128, 64, 16)), "bf16 shapes are m64nNk16"),
    ],
    ids=["accumulator", "descriptor", "k", "n", "m"],
)
def test_wgmma_verifier_refuses(op: Callable[[], nvvm.WgmmaMmaAsyncOp], message: str) -> None:
    with pytest.raises(VerifyException, match=re.escape(f"{nvvm.WgmmaMmaAsyncOp.name}: {message}")):
        op().verify()


def test_pointer_and_coordinate_verifiers() -> None:
    block = Block(arg_types=[nvvm.GENERIC_PTR, nvvm.SHARED_PTR, nvvm.CLUSTER_PTR, i32])
    generic, shared, cluster, count = block.args
    cases: list[tuple[Operation, str]] = [
        (nvvm.MBarrierInitOp(generic, count), "the mbarrier is !llvm.ptr<3>, got !llvm.ptr"),
        (
            nvvm.CpAsyncBulkTensorSharedClusterGlobalOp(shared, generic, [count], shared),
            "the destination is !llvm.ptr<7>",
        ),
        (nvvm.CpAsyncBulkTensorSharedClusterGlobalOp(cluster, generic, [count] * 6, shared), "1 to 5 i32 coordinates"),
    ]
    cases += [(nvvm.SetMaxRegisterOp("decrease", count), "multiple of 8 in [24, 256]") for count in (20, 100, 264)]
    for op, message in cases:
        with pytest.raises(VerifyException, match=re.escape(f"{op.name}: ") + ".*" + re.escape(message)):
            op.verify()
