"""The GPU module-loader interface: what a vendor driver must do to run a compiled GPU artifact.

A GPU target's artifact holds a code object (a .hsaco for the rocdl target; a cubin or PTX text for the
nvvm target) and launch metadata. Running it needs only: load the code object, look kernels up by name,
move buffers between host and device, launch with an explicit grid/block/shared-memory size and
argument list, and wait. `GpuDriver` and `GpuModule` are that contract; runtime/hip.py and
runtime/cuda.py implement it, so the executor above them is vendor-neutral.

Vendor runtimes are imported only by `open_driver`, and only the one asked for: this module imports on
a machine with neither, and a missing runtime is reported as one line (`GpuRuntimeUnavailable`) when a
driver is opened, not when the package is imported.

Kernel arguments are packed here, once for both vendors: hipModuleLaunchKernel and cuLaunchKernel both
take `void** kernelParams`, an array of N pointers each pointing at one argument's bytes, and read each
argument's size from the kernel image. Scalars carry their C type explicitly (`KernelScalar`), because
a Python int alone does not say whether the kernel expects 4 or 8 bytes. A parameter passed by value
as a struct (a 128-byte CUtensorMap grid constant) is `KernelBytes`: its bytes are copied into an
aligned host buffer and the array holds that buffer's address, as for any other argument.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from tessera.errors import TesseraError

DRIVERS = ("hip", "cuda")

ScalarType = Literal["i32", "i64", "f32"]
SCALAR_TYPES: dict[str, type[ctypes.c_int32] | type[ctypes.c_int64] | type[ctypes.c_float]] = {
    "i32": ctypes.c_int32,
    "i64": ctypes.c_int64,
    "f32": ctypes.c_float,
}
_INT_RANGES = {"i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1)}


class GpuRuntimeUnavailable(TesseraError):
    """The vendor runtime (or any device for it) is absent: GPU artifacts cannot run on this machine."""


class GpuError(TesseraError):
    """A driver call that failed, or an argument a driver call would reject (named in the message)."""


@dataclass(frozen=True)
class DeviceBuffer:
    """Device memory from `GpuDriver.alloc`: its device address and size in bytes."""

    pointer: int
    nbytes: int


@dataclass(frozen=True)
class KernelHandle:
    """A kernel found in a loaded module; `handle` is the vendor's function object (opaque here)."""

    name: str
    handle: Any


@dataclass(frozen=True)
class KernelScalar:
    """A scalar kernel argument with the C type the kernel declares (i32, i64 or f32)."""

    value: int | float
    ctype: ScalarType

    def __post_init__(self) -> None:
        if self.ctype not in SCALAR_TYPES:
            raise GpuError(f"kernel scalar type must be one of {', '.join(SCALAR_TYPES)}, got '{self.ctype}'")
        if self.ctype in _INT_RANGES:
            # A float or bool passed as an integer argument is a caller's mistake that ctypes would hide.
            if not isinstance(self.value, int) or isinstance(self.value, bool):
                raise GpuError(f"kernel scalar of type {self.ctype} needs an int, got {self.value!r}")
            low, high = _INT_RANGES[self.ctype]
            if not low <= self.value <= high:
                raise GpuError(f"kernel scalar {self.value} does not fit in {self.ctype}")


@dataclass(frozen=True)
class KernelBytes:
    """A by-value struct parameter (e.g. a 128-byte CUtensorMap): its bytes, and the alignment the kernel
    declares for it (`.param .align 64 .b8 p[128]`), which its host copy keeps too."""

    data: bytes
    align: int

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or not self.data:
            raise GpuError(f"kernel bytes argument needs non-empty bytes, got {type(self.data).__name__}")
        if self.align < 1 or self.align & (self.align - 1):
            raise GpuError(f"kernel bytes alignment must be a power of two, got {self.align}")


KernelArg = DeviceBuffer | KernelScalar | KernelBytes
ArgValue = ctypes.c_uint64 | ctypes.c_int32 | ctypes.c_int64 | ctypes.c_float | ctypes.Array[ctypes.c_char]


@dataclass(frozen=True)
class PackedArgs:
    """The `void** kernelParams` array of a launch and the ctypes values it points at.

    Hold this object until the launch call returns: the array stores raw addresses of `values`.
    """

    pointers: ctypes.Array[ctypes.c_void_p]
    values: tuple[ArgValue, ...]

    @property
    def address(self) -> int:
        """The array's address, i.e. the `void**` itself."""
        return ctypes.addressof(self.pointers)

    def __len__(self) -> int:
        return len(self.values)


