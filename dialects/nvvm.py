"""The subset of MLIR 22's `nvvm` dialect that Tessera's Hopper (sm_90a) GEMM emits as typed IR (xDSL 0.74 has
none), mirrored with MLIR's op names, operand order and property names so that the lowering builds them and
prints them once, in generic form (upstream.upstream_text), for MLIR to read.

    MBarrierInitOp            an mbarrier in shared memory expects `count` arrivals per phase
    FenceMbarrierInitOp       makes initialised mbarriers visible to the async proxy (TMA)
    MBarrierTryWaitParityOp   waits until the mbarrier's phase of the given parity completes
    MBarrierArriveExpectTxOp  arrives, and has the mbarrier's phase also wait for that many bytes of TMA
    MBarrierArriveOp          arrives
    CpAsyncBulkTensorSharedClusterGlobalOp   a TMA tile load, from global memory through a CUtensorMap into
                              shared memory at `coordinates` (innermost first), completing on an mbarrier
    FenceProxyOp              makes this thread's generic-proxy writes of shared memory visible to the async
                              proxy (WGMMA's operand reads, TMA): threads that stage an operand fence, then
                              meet at a barrier
    WgmmaFenceAlignedOp, WgmmaCommitGroupSyncAlignedOp, WgmmaWaitGroupSyncAlignedOp   order, batch and await
                              a warpgroup's asynchronous MMAs
    SetMaxRegisterOp          a warpgroup gives registers back to its program's pool, or takes them from it
    WgmmaMmaAsyncOp           acc' = A B (+ acc): a warpgroup's m64nNkK MMA of two shared-memory operands
                              named by 64-bit matrix descriptors; the accumulator is an LLVM struct of registers

SetMaxRegisterActionAttr prints as MLIR's opaque `#nvvm<action increase>`. Their other
enum properties (MemScopeAttr, ProxyKindAttr, SharedSpaceAttr, TmaLoadModeAttr, MmaLayoutAttr, MmaIntOverflowAttr, WgmmaScaleInAttr,
WgmmaScaleOutAttr, WgmmaTypeAttr) print as MLIR's `#<dialect>.<name><case>`; MmaShapeAttr as
`<m = 64, n = 64, k = 16>`. Pointers are LLVM pointers in NVPTX address spaces: 3 is the CTA's shared memory,
7 shared::cluster (where TMA writes), none generic (the tensor map).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar, cast

from xdsl.dialects.builtin import BoolAttr, IntAttr, IntegerAttr, IntegerType, f32, i1, i32, i64
from xdsl.dialects.llvm import LLVMPointerType, LLVMStructType
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import Attribute, Data, Dialect, Operation, ParametrizedAttribute, SpacedOpaqueSyntaxAttribute, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    prop_def,
    result_def,
    var_operand_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum

SHARED_PTR, CLUSTER_PTR, GENERIC_PTR = LLVMPointerType(IntAttr(3)), LLVMPointerType(IntAttr(7)), LLVMPointerType()
# K of an m64nNkK instruction per input type (f32 and s32 are accumulator types only), and each accumulator
# type's struct member.
WGMMA_K = {"f16": 16, "bf16": 16, "tf32": 8, "e4m3": 32, "e5m2": 32, "s8": 32, "u8": 32, "b1": 256}
ACCUMULATOR_ELEMENT: dict[str, Attribute] = {"f32": f32, "s32": i32}


class MemScope(StrEnum):
    CTA, CLUSTER, GPU, SYS = "cta", "cluster", "gpu", "sys"


class ProxyKind(StrEnum):
    ALIAS, ASYNC, ASYNC_GLOBAL, ASYNC_SHARED = "alias", "async", "async.global", "async.shared"


class SharedSpace(StrEnum):
    CTA, CLUSTER = "cta", "cluster"


class TmaLoadMode(StrEnum):
    TILE, IM2COL, IM2COL_W, IM2COL_W_128, TILE_GATHER4 = "tile", "im2col", "im2col_w", "im2col_w_128", "tile_gather4"


class MmaLayout(StrEnum):
    ROW, COL = "row", "col"


class MmaIntOverflow(StrEnum):
    SATFINITE, WRAPPED = "satfinite", "wrapped"


class WgmmaScaleIn(StrEnum):
    ONE, NEG = "one", "neg"


class WgmmaScaleOut(StrEnum):
    ZERO, ONE = "zero", "one"


class WgmmaType(StrEnum):
    F16, BF16, TF32, E4M3, E5M2, S8, U8, B1 = "f16", "bf16", "tf32", "e4m3", "e5m2", "s8", "u8", "b1"  # A and B
    F32, S32 = "f32", "s32"  # accumulators only


class SetMaxRegisterAction(StrEnum):
    DECREASE, INCREASE = "decrease", "increase"


_Case = TypeVar("_Case", bound=StrEnum)


class _AngleBrackets(Generic[_Case]):
    """MLIR's `#nvvm.<name><case>` for an EnumAttribute (xDSL's default spelling is `#nvvm<name case>`)."""

    enum_type: ClassVar[type[StrEnum]]

    def print_parameter(self, printer: Printer) -> None:
        printer.print_string(f"<{cast(Data[_Case], self).data}>")

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> _Case:
        with parser.in_angle_brackets():
            return cast(_Case, parser.parse_str_enum(cls.enum_type))


@irdl_attr_definition
class SetMaxRegisterActionAttr(EnumAttribute[SetMaxRegisterAction], SpacedOpaqueSyntaxAttribute):
    """`#nvvm<action increase>`"""

    name = "nvvm.action"


@irdl_attr_definition
class MemScopeAttr(_AngleBrackets[MemScope], EnumAttribute[MemScope]):
    name = "nvvm.mem_scope"


@irdl_attr_definition
class ProxyKindAttr(_AngleBrackets[ProxyKind], EnumAttribute[ProxyKind]):
    name = "nvvm.proxy_kind"


@irdl_attr_definition
class SharedSpaceAttr(_AngleBrackets[SharedSpace], EnumAttribute[SharedSpace]):
    name = "nvvm.shared_space"


@irdl_attr_definition
class TmaLoadModeAttr(_AngleBrackets[TmaLoadMode], EnumAttribute[TmaLoadMode]):
    name = "nvvm.tma_load_mode"


@irdl_attr_definition
class MmaLayoutAttr(_AngleBrackets[MmaLayout], EnumAttribute[MmaLayout]):
    name = "nvvm.mma_layout"


@irdl_attr_definition
class MmaIntOverflowAttr(_AngleBrackets[MmaIntOverflow], EnumAttribute[MmaIntOverflow]):
    name = "nvvm.mma_int_overflow"


@irdl_attr_definition
class WgmmaScaleInAttr(_AngleBrackets[WgmmaScaleIn], EnumAttribute[WgmmaScaleIn]):
    name = "nvvm.wgmma_scale_in"


@irdl_attr_definition
class WgmmaScaleOutAttr(_AngleBrackets[WgmmaScaleOut], EnumAttribute[WgmmaScaleOut]):
    name = "nvvm.wgmma_scale_out"


@irdl_attr_definition
class WgmmaTypeAttr(_AngleBrackets[WgmmaType], EnumAttribute[WgmmaType]):
    name = "nvvm.wgmma_type"


@irdl_attr_definition
class MmaShapeAttr(ParametrizedAttribute):
    """An MMA instruction's M x N x K, printed `<m = 64, n = 64, k = 16>`."""

    name = "nvvm.shape"
    m: IntAttr
    n: IntAttr
    k: IntAttr

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<m = {self.m.data}, n = {self.n.data}, k = {self.k.data}>")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[IntAttr, IntAttr, IntAttr]:
        def extent(key: str) -> IntAttr:
            parser.parse_keyword(key)
            parser.parse_punctuation("=")
            return IntAttr(parser.parse_integer())

        with parser.in_angle_brackets():
            m = extent("m")
            parser.parse_punctuation(",")
            n = extent("n")
            parser.parse_punctuation(",")
            return m, n, extent("k")


