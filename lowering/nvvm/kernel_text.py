"""A builder for one NVVM (Hopper) kernel as MLIR text: the ROCDL builder's gpu.func with the kernel ABI
of the NVVM target. It differs in three places:

- Operands staged by TMA are passed as their CUDA tensor maps (`CUtensorMap`, 128 bytes), not as data
  pointers. In the gpu.func such a parameter is a generic `!llvm.ptr` and the kernel carries
  `tessera.grid_constants = array<i32: ...>` naming those parameters; the NVVM pipeline
  (lowering/nvvm/pipeline.py) marks them `llvm.byval = !llvm.array<128 x i8>, llvm.align = 64,
  nvvm.grid_constant` once the gpu.func is an llvm.func (MLIR 22's verifier allows `nvvm.grid_constant`
  only on an llvm.func kernel, and gpu.func lowering drops `llvm.byval`). The PTX parameter is then
  `.param .align 64 .b8 k_param_0[128]`, passed by value at launch (CUTLASS's `__grid_constant__
  const CUtensorMap`), and the kernel reaches it through `cvta.param`.
- Shared memory is one dynamic allocation, `@tessera_dynamic_smem`, an external addrspace(3) array of
  0 bytes aligned to 1024 (a 128-byte TMA swizzle repeats every 8 rows of 128 bytes, and the WGMMA
  descriptors below assume every tile starts on such a boundary). Its size is given at launch
  (`cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)` first when above 48 KiB). Kernels address it by
  byte offset; `kernels_module` declares it once per gpu.module.
- The gpu.module carries the NVPTX data layout, which convert-gpu-to-nvvm (unlike convert-gpu-to-rocdl)
  does not set and toolchain.gpu_module_to_llvm_ir needs.

Launch ABI of every NVVM kernel (after the tensor maps, as on ROCDL):

    gpu.func @name(<tensor maps: !llvm.ptr>, <pointers: !llvm.ptr<1>>, %tokens: i32, %position: i32)
"""

from __future__ import annotations

from collections.abc import Sequence

from tessera.lowering.rocdl.kernel_text import GLOBAL, GpuKernelBuilder, LdsTile

SHARED = "!llvm.ptr<3>"
SHARED_CLUSTER = "!llvm.ptr<7>"
TENSOR_MAP = "!llvm.ptr"
DYNAMIC_SHARED = "tessera_dynamic_smem"
SHARED_ALIGNMENT = 1024
# LLVM 22's NVPTX data layout for nvptx64 (what llvmlite's sm_90a target machine reports).
WARP_SIZE = 32
NVPTX_DATA_LAYOUT = "e-p6:32:32-i64:64-i128:128-i256:256-v16:16-v32:32-n16:32:64"


class NvvmKernelBuilder(GpuKernelBuilder):
    """The body of one NVVM gpu.func. `operands` name its parameters in launch order; those also in
    `tensor_maps` are CUtensorMap grid constants, the rest global pointers."""

    def __init__(
        self, name: str, operands: list[str], tensor_maps: list[str], threads: int, shared: Sequence[LdsTile] = ()
    ) -> None:
        # Static shared tiles (SIMT kernels) are workgroup attributions, as on ROCDL; convert-gpu-to-nvvm
        # makes them addrspace(3) globals. TMA kernels use the dynamic allocation below instead.
        super().__init__(name, operands, list(shared), threads)
        self.wave_size = WARP_SIZE
        missing = [operand for operand in tensor_maps if operand not in operands]
        if missing:
            raise AssertionError(f"{name}: tensor maps {missing} are not operands ({operands})")
        self.tensor_maps = tensor_maps

    def math(self, fn: str, x: str) -> str:
        """exp / log / sqrt / rsqrt written out in the kernel (lowering/nvvm/math.py says why and how)."""
        from tessera.lowering.nvvm import math

        return math.FUNCTIONS[fn](self, x)

    # --- dynamic shared memory ------------------------------------------------------------------------

    def shared_base(self) -> str:
        """The start of the dynamic shared memory (address space 3)."""
        return self.let("smem", f"llvm.mlir.addressof @{DYNAMIC_SHARED} : {SHARED}")

    def shared_at(self, base: str, offset: str | int) -> str:
        """base + offset bytes (an i32 value or a constant)."""
        if isinstance(offset, int):
            return self.let("sp", f"llvm.getelementptr {base}[{offset}] : ({SHARED}) -> {SHARED}, i8")
        return self.let("sp", f"llvm.getelementptr {base}[{offset}] : ({SHARED}, i32) -> {SHARED}, i8")

    def shared_address(self, pointer: str) -> str:
        """The 32-bit shared-window address of a shared pointer (what WGMMA descriptors encode)."""
        return self.let("sa", f"llvm.ptrtoint {pointer} : {SHARED} to i32")

    def to_cluster(self, pointer: str) -> str:
        """A shared::cta pointer as the shared::cluster address of the same bytes (TMA's destination)."""
        return self.let("sc", f"llvm.addrspacecast {pointer} : {SHARED} to {SHARED_CLUSTER}")

    # --- the function ----------------------------------------------------------------------------------

    def render(self) -> str:
        params = [f"%{op}: {TENSOR_MAP if op in self.tensor_maps else GLOBAL}" for op in self.operands]
        params += ["%tokens: i32", "%position: i32"]
        attrs = [f"known_block_size = array<i32: {self.threads}, 1, 1>"]
        if self.tensor_maps:
            indices = ", ".join(str(self.operands.index(op)) for op in self.tensor_maps)
            attrs.append(f"tessera.grid_constants = array<i32: {indices}>")
        workgroup = ", ".join(f"%lds_{tile.name}: {tile.memref}" for tile in self.lds_tiles.values())
        attribution = f" workgroup({workgroup})" if workgroup else ""
        body = "\n".join(["    " + definition for _, definition in self.constants.values()])
        lines = "\n".join("  " + line for line in self.lines)
        return (
            f"  gpu.func @{self.name}({', '.join(params)}){attribution} kernel attributes {{{', '.join(attrs)}}} {{\n"
            f"{body}\n{lines}\n    gpu.return\n  }}\n"
        )


def kernels_module(functions: list[str]) -> str:
    """NVVM kernels as one gpu.module (the unit convert-gpu-to-nvvm lowers), with the NVPTX data layout and
    the dynamic shared memory every kernel addresses."""
    shared = (
        f"  llvm.mlir.global external @{DYNAMIC_SHARED}() "
        f"{{addr_space = 3 : i32, alignment = {SHARED_ALIGNMENT} : i64}} : !llvm.array<0 x i8>\n"
    )
    return (
        "module attributes {gpu.container_module} {\n"
        f'gpu.module @kernels attributes {{llvm.data_layout = "{NVPTX_DATA_LAYOUT}"}} {{\n'
        + shared
        + "\n".join(functions)
        + "}\n}\n"
    )
