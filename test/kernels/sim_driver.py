"""A GpuDriver (runtime/gpu_module.py) whose device is the ROCDL simulator (rocdl_sim.py): runs a whole
compiled ROCDL program, launch by launch, as the HIP driver would on an AMD GPU — or an NVVM program with warps
of 32 (its WGMMA GEMMs' tensor maps and dynamic shared memory included), as CUDA would. Test-only.

The "code object" it loads is the kernels' GPU module text (OUT/<target>/kernels.mlir), which MLIR parses; device
memory is numpy byte arrays, viewed at each launch with the element type each kernel parameter is addressed in.
A tensor map is 128 bytes naming an entry of the driver's table (the tensor's buffer, shape and box), as a
CUtensorMap's bytes stand for the descriptor the driver encoded."""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence

import numpy as np
from rocdl_sim import KernelModule, Simulator, TensorMap

from tessera.runtime.gpu_module import DeviceBuffer, KernelArg, KernelBytes, KernelHandle, KernelScalar

_ELEMENT = {"f32": np.float32, "i16": np.uint16, "i64": np.int64, "i32": np.int32}


class SimulatedModule:
    def __init__(self, text: str, wave_size: int) -> None:
        self.wave_size = wave_size
        self.kernels = KernelModule(text)

    def function(self, name: str) -> KernelHandle:
        simulator = Simulator(self.kernels, name, self.wave_size)
        elements = {param: _ELEMENT[element] for param, element in simulator.elements.items()}
        return KernelHandle(name, (simulator, elements))


class SimulatedDriver:
    name = "simulator"

    def __init__(self, wave_size: int = 64) -> None:
        self.wave_size = wave_size  # 64: ROCDL kernels; 32: the NVVM target's (SIMT) kernels
        self.memory: dict[int, np.ndarray] = {}
        self.next = 1 << 12
        self.launches = 0
        self.tensor_maps: list[tuple[int, int, int, int, int]] = []  # what each encoded map's bytes name

    def device_name(self) -> str:
        return "ROCDL ISA simulator (test/kernels/rocdl_sim.py)"

    def load_module(self, image: bytes) -> SimulatedModule:
        return SimulatedModule(image.decode(), self.wave_size)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        pointer = self.next
        self.next += -(-max(nbytes, 1) // 256) * 256
        self.memory[pointer] = np.zeros(nbytes, np.uint8)
        return DeviceBuffer(pointer, nbytes)

    def bytes_at(self, pointer: int) -> np.ndarray:
        """The device memory from `pointer` to the end of its allocation (a pointer may point into one, as a
        view of a buffer's rows does)."""
        base = max((start for start in self.memory if start <= pointer), default=None)
        if base is None or pointer - base >= max(self.memory[base].size, 1):
            raise AssertionError(f"{pointer:#x} is in no allocation")
        return self.memory[base][pointer - base :]

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        self.bytes_at(buffer.pointer)[: host.nbytes] = np.ascontiguousarray(host).reshape(-1).view(np.uint8)

    def download(self, buffer: DeviceBuffer, out: np.ndarray) -> None:
        out.reshape(-1).view(np.uint8)[:] = self.bytes_at(buffer.pointer)[: out.nbytes]

    def free(self, buffer: DeviceBuffer) -> None:
        del self.memory[buffer.pointer]

    def launch(
        self,
        kernel: KernelHandle,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        shared_bytes: int,
        args: Sequence[KernelArg],
    ) -> None:
        simulator, elements = kernel.handle
        assert block == (simulator.threads, 1, 1) and grid[2] == 1, (kernel.name, block, grid)
        buffers, scalars, maps = {}, {}, {}
        for (name, _), arg in zip(simulator.params, args, strict=True):
            if isinstance(arg, KernelScalar):
                scalars[name] = int(arg.value)
            elif isinstance(arg, KernelBytes):
                maps[name] = self._tensor_map(arg)
            else:
                assert isinstance(arg, DeviceBuffer), f"{kernel.name}: a kernel argument of {type(arg).__name__}"
                raw = self.bytes_at(arg.pointer)[: arg.nbytes]
                element = elements.get(name, np.uint8)
                buffers[name] = raw[: raw.size // np.dtype(element).itemsize * np.dtype(element).itemsize].view(element)
        simulator.run((grid[0], grid[1]), buffers, scalars, tensor_maps=maps, shared_bytes=shared_bytes)
        self.launches += 1

    def encode_tensor_map_2d(self, pointer: int, *, dtype: str = "bf16", rows: int, cols: int, box_rows: int,
                             box_cols: int, swizzle: str = "128B") -> KernelBytes:  # fmt: skip
        """A tensor map of a row-major [rows, cols] bf16 tensor at `pointer` (as runtime/cuda.py's), 128 bytes."""
        assert dtype == "bf16" and swizzle == "128B", (dtype, swizzle)
        self.tensor_maps.append((pointer, rows, cols, box_rows, box_cols))
        return KernelBytes(struct.pack("<Q", len(self.tensor_maps) - 1).ljust(128, b"\0"), 64)

    def _tensor_map(self, arg: KernelBytes) -> TensorMap:
        pointer, rows, cols, box_rows, box_cols = self.tensor_maps[struct.unpack("<Q", arg.data[:8])[0]]
        tensor = self.bytes_at(pointer)[: rows * cols * 2].view(np.uint16).reshape(rows, cols)
        return TensorMap(tensor, box_rows, box_cols)

    def synchronize(self) -> None:
        pass

    # Event timers (gpu_module.EventTimer): a launch here runs to completion before it returns, so an event is
    # the host's clock when it is recorded.

    def record_event(self) -> float:
        return time.perf_counter()

    def elapsed_seconds(self, start: float, end: float) -> float:
        return end - start

    def destroy_event(self, event: float) -> None:
        pass
