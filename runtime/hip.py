"""The HIP driver: runs the rocdl target's .hsaco code objects on an AMD GPU through libamdhip64.so.

ctypes only, no Python HIP binding: ROCm ships the C library but no binding we could depend on, and
the dozen calls used here are stable C API. Every prototype is declared (argtypes/restype), so 64-bit
device pointers and size_t values are never truncated to C int. Launches go to the null stream.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence
from pathlib import Path

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

LIBRARY = "libamdhip64.so"
_HIP_SUCCESS = 0
_NAME_LENGTH = 256

_c_int_p = ctypes.POINTER(ctypes.c_int)
_c_void_p_p = ctypes.POINTER(ctypes.c_void_p)
_c_uint = ctypes.c_uint
# name: (argtypes); every HIP call returns hipError_t (an int), except hipGetErrorString.
_PROTOTYPES: dict[str, list[type]] = {
    "hipInit": [_c_uint],
    "hipGetDeviceCount": [_c_int_p],
    "hipDeviceGet": [_c_int_p, ctypes.c_int],
    "hipDeviceGetName": [ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
    "hipSetDevice": [ctypes.c_int],
    "hipModuleLoadData": [_c_void_p_p, ctypes.c_void_p],
    "hipModuleGetFunction": [_c_void_p_p, ctypes.c_void_p, ctypes.c_char_p],
    "hipModuleLaunchKernel": [ctypes.c_void_p, *[_c_uint] * 7, ctypes.c_void_p, _c_void_p_p, _c_void_p_p],
    "hipMalloc": [_c_void_p_p, ctypes.c_size_t],
    "hipFree": [ctypes.c_void_p],
    "hipMemcpyHtoD": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t],
    "hipMemcpyDtoH": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t],
    "hipDeviceSynchronize": [],
    "hipEventCreate": [_c_void_p_p],
    "hipEventRecord": [ctypes.c_void_p, ctypes.c_void_p],
    "hipEventElapsedTime": [ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_void_p],
    "hipEventDestroy": [ctypes.c_void_p],
}


def search_dirs() -> list[Path]:
    """Where libamdhip64.so is looked for before the loader path: $ROCM_PATH/lib, then /opt/rocm/lib."""
    rocm_path = os.environ.get("ROCM_PATH")
    dirs = [Path(rocm_path) / "lib"] if rocm_path else []
    return [*dirs, Path("/opt/rocm/lib")]


def load_library() -> tuple[ctypes.CDLL, str]:
    """The HIP runtime library and where it came from. The first library found is the one used: a
    broken install is reported, not silently skipped in favour of another."""
    dirs = search_dirs()
    for directory in dirs:
        # Runtime-only ROCm installs ship just the versioned name (libamdhip64.so.6).
        candidates = [directory / LIBRARY, *sorted(directory.glob(LIBRARY + ".*"), reverse=True)]
        for candidate in candidates:
            if candidate.is_file():
                return _open(str(candidate)), str(candidate)
    found = ctypes.util.find_library("amdhip64")
    if found is None:
        where = ", ".join(str(directory) for directory in dirs)
        raise GpuRuntimeUnavailable(
            f"no HIP runtime on this machine ({LIBRARY} not found in {where} or the loader path): "
            "the rocdl artifacts need an AMD GPU with ROCm to run"
        )
    return _open(found), found


def _open(path: str) -> ctypes.CDLL:
    try:
        library = ctypes.CDLL(path)
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GpuRuntimeUnavailable(f"{path}: cannot load the HIP runtime: {reason}") from None
    for name, argtypes in [*_PROTOTYPES.items(), ("hipGetErrorString", [ctypes.c_int])]:
        try:
            function = getattr(library, name)
        except AttributeError:
            raise GpuRuntimeUnavailable(f"{path}: no {name} (not a usable HIP runtime)") from None
        function.argtypes = argtypes
        function.restype = ctypes.c_char_p if name == "hipGetErrorString" else ctypes.c_int
    return library


class HipModule:
    """A code object loaded with hipModuleLoadData; kernels are looked up by their symbol name."""

    def __init__(self, driver: HipDriver, handle: int, image: bytes) -> None:
        self._driver = driver
        self._handle = handle
        self._image = image  # kept alive with the module, whatever the runtime does with the pointer

    def function(self, name: str) -> KernelHandle:
        function = ctypes.c_void_p()
        self._driver.check(
            f"hipModuleGetFunction('{name}')",
            self._driver.library.hipModuleGetFunction(ctypes.byref(function), self._handle, name.encode()),
        )
        return KernelHandle(name, function.value)


class HipDriver:
    """One AMD GPU through the HIP runtime (device ordinal `device`, made current for this thread)."""

    name = "hip"

    def __init__(self, device: int = 0) -> None:
        self.library, self.library_path = load_library()
        status = self.library.hipInit(0)
        count = ctypes.c_int(0)
        if status == _HIP_SUCCESS:
            status = self.library.hipGetDeviceCount(ctypes.byref(count))
        if status != _HIP_SUCCESS or count.value == 0:
            reason = self.error_text(status) if status != _HIP_SUCCESS else "0 devices"
            raise GpuRuntimeUnavailable(
                f"HIP runtime {self.library_path} found but no AMD GPU is visible ({reason}): "
                "the rocdl artifacts need an AMD GPU to run"
            )
        if not 0 <= device < count.value:
            raise GpuError(f"HIP device {device} requested but {count.value} AMD GPU(s) are visible")
        handle = ctypes.c_int()
        self.check("hipDeviceGet", self.library.hipDeviceGet(ctypes.byref(handle), device))
        self.check("hipSetDevice", self.library.hipSetDevice(device))
        self._device = handle.value

    def error_text(self, status: int) -> str:
        text = self.library.hipGetErrorString(status)
        return f"{text.decode(errors='replace') if text else 'unknown error'} (hipError_t {status})"

    def check(self, call: str, status: int) -> None:
        """Every failed call becomes one line naming the call and HIP's own explanation."""
        if status != _HIP_SUCCESS:
            raise GpuError(f"{call} failed: {self.error_text(status)}")

    def device_name(self) -> str:
        name = ctypes.create_string_buffer(_NAME_LENGTH)
        self.check("hipDeviceGetName", self.library.hipDeviceGetName(name, _NAME_LENGTH, self._device))
        return name.value.decode(errors="replace")

    def load_module(self, image: bytes) -> HipModule:
        module = ctypes.c_void_p()
        self.check(
            f"hipModuleLoadData ({len(image)}-byte code object)",
            self.library.hipModuleLoadData(ctypes.byref(module), image),
        )
        return HipModule(self, module.value or 0, image)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        if nbytes < 0:
            raise GpuError(f"cannot allocate {nbytes} bytes")
        if nbytes == 0:
            return DeviceBuffer(0, 0)  # nothing to allocate; free() accepts it
        pointer = ctypes.c_void_p()
        self.check(f"hipMalloc({nbytes})", self.library.hipMalloc(ctypes.byref(pointer), nbytes))
        return DeviceBuffer(pointer.value or 0, nbytes)

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        source = upload_source(buffer, host)
        if source.nbytes:
            self.check("hipMemcpyHtoD", self.library.hipMemcpyHtoD(buffer.pointer, source.ctypes.data, source.nbytes))

    def download(self, buffer: DeviceBuffer, out: np.ndarray) -> None:
        check_download_target(buffer, out)
        if out.nbytes:
            self.check("hipMemcpyDtoH", self.library.hipMemcpyDtoH(out.ctypes.data, buffer.pointer, out.nbytes))

    def free(self, buffer: DeviceBuffer) -> None:
        if buffer.pointer:
            self.check("hipFree", self.library.hipFree(buffer.pointer))

    def launch(
        self,
        kernel: KernelHandle,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        shared_bytes: int,
        args: Sequence[KernelArg],
    ) -> None:
        dims = launch_dims(kernel, grid, block, shared_bytes)
        packed = pack_kernel_args(args)  # alive until the call returns; HIP copies the arguments at launch
        self.check(
            f"hipModuleLaunchKernel('{kernel.name}')",
            self.library.hipModuleLaunchKernel(kernel.handle, *dims, shared_bytes, None, packed.pointers, None),
        )

    def synchronize(self) -> None:
        self.check("hipDeviceSynchronize", self.library.hipDeviceSynchronize())

    # --- event timers (gpu_module.EventTimer: tessera-run --profile) ----------------------------------------

    def record_event(self) -> int:
        event = ctypes.c_void_p()
        self.check("hipEventCreate", self.library.hipEventCreate(ctypes.byref(event)))
        self.check("hipEventRecord", self.library.hipEventRecord(event, None))  # the null stream
        return event.value or 0

    def elapsed_seconds(self, start: int, end: int) -> float:
        milliseconds = ctypes.c_float()
        self.check("hipEventElapsedTime", self.library.hipEventElapsedTime(ctypes.byref(milliseconds), start, end))
        return milliseconds.value / 1e3

    def destroy_event(self, event: int) -> None:
        self.check("hipEventDestroy", self.library.hipEventDestroy(event))
