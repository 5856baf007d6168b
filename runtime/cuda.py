"""The CUDA driver: runs the nvvm target's cubin or PTX on an NVIDIA GPU through NVIDIA's `cuda-bindings`.

The binding (`from cuda.bindings import driver`) is imported when a driver is opened, never at module
import. It wraps the CUDA driver API one to one and returns every call's result as a tuple
`(CUresult, value...)`; `_call` turns a non-success CUresult into one line naming the call.

The device's primary context is used (cuDevicePrimaryCtxRetain + cuCtxSetCurrent), the one the CUDA
runtime and other libraries in the process share, rather than a private context; it is made current on
the thread that opens the driver. Launches go to the null stream.

TMA kernels (the nvvm GEMM) take their operands as CUtensorMaps passed by value: `encode_tensor_map_2d`
builds one with cuTensorMapEncodeTiled and returns its 128 bytes as a `KernelBytes` argument.
`tensor_map_arguments` is that call's argument list alone, checked here against the driver's rules so
that a bad shape fails as one line naming the field rather than as CUDA_ERROR_INVALID_VALUE.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from tessera.runtime.gpu_module import (
    DeviceBuffer,
    GpuError,
    GpuRuntimeUnavailable,
    KernelArg,
    KernelBytes,
    KernelHandle,
    check_download_target,
    launch_dims,
    pack_kernel_args,
    upload_source,
)

# Dynamic shared memory above 48 KiB must be opted into per kernel (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
DEFAULT_SHARED_LIMIT = 48 * 1024
_NAME_LENGTH = 256
# Code objects cuModuleLoadData takes as binary; anything else is PTX text, which must end in NUL.
_ELF_MAGIC = b"\x7fELF"
_FATBIN_MAGIC = (0xBA55ED50).to_bytes(4, "little")
# A CUtensorMap: 128 opaque bytes, 64-aligned (the kernel declares `.param .align 64 .b8 [128]`).
TENSOR_MAP_BYTES = 128
TENSOR_MAP_ALIGNMENT = 64
# element type -> (CUtensorMapDataType member, bytes)
TENSOR_MAP_DTYPES = {
    "bf16": ("CU_TENSOR_MAP_DATA_TYPE_BFLOAT16", 2),
    "f16": ("CU_TENSOR_MAP_DATA_TYPE_FLOAT16", 2),
    "f32": ("CU_TENSOR_MAP_DATA_TYPE_FLOAT32", 4),
}
# swizzle -> (CUtensorMapSwizzle member, the span in bytes a box's inner dimension may not exceed)
TENSOR_MAP_SWIZZLES = {
    "none": ("CU_TENSOR_MAP_SWIZZLE_NONE", None),
    "32B": ("CU_TENSOR_MAP_SWIZZLE_32B", 32),
    "64B": ("CU_TENSOR_MAP_SWIZZLE_64B", 64),
    "128B": ("CU_TENSOR_MAP_SWIZZLE_128B", 128),
}
_TMA_GLOBAL_ALIGNMENT = 16  # the global address and every global stride: multiples of 16 bytes
_TMA_MAX_BOX = 256


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def as_module_image(image: bytes) -> bytes:
    """A cubin or fatbin unchanged; PTX text NUL-terminated, as cuModuleLoadData reads it as a C string."""
    if image.startswith((_ELF_MAGIC, _FATBIN_MAGIC)) or image.endswith(b"\0"):
        return image
    return image + b"\0"


def tensor_map_arguments(
    cu: Any,
    pointer: int,
    *,
    dtype: str = "bf16",
    rows: int,
    cols: int,
    box_rows: int,
    box_cols: int,
    swizzle: str = "128B",
) -> tuple[Any, ...]:
    """The arguments of `cu.cuTensorMapEncodeTiled` for a row-major [rows, cols] tensor at `pointer`
    loaded in boxes of [box_rows, box_cols]: rank 2, dims {cols, rows} (innermost first), strides
    {cols * element bytes}, element strides {1, 1}, no interleave, no L2 promotion, and OOB fill NONE
    (elements past the tensor's end read as zeros)."""
    if dtype not in TENSOR_MAP_DTYPES:
        raise GpuError(f"tensor map dtype must be one of {', '.join(TENSOR_MAP_DTYPES)}, got '{dtype}'")
    if swizzle not in TENSOR_MAP_SWIZZLES:
        raise GpuError(f"tensor map swizzle must be one of {', '.join(TENSOR_MAP_SWIZZLES)}, got '{swizzle}'")
    type_name, element_bytes = TENSOR_MAP_DTYPES[dtype]
    swizzle_name, swizzle_span = TENSOR_MAP_SWIZZLES[swizzle]
    row_bytes, box_row_bytes = cols * element_bytes, box_cols * element_bytes
    align = _TMA_GLOBAL_ALIGNMENT
    rules = [
        (1 <= rows <= 2**32 and 1 <= cols <= 2**32, f"rows and cols must be in 1 .. 2^32, got {rows} x {cols}"),
        (
            1 <= box_rows <= _TMA_MAX_BOX and 1 <= box_cols <= _TMA_MAX_BOX,
            f"box must be in 1 .. {_TMA_MAX_BOX} per dimension, got {box_rows} x {box_cols}",
        ),
        (pointer > 0 and pointer % align == 0, f"the address {pointer:#x} must be a multiple of {align} bytes"),
        (row_bytes % align == 0, f"a row ({row_bytes} bytes) must be a multiple of {align} bytes"),
        (box_row_bytes % 16 == 0, f"a box row ({box_row_bytes} bytes) must be a multiple of 16 bytes"),
        (
            swizzle_span is None or box_row_bytes <= swizzle_span,
            f"a box row ({box_row_bytes} bytes) must fit the {swizzle} swizzle span",
        ),
    ]
    broken = [rule for holds, rule in rules if not holds]
    if broken:
        raise GpuError(f"tensor map of a [{rows}, {cols}] {dtype} tensor: {broken[0]}")
    u64, u32 = cu.cuuint64_t, cu.cuuint32_t
    return (
        getattr(cu.CUtensorMapDataType, type_name),
        2,
        pointer,
        [u64(cols), u64(rows)],
        [u64(row_bytes)],
        [u32(box_cols), u32(box_rows)],
        [u32(1), u32(1)],
        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        getattr(cu.CUtensorMapSwizzle, swizzle_name),
        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_NONE,
        cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
    )


class CudaModule:
    """A code object loaded with cuModuleLoadData; kernels are looked up by their (unmangled) name."""

    def __init__(self, driver: CudaDriver, handle: Any) -> None:
        self._driver = driver
        self._handle = handle

    def function(self, name: str) -> KernelHandle:
        cu = self._driver.cu
        function = self._driver.call(
            f"cuModuleGetFunction('{name}')", cu.cuModuleGetFunction(self._handle, name.encode())
        )
        return KernelHandle(name, function)


class CudaDriver:
    """One NVIDIA GPU through the CUDA driver API (device ordinal `device`)."""

    name = "cuda"

    def __init__(self, device: int = 0) -> None:
        try:
            from cuda.bindings import driver
        except ImportError:
            raise GpuRuntimeUnavailable(
                "the NVIDIA runtime binding is not installed (pip install cuda-bindings): "
                "the nvvm artifacts need it and an NVIDIA GPU to run"
            ) from None
        self.cu: Any = driver
        try:
            (status,) = driver.cuInit(0)
        except RuntimeError as exc:
            # cuda-bindings loads libcuda.so on the first call and raises when the NVIDIA driver is absent.
            raise GpuRuntimeUnavailable(
                f"no NVIDIA driver on this machine (libcuda.so could not be loaded: {_first_line(exc)}): "
                "the nvvm artifacts need an NVIDIA GPU to run"
            ) from None
        count = 0
        if status == driver.CUresult.CUDA_SUCCESS:
            status, count = driver.cuDeviceGetCount()
        if status != driver.CUresult.CUDA_SUCCESS or count == 0:
            reason = self.error_text(status) if status != driver.CUresult.CUDA_SUCCESS else "0 devices"
            raise GpuRuntimeUnavailable(
                f"NVIDIA driver found but no NVIDIA GPU is visible ({reason}): the nvvm artifacts need an NVIDIA GPU to run"
            )
        if not 0 <= device < count:
            raise GpuError(f"CUDA device {device} requested but {count} NVIDIA GPU(s) are visible")
        self._device = self.call("cuDeviceGet", driver.cuDeviceGet(device))
        self._context = self.call("cuDevicePrimaryCtxRetain", driver.cuDevicePrimaryCtxRetain(self._device))
        self.call("cuCtxSetCurrent", driver.cuCtxSetCurrent(self._context))
        self._raised_shared_limit: dict[int, int] = {}  # CUfunction address -> dynamic shared bytes allowed

    def error_text(self, status: Any) -> str:
        """cuGetErrorName and cuGetErrorString of a CUresult, e.g. "CUDA_ERROR_INVALID_VALUE: invalid argument"."""
        enum_name = getattr(status, "name", None) or f"CUresult {int(status)}"
        try:
            name_status, name = self.cu.cuGetErrorName(status)
            text_status, text = self.cu.cuGetErrorString(status)
        except RuntimeError:  # the driver library itself is unusable
            return enum_name
        success = self.cu.CUresult.CUDA_SUCCESS
        name_text = name.decode(errors="replace") if name_status == success and name else enum_name
        if text_status == success and text:
            return f"{name_text}: {text.decode(errors='replace')}"
        return name_text

    def call(self, call: str, result: tuple[Any, ...]) -> Any:
        """The value of a cuda-bindings `(CUresult, value...)` tuple; one line naming `call` on failure."""
        status = result[0]
        if status != self.cu.CUresult.CUDA_SUCCESS:
            raise GpuError(f"{call} failed: {self.error_text(status)}")
        if len(result) == 1:
            return None
        return result[1] if len(result) == 2 else result[1:]

    def device_name(self) -> str:
        name = self.call("cuDeviceGetName", self.cu.cuDeviceGetName(_NAME_LENGTH, self._device))
        return bytes(name).split(b"\0", 1)[0].decode(errors="replace")

    def load_module(self, image: bytes) -> CudaModule:
        module = self.call(
            f"cuModuleLoadData ({len(image)}-byte code object)", self.cu.cuModuleLoadData(as_module_image(image))
        )
        return CudaModule(self, module)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        if nbytes < 0:
            raise GpuError(f"cannot allocate {nbytes} bytes")
        if nbytes == 0:
            return DeviceBuffer(0, 0)  # cuMemAlloc rejects 0 bytes; free() accepts this
        pointer = self.call(f"cuMemAlloc({nbytes})", self.cu.cuMemAlloc(nbytes))
        return DeviceBuffer(int(pointer), nbytes)

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        source = upload_source(buffer, host)
        if source.nbytes:
            device = self.cu.CUdeviceptr(buffer.pointer)
            self.call("cuMemcpyHtoD", self.cu.cuMemcpyHtoD(device, source.ctypes.data, source.nbytes))

    def download(self, buffer: DeviceBuffer, out: np.ndarray) -> None:
        check_download_target(buffer, out)
        if out.nbytes:
            device = self.cu.CUdeviceptr(buffer.pointer)
            self.call("cuMemcpyDtoH", self.cu.cuMemcpyDtoH(out.ctypes.data, device, out.nbytes))

    def free(self, buffer: DeviceBuffer) -> None:
        if buffer.pointer:
            self.call("cuMemFree", self.cu.cuMemFree(self.cu.CUdeviceptr(buffer.pointer)))

    def launch(
        self,
        kernel: KernelHandle,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        shared_bytes: int,
        args: Sequence[KernelArg],
    ) -> None:
        dims = launch_dims(kernel, grid, block, shared_bytes)
        if shared_bytes > DEFAULT_SHARED_LIMIT:
            self._allow_shared(kernel, shared_bytes)
        packed = pack_kernel_args(args)
        # kernelParams is passed as the address of our ctypes void** array (an int), one of the two forms
        # cuda-bindings accepts; the other, ((values...), (ctypes types...)), would repack the arguments
        # in the binding. One packer (gpu_module.pack_kernel_args) for both vendors keeps the layout in
        # one place. `packed` stays alive until the call returns; the driver copies arguments at launch.
        # extra is 0 (NULL): the driver rejects kernelParams and extra both set.
        self.call(
            f"cuLaunchKernel('{kernel.name}')",
            self.cu.cuLaunchKernel(kernel.handle, *dims, shared_bytes, 0, packed.address, 0),
        )

    def _allow_shared(self, kernel: KernelHandle, shared_bytes: int) -> None:
        """Opt the kernel into `shared_bytes` of dynamic shared memory (once per kernel and size)."""
        key = int(kernel.handle)
        if self._raised_shared_limit.get(key, DEFAULT_SHARED_LIMIT) >= shared_bytes:
            return
        attribute = self.cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        self.call(
            f"cuFuncSetAttribute('{kernel.name}', MAX_DYNAMIC_SHARED_SIZE_BYTES={shared_bytes})",
            self.cu.cuFuncSetAttribute(kernel.handle, attribute, shared_bytes),
        )
        self._raised_shared_limit[key] = shared_bytes

    def synchronize(self) -> None:
        self.call("cuCtxSynchronize", self.cu.cuCtxSynchronize())

    # --- event timers (gpu_module.EventTimer: tessera-run --profile) ----------------------------------------

    def record_event(self) -> Any:
        event = self.call("cuEventCreate", self.cu.cuEventCreate(0))  # CU_EVENT_DEFAULT: timing on
        self.call("cuEventRecord", self.cu.cuEventRecord(event, 0))
        return event

    def elapsed_seconds(self, start: Any, end: Any) -> float:
        # CUDA 12.8 added cuEventElapsedTime_v2; take whichever name this binding has.
        elapsed = getattr(self.cu, "cuEventElapsedTime", None) or self.cu.cuEventElapsedTime_v2
        return float(self.call("cuEventElapsedTime", elapsed(start, end))) / 1e3

    def destroy_event(self, event: Any) -> None:
        self.call("cuEventDestroy", self.cu.cuEventDestroy(event))

    def encode_tensor_map_2d(
        self,
        pointer: int,
        *,
        dtype: str = "bf16",
        rows: int,
        cols: int,
        box_rows: int,
        box_cols: int,
        swizzle: str = "128B",
    ) -> KernelBytes:
        """The CUtensorMap of a row-major [rows, cols] device tensor at `pointer` (see tensor_map_arguments),
        as the 128 bytes a kernel takes by value."""
        arguments = tensor_map_arguments(
            self.cu, pointer, dtype=dtype, rows=rows, cols=cols, box_rows=box_rows, box_cols=box_cols, swizzle=swizzle
        )
        tensor_map = self.call(
            f"cuTensorMapEncodeTiled([{rows}, {cols}] {dtype}, box [{box_rows}, {box_cols}], swizzle {swizzle})",
            self.cu.cuTensorMapEncodeTiled(*arguments),
        )
        return KernelBytes(ctypes.string_at(int(tensor_map.getPtr()), TENSOR_MAP_BYTES), TENSOR_MAP_ALIGNMENT)