def _expect(op: IRDLOperation, value: SSAValue, type_: Attribute, what: str) -> None:
    if value.type != type_:
        raise VerifyException(f"{op.name}: {what} is {type_}, got {value.type}")


@irdl_op_definition
class MBarrierInitOp(IRDLOperation):
    """The mbarrier at `barrier` (shared memory) expects `count` arrivals per phase."""

    name = "nvvm.mbarrier.init"
    addr = operand_def(LLVMPointerType)
    count = operand_def(IntegerType)

    def __init__(self, barrier: SSAValue, count: SSAValue) -> None:
        super().__init__(operands=[barrier, count])

    def verify_(self) -> None:
        _expect(self, self.addr, SHARED_PTR, "the mbarrier")
        _expect(self, self.count, i32, "the arrival count")


@irdl_op_definition
class FenceMbarrierInitOp(IRDLOperation):
    name = "nvvm.fence.mbarrier.init"


@irdl_op_definition
class MBarrierTryWaitParityOp(IRDLOperation):
    """Waits until the mbarrier's phase of `parity` (0 or 1) completes, suspending up to `ticks` ns per try."""

    name = "nvvm.mbarrier.try_wait.parity"
    addr = operand_def(LLVMPointerType)
    phase = operand_def(IntegerType)
    ticks = operand_def(IntegerType)

    def __init__(self, barrier: SSAValue, parity: SSAValue, ticks: SSAValue) -> None:
        super().__init__(operands=[barrier, parity, ticks])

    def verify_(self) -> None:
        _expect(self, self.addr, SHARED_PTR, "the mbarrier")
        _expect(self, self.phase, i32, "the parity")
        _expect(self, self.ticks, i32, "the suspend-time hint")