def pack_kernel_args(args: Sequence[KernelArg]) -> PackedArgs:
    """Build the `void**` array both launch calls take: device pointers as 64-bit values (GPU
    addresses are 64-bit whatever the host's pointer width), scalars as their declared C type, by-value
    structs as an aligned copy of their bytes."""
    values: list[ArgValue] = []
    addresses: list[int] = []
    for index, arg in enumerate(args):
        if isinstance(arg, KernelBytes):
            # ctypes aligns a char array to 1 only: over-allocate and point at the first aligned byte.
            buffer = ctypes.create_string_buffer(len(arg.data) + arg.align - 1)
            address = -(-ctypes.addressof(buffer) // arg.align) * arg.align
            ctypes.memmove(address, arg.data, len(arg.data))
            values.append(buffer)
            addresses.append(address)
            continue
        if isinstance(arg, DeviceBuffer):
            values.append(ctypes.c_uint64(arg.pointer))
        elif isinstance(arg, KernelScalar) and arg.ctype == "f32":
            values.append(ctypes.c_float(arg.value))
        elif isinstance(arg, KernelScalar):
            values.append(SCALAR_TYPES[arg.ctype](int(arg.value)))
        else:
            raise GpuError(
                f"kernel argument {index} must be a DeviceBuffer, KernelScalar or KernelBytes, got {type(arg).__name__}"
            )
        addresses.append(ctypes.addressof(values[-1]))
    pointers = (ctypes.c_void_p * len(values))(*addresses)
    return PackedArgs(pointers, tuple(values))


def launch_dims(
    kernel: KernelHandle, grid: tuple[int, int, int], block: tuple[int, int, int], shared_bytes: int
) -> tuple[int, int, int, int, int, int]:
    """grid x, y, z then block x, y, z as plain ints (numpy integers accepted); a bad launch shape is
    rejected here, with the kernel's name, rather than by the driver with a bare error code."""
    dims: list[int] = []
    for what, triple in (("grid", grid), ("block", block)):
        if len(triple) != 3 or any(not isinstance(dim, int | np.integer) or dim < 1 for dim in triple):
            raise GpuError(f"kernel '{kernel.name}': {what} must be three positive ints, got {triple}")
        dims += [int(dim) for dim in triple]
    if shared_bytes < 0:
        raise GpuError(f"kernel '{kernel.name}': shared_bytes must be >= 0, got {shared_bytes}")
    return (dims[0], dims[1], dims[2], dims[3], dims[4], dims[5])


def upload_source(buffer: DeviceBuffer, host: np.ndarray) -> np.ndarray:
    """The C-contiguous host array to copy into `buffer` (a copy only when `host` is strided)."""
    source = np.ascontiguousarray(host)
    if source.nbytes > buffer.nbytes:
        raise GpuError(f"upload of {source.nbytes} bytes into a device buffer of {buffer.nbytes} bytes")
    return source


def check_download_target(buffer: DeviceBuffer, out: np.ndarray) -> None:
    """`out` receives bytes in place, so it must be C-contiguous, writeable and no larger than `buffer`."""
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise GpuError("download target must be a C-contiguous, writeable numpy array")
    if out.nbytes > buffer.nbytes:
        raise GpuError(f"download of {out.nbytes} bytes from a device buffer of {buffer.nbytes} bytes")


class GpuModule(Protocol):
    """A loaded code object."""

    def function(self, name: str) -> KernelHandle:
        """The kernel `name`; a GpuError naming it when the module has no such kernel."""
        ...


class GpuDriver(Protocol):
    """One device of one vendor's runtime. Launches are asynchronous; `download` and `synchronize` wait."""

    name: str  # "hip" | "cuda"

    def device_name(self) -> str: ...

    def load_module(self, image: bytes) -> GpuModule:
        """image: a .hsaco (HIP), or a cubin or PTX text (CUDA)."""
        ...

    def alloc(self, nbytes: int) -> DeviceBuffer: ...

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None: ...

    def download(self, buffer: DeviceBuffer, out: np.ndarray) -> None: ...

    def free(self, buffer: DeviceBuffer) -> None: ...

    def launch(
        self,
        kernel: KernelHandle,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        shared_bytes: int,
        args: Sequence[KernelArg],
    ) -> None: ...

    def synchronize(self) -> None: ...


@runtime_checkable
class EventTimer(Protocol):
    """A driver that times the device's work by events on its stream (CUDA and HIP events): what GpuSession's
    profile (tessera-run --profile) measures launches with."""

    def record_event(self) -> Any:
        """An event recorded on the stream now: it completes once the work launched before it has."""
        ...

    def elapsed_seconds(self, start: Any, end: Any) -> float:
        """Seconds between two completed events (after synchronize)."""
        ...

    def destroy_event(self, event: Any) -> None: ...


def open_driver(name: str, device: int = 0) -> GpuDriver:
    """The driver `name` ("hip" or "cuda") on device ordinal `device`; only that vendor's module is imported."""
    if name == "hip":
        from tessera.runtime.hip import HipDriver

        return HipDriver(device)
    if name == "cuda":
        from tessera.runtime.cuda import CudaDriver

        return CudaDriver(device)
    raise TesseraError(f"unknown GPU driver '{name}': known drivers are {', '.join(DRIVERS)}")
