"""The CUDA driver: runs the nvvm target's cubin or PTX on an NVIDIA GPU through NVIDIA's `cuda-bindings`.

The binding (`from cuda.bindings import driver`) is imported when a driver is opened, never at module
import. It wraps the CUDA driver API one to one and returns every call's result as a tuple
`(CUresult, value...)`; `_call` turns a non-success CUresult into one line naming the call.

The device's primary context is used (cuDevicePrimaryCtxRetain + cuCtxSetCurrent), the one the CUDA
runtime and other libraries in the process share, rather than a private context; it is made current on
the thread that opens the driver. Launches go to the null stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tessera.runtime.gpu_module import (
    DeviceBuffer,
    GpuError,
    GpuRuntimeUnavailable,
    KernelArg,
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def as_module_image(image: bytes) -> bytes:
    """A cubin or fatbin unchanged; PTX text NUL-terminated, as cuModuleLoadData reads it as a C string."""
    if image.startswith((_ELF_MAGIC, _FATBIN_MAGIC)) or image.endswith(b"\0"):
        return image
    return image + b"\0"


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