def _arrive_properties(scope: str) -> dict[str, Attribute]:
    """Release semantics at `scope` (the default of MLIR's custom form)."""
    return {"relaxed": IntegerAttr(0, i1), "scope": MemScopeAttr(MemScope(scope))}


@irdl_op_definition
class MBarrierArriveExpectTxOp(IRDLOperation):
    """Arrives, and has the current phase also wait for `transaction_bytes` bytes of TMA writes."""

    name = "nvvm.mbarrier.arrive.expect_tx"
    addr = operand_def(LLVMPointerType)
    txcount = operand_def(IntegerType)
    relaxed = prop_def(BoolAttr)
    scope = prop_def(MemScopeAttr)

    def __init__(self, barrier: SSAValue, transaction_bytes: SSAValue, scope: str = "cta") -> None:
        super().__init__(operands=[barrier, transaction_bytes], properties=_arrive_properties(scope))

    def verify_(self) -> None:
        _expect(self, self.addr, SHARED_PTR, "the mbarrier")
        _expect(self, self.txcount, i32, "the transaction byte count")


@irdl_op_definition
class MBarrierArriveOp(IRDLOperation):
    """Arrives (MLIR's optional arrival-state result is not taken)."""

    name = "nvvm.mbarrier.arrive"
    addr = operand_def(LLVMPointerType)
    relaxed = prop_def(BoolAttr)
    scope = prop_def(MemScopeAttr)

    def __init__(self, barrier: SSAValue, scope: str = "cta") -> None:
        super().__init__(operands=[barrier], properties=_arrive_properties(scope))

    def verify_(self) -> None:
        _expect(self, self.addr, SHARED_PTR, "the mbarrier")


@irdl_op_definition
class CpAsyncBulkTensorSharedClusterGlobalOp(IRDLOperation):
    """A TMA load of the tensor map's box at `coordinates` into shared memory, whose bytes complete the
    mbarrier's transaction count. MLIR's operands after the mbarrier (im2col offsets, multicast mask, L2 cache
    hint, predicate) are left empty: Tessera loads tiles, to one CTA, with the default cache policy."""

    name = "nvvm.cp.async.bulk.tensor.shared.cluster.global"
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    dst_mem = operand_def(LLVMPointerType)
    tma_descriptor = operand_def(LLVMPointerType)
    coordinates = var_operand_def(IntegerType)
    mbar = operand_def(LLVMPointerType)
    im2col_offsets = var_operand_def(IntegerType)
    multicast_mask = opt_operand_def(IntegerType)
    l2_cache_hint = opt_operand_def(IntegerType)
    predicate = opt_operand_def(i1)
    is_cta_only = prop_def(BoolAttr, prop_name="isCTAOnly")
    mode = prop_def(TmaLoadModeAttr)

    def __init__(
        self, destination: SSAValue, tensor_map: SSAValue, coordinates: Sequence[SSAValue], barrier: SSAValue
    ) -> None:
        super().__init__(
            operands=[destination, tensor_map, list(coordinates), barrier, [], [], [], []],
            properties={"isCTAOnly": IntegerAttr(0, i1), "mode": TmaLoadModeAttr(TmaLoadMode.TILE)},
        )

    def verify_(self) -> None:
        _expect(self, self.dst_mem, CLUSTER_PTR, "the destination")
        _expect(self, self.tma_descriptor, GENERIC_PTR, "the tensor map")
        _expect(self, self.mbar, SHARED_PTR, "the mbarrier")
        if not 1 <= len(self.coordinates) <= 5 or any(c.type != i32 for c in self.coordinates):
            raise VerifyException(f"{self.name}: takes 1 to 5 i32 coordinates, got {len(self.coordinates)}")
        if self.mode.data == TmaLoadMode.TILE and self.im2col_offsets:
            raise VerifyException(f"{self.name}: a tile load takes no im2col offsets")


@irdl_op_definition
class FenceProxyOp(IRDLOperation):
    """A proxy fence: with kind async.shared and space cta (the one Tessera emits), this thread's earlier writes of
    the CTA's shared memory become visible to the async proxy that WGMMA reads its operands through."""

    name = "nvvm.fence.proxy"
    kind = prop_def(ProxyKindAttr)
    space = prop_def(SharedSpaceAttr)

    def __init__(self, kind: str = "async.shared", space: str = "cta") -> None:
        super().__init__(
            properties={"kind": ProxyKindAttr(ProxyKind(kind)), "space": SharedSpaceAttr(SharedSpace(space))}
        )


@irdl_op_definition
class WgmmaFenceAlignedOp(IRDLOperation):
    """Orders the warpgroup's register and shared-memory accesses before the WGMMAs that follow."""

    name = "nvvm.wgmma.fence.aligned"


@irdl_op_definition
class WgmmaCommitGroupSyncAlignedOp(IRDLOperation):
    """Batches the warpgroup's uncommitted WGMMAs into one group."""

    name = "nvvm.wgmma.commit.group.sync.aligned"


@irdl_op_definition
class WgmmaWaitGroupSyncAlignedOp(IRDLOperation):
    """Waits until at most `group` of the warpgroup's WGMMA groups are pending."""

    name = "nvvm.wgmma.wait.group.sync.aligned"
    group = prop_def(IntegerAttr)

    def __init__(self, group: int) -> None:
        super().__init__(properties={"group": IntegerAttr(group, i64)})

    def verify_(self) -> None:
        if self.group.type != i64 or self.group.value.data < 0:
            raise VerifyException(f"{self.name}: the group count is a non-negative i64, got {self.group}")


@irdl_op_definition
class SetMaxRegisterOp(IRDLOperation):
    """setmaxnreg.{dec,inc}.sync.aligned: the executing warpgroup's registers per thread become `regCount` (a
    multiple of 8 in [24, 256]), given back to or taken from the program's pool (an increase waits for them).

        "nvvm.setmaxregister"() <{action = #nvvm<action increase>, regCount = 232 : i32}> : () -> ()
    """

    name = "nvvm.setmaxregister"
    action = prop_def(SetMaxRegisterActionAttr)
    reg_count = prop_def(IntegerAttr, prop_name="regCount")

    def __init__(self, action: str, count: int) -> None:
        super().__init__(properties={"action": SetMaxRegisterActionAttr(SetMaxRegisterAction(action)),
                                     "regCount": IntegerAttr(count, i32)})  # fmt: skip

    def verify_(self) -> None:
        count = self.reg_count.value.data
        if self.reg_count.type != i32 or count % 8 or not 24 <= count <= 256:
            raise VerifyException(f"{self.name}: regCount is an i32 multiple of 8 in [24, 256], got {self.reg_count}")


@irdl_op_definition
class WgmmaMmaAsyncOp(IRDLOperation):
    """acc' = A B, or A B + acc with scale_d "one": one warpgroup's MMA of the shared-memory operands that
    `descriptor_a` and `descriptor_b` describe. For an f32 (or s32) accumulator of shape m64nNkK each thread
    holds N/2 of its elements, the members of the LLVM struct accumulator and result."""

    name = "nvvm.wgmma.mma_async"
    inouts = operand_def(LLVMStructType)
    descriptor_a = operand_def(IntegerType)
    descriptor_b = operand_def(IntegerType)
    result = result_def(LLVMStructType)
    shape = prop_def(MmaShapeAttr)
    type_a = prop_def(WgmmaTypeAttr, prop_name="typeA")
    type_b = prop_def(WgmmaTypeAttr, prop_name="typeB")
    type_d = prop_def(WgmmaTypeAttr, prop_name="typeD")
    scale_d = prop_def(WgmmaScaleOutAttr, prop_name="scaleD")
    scale_a = prop_def(WgmmaScaleInAttr, prop_name="scaleA")
    scale_b = prop_def(WgmmaScaleInAttr, prop_name="scaleB")
    layout_a = prop_def(MmaLayoutAttr, prop_name="layoutA")
    layout_b = prop_def(MmaLayoutAttr, prop_name="layoutB")
    satfinite = prop_def(MmaIntOverflowAttr)

    def __init__(
        self,
        accumulator: SSAValue,
        descriptor_a: SSAValue,
        descriptor_b: SSAValue,
        shape: tuple[int, int, int],
        types: tuple[str, str, str] = ("bf16", "bf16", "f32"),
        scale_d: str = "one",
        layouts: tuple[str, str] = ("row", "col"),
    ) -> None:
        """`types`: A's, B's and the accumulator's; `layouts`: A's and B's (row, col: both K-major)."""
        m, n, k = shape
        props: dict[str, Attribute] = {
            "shape": MmaShapeAttr(IntAttr(m), IntAttr(n), IntAttr(k)),
            "typeA": WgmmaTypeAttr(WgmmaType(types[0])),
            "typeB": WgmmaTypeAttr(WgmmaType(types[1])),
            "typeD": WgmmaTypeAttr(WgmmaType(types[2])),
            "scaleD": WgmmaScaleOutAttr(WgmmaScaleOut(scale_d)),
            "scaleA": WgmmaScaleInAttr(WgmmaScaleIn.ONE),
            "scaleB": WgmmaScaleInAttr(WgmmaScaleIn.ONE),
            "layoutA": MmaLayoutAttr(MmaLayout(layouts[0])),
            "layoutB": MmaLayoutAttr(MmaLayout(layouts[1])),
            "satfinite": MmaIntOverflowAttr(MmaIntOverflow.WRAPPED),  # what MLIR fills in when absent
        }
        super().__init__(
            operands=[accumulator, descriptor_a, descriptor_b], result_types=[accumulator.type], properties=props
        )

    def verify_(self) -> None:
        _expect(self, self.descriptor_a, i64, "A's matrix descriptor")
        _expect(self, self.descriptor_b, i64, "B's matrix descriptor")
        m, n, k = self.shape.m.data, self.shape.n.data, self.shape.k.data
        inputs = (self.type_a.data.value, self.type_b.data.value)
        if any(t not in WGMMA_K for t in inputs):
            raise VerifyException(f"{self.name}: A and B are one of {', '.join(WGMMA_K)}, got {inputs}")
        if m != 64 or not (8 <= n <= 256 and n % 8 == 0) or k != WGMMA_K[inputs[0]]:
            raise VerifyException(
                f"{self.name}: {inputs[0]} shapes are m64nNk{WGMMA_K[inputs[0]]} with N a multiple of 8 in "
                f"8..256, got m{m}n{n}k{k}"
            )
        element = ACCUMULATOR_ELEMENT.get(self.type_d.data.value)
        if element is None:
            raise VerifyException(f"{self.name}: Tessera accumulates in f32 or s32, not {self.type_d.data}")
        expected = LLVMStructType.from_type_list([element] * (n // 2))
        _expect(self, self.inouts, expected, f"the m64n{n} {self.type_d.data} accumulator")
        if self.result.type != self.inouts.type:
            raise VerifyException(f"{self.name}: the result is the accumulator's type, {self.inouts.type}")


NVVM_OPS: list[type[Operation]] = [
    MBarrierInitOp,
    FenceMbarrierInitOp,
    MBarrierTryWaitParityOp,
    MBarrierArriveExpectTxOp,
    MBarrierArriveOp,
    CpAsyncBulkTensorSharedClusterGlobalOp,
    FenceProxyOp,
    WgmmaFenceAlignedOp,
    WgmmaCommitGroupSyncAlignedOp,
    WgmmaWaitGroupSyncAlignedOp,
    WgmmaMmaAsyncOp,
    SetMaxRegisterOp,
]
NVVM_ATTRS: list[type[Attribute]] = [
    MemScopeAttr,
    ProxyKindAttr,
    SharedSpaceAttr,
    TmaLoadModeAttr,
    MmaLayoutAttr,
    MmaIntOverflowAttr,
    WgmmaScaleInAttr,
]
NVVM_ATTRS += [WgmmaScaleOutAttr, WgmmaTypeAttr, MmaShapeAttr, SetMaxRegisterActionAttr]
# Not registered with tessera-opt's context: these ops are built by the NVVM lowering and printed, never parsed
# back by xDSL.
Nvvm = Dialect("nvvm", NVVM_OPS, NVVM_ATTRS)
