"""The GPU module loaders without a GPU: absent runtimes fail as one line, arguments pack as the launch
calls expect, and the HIP driver's ctypes wiring runs end to end against a small fake libamdhip64.so
(compiled here when a C compiler exists) whose "kernel" reads its arguments exactly as HIP would."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import shutil
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import NEEDS_MLIR

from tessera.errors import TesseraError
from tessera.runtime.gpu_module import (
    DeviceBuffer,
    EventTimer,
    GpuError,
    GpuRuntimeUnavailable,
    KernelBytes,
    KernelHandle,
    KernelScalar,
    open_driver,
    pack_kernel_args,
)


def _hip_installed() -> bool:
    from tessera.runtime.hip import LIBRARY, search_dirs

    on_disk = any((directory / LIBRARY).is_file() for directory in search_dirs())
    return on_disk or ctypes.util.find_library("amdhip64") is not None


def _assert_one_line(error: BaseException, *phrases: str) -> None:
    message = str(error)
    assert "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message


@pytest.mark.skipif(_hip_installed(), reason="a HIP runtime is installed here, so opening it does not fail")
def test_hip_absent_is_one_line() -> None:
    with pytest.raises(GpuRuntimeUnavailable) as caught:
        open_driver("hip")
    _assert_one_line(caught.value, "libamdhip64.so", "/opt/rocm/lib", "ROCm")


def test_hip_search_lists_rocm_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCM_PATH", str(tmp_path))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    if Path("/opt/rocm/lib/libamdhip64.so").is_file():
        pytest.skip("/opt/rocm/lib/libamdhip64.so exists, so the search succeeds")
    with pytest.raises(GpuRuntimeUnavailable) as caught:
        open_driver("hip")
    _assert_one_line(caught.value, "libamdhip64.so not found", str(tmp_path / "lib"), "/opt/rocm/lib")


def test_hip_unloadable_library_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libamdhip64.so").write_bytes(b"not a shared library")
    monkeypatch.setenv("ROCM_PATH", str(tmp_path))
    with pytest.raises(GpuRuntimeUnavailable) as caught:
        open_driver("hip")
    _assert_one_line(caught.value, str(tmp_path / "lib" / "libamdhip64.so"), "cannot load")


def test_cuda_absent_is_one_line() -> None:
    if importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None:
        pytest.skip("cuda-bindings is installed here; only a machine without it checks this message")
    with pytest.raises(GpuRuntimeUnavailable) as caught:
        open_driver("cuda")
    _assert_one_line(caught.value, "pip install cuda-bindings")


def test_unknown_driver_names_the_known_ones() -> None:
    with pytest.raises(TesseraError) as caught:
        open_driver("tpu")
    _assert_one_line(caught.value, "'tpu'", "hip", "cuda")


def test_pack_kernel_args() -> None:
    args: list[DeviceBuffer | KernelScalar] = [
        DeviceBuffer(0x7F00_1234_5678, 64),
        KernelScalar(-7, "i32"),
        KernelScalar(2**40 + 3, "i64"),
        KernelScalar(1.5, "f32"),
        DeviceBuffer(0xFFFF_FFFF_0000_0010, 8),
    ]
    packed = pack_kernel_args(args)
    assert len(packed) == len(packed.pointers) == 5
    # Read the array through its own address, as the launch call does.
    array = ctypes.cast(packed.address, ctypes.POINTER(ctypes.c_void_p))
    read = [
        ctypes.cast(array[0], ctypes.POINTER(ctypes.c_uint64))[0],
        ctypes.cast(array[1], ctypes.POINTER(ctypes.c_int32))[0],
        ctypes.cast(array[2], ctypes.POINTER(ctypes.c_int64))[0],
        ctypes.cast(array[3], ctypes.POINTER(ctypes.c_float))[0],
        ctypes.cast(array[4], ctypes.POINTER(ctypes.c_uint64))[0],
    ]
    assert read == [0x7F00_1234_5678, -7, 2**40 + 3, 1.5, 0xFFFF_FFFF_0000_0010]
    assert [type(value) for value in packed.values] == [
        ctypes.c_uint64,
        ctypes.c_int32,
        ctypes.c_int64,
        ctypes.c_float,
        ctypes.c_uint64,
    ]
    assert len(pack_kernel_args([])) == 0


@pytest.mark.parametrize(
    ("value", "ctype", "phrase"),
    [(2**31, "i32", "does not fit in i32"), (1.0, "i64", "needs an int"), (1, "u8", "must be one of")],
)
def test_bad_kernel_scalar(value: float, ctype: str, phrase: str) -> None:
    with pytest.raises(GpuError) as caught:
        KernelScalar(value, ctype)  # type: ignore[arg-type]
    _assert_one_line(caught.value, phrase)


def test_gpu_module_imports_no_vendor_module() -> None:
    probe = (
        "import sys, tessera.runtime.gpu_module\n"
        "print(sorted(m for m in sys.modules if m in ('tessera.runtime.hip', 'tessera.runtime.cuda')"
        " or m == 'cuda' or m.startswith('cuda.')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# A stand-in for libamdhip64.so: host memory plays device memory, and the one "kernel", add_scalar(float*
# data, int32 n, float value), dereferences kernelParams as a real launch would.
FAKE_HIP = r"""
#include <stdlib.h>
#include <string.h>
static int devices(void) { const char *n = getenv("FAKE_HIP_DEVICES"); return n ? atoi(n) : 1; }
static int launches;
int hipInit(unsigned flags) { return 0; }
int hipGetDeviceCount(int *count) { *count = devices(); return devices() ? 0 : 100; }
int hipDeviceGet(int *device, int ordinal) { *device = ordinal; return 0; }
int hipSetDevice(int device) { return 0; }
int hipDeviceGetName(char *name, int length, int device) { strncpy(name, "Fake gfx942", length); return 0; }
int hipModuleLoadData(void **module, const void *image) {
    if (memcmp(image, "\x7f" "ELF", 4) != 0) return 200;
    *module = (void *)0x1000; return 0;
}
int hipModuleGetFunction(void **function, void *module, const char *name) {
    if (module != (void *)0x1000 || strcmp(name, "add_scalar") != 0) return 500;
    *function = (void *)0x2000; return 0;
}
int hipModuleLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                          unsigned shared, void *stream, void **params, void **extra) {
    if (f != (void *)0x2000 || extra != 0 || stream != 0) return 1;
    float *data = *(float **)params[0];
    int n = *(int *)params[1];
    float value = *(float *)params[2];
    if ((long)gx * bx < n) return 1;
    for (int i = 0; i < n; i++) data[i] += value;
    launches++;
    return 0;
}
int hipMalloc(void **pointer, size_t size) { *pointer = malloc(size); return *pointer ? 0 : 2; }
int hipFree(void *pointer) { free(pointer); return 0; }
int hipMemcpyHtoD(void *dst, const void *src, size_t n) { memcpy(dst, src, n); return 0; }
int hipMemcpyDtoH(void *dst, const void *src, size_t n) { memcpy(dst, src, n); return 0; }
int hipDeviceSynchronize(void) { return 0; }
/* Events: each records the number of launches so far; 1.5 ms per launch between two of them. */
int hipEventCreate(void **event) { *event = malloc(sizeof(int)); return *event ? 0 : 2; }
int hipEventRecord(void *event, void *stream) { *(int *)event = launches; return stream ? 1 : 0; }
int hipEventElapsedTime(float *ms, void *start, void *end) { *ms = 1.5f * (*(int *)end - *(int *)start); return 0; }
int hipEventDestroy(void *event) { free(event); return 0; }
const char *hipGetErrorString(int status) {
    switch (status) {
    case 100: return "no ROCm-capable device is detected";
    case 200: return "device kernel image is invalid";
    case 500: return "named symbol not found";
    default: return "unspecified launch failure";
    }
}
"""


@pytest.fixture
def fake_rocm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler to build the fake libamdhip64.so")
    (tmp_path / "lib").mkdir()
    source = tmp_path / "fake_hip.c"
    source.write_text(FAKE_HIP)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(tmp_path / "lib" / "libamdhip64.so"), str(source)],
        check=True,
        timeout=60,
    )
    monkeypatch.setenv("ROCM_PATH", str(tmp_path))
    return tmp_path


def test_hip_driver_against_fake_runtime(fake_rocm: Path, rng: np.random.Generator) -> None:
    driver = open_driver("hip")
    assert driver.name == "hip"
    assert driver.device_name() == "Fake gfx942"
    kernel = driver.load_module(b"\x7fELF fake code object").function("add_scalar")
    data = rng.standard_normal(1000).astype(np.float32)
    buffer = driver.alloc(data.nbytes)
    driver.upload(buffer, data)
    assert isinstance(driver, EventTimer)  # what GpuSession's profile times launches with
    start = driver.record_event()
    driver.launch(kernel, (4, 1, 1), (256, 1, 1), 0, [buffer, KernelScalar(data.size, "i32"), KernelScalar(2.5, "f32")])
    end = driver.record_event()
    driver.synchronize()
    assert driver.elapsed_seconds(start, end) == pytest.approx(1.5e-3)
    driver.destroy_event(start)
    driver.destroy_event(end)
    result = np.full_like(data, np.nan)
    driver.download(buffer, result)
    driver.free(buffer)
    np.testing.assert_array_equal(result, data + np.float32(2.5))


def test_hip_driver_errors_name_the_call(fake_rocm: Path) -> None:
    driver = open_driver("hip")
    with pytest.raises(GpuError) as caught:
        driver.load_module(b"not a code object")
    _assert_one_line(caught.value, "hipModuleLoadData", "device kernel image is invalid")
    with pytest.raises(GpuError) as caught:
        driver.load_module(b"\x7fELF").function("missing_kernel")
    _assert_one_line(caught.value, "hipModuleGetFunction('missing_kernel')", "named symbol not found")
    kernel = KernelHandle("add_scalar", 0x2000)
    with pytest.raises(GpuError) as caught:
        driver.launch(kernel, (0, 1, 1), (1, 1, 1), 0, [])
    _assert_one_line(caught.value, "add_scalar", "grid")
    buffer = driver.alloc(8)
    with pytest.raises(GpuError) as caught:
        driver.upload(buffer, np.zeros(4, np.float32))
    _assert_one_line(caught.value, "16 bytes", "8 bytes")
    driver.free(buffer)


def test_hip_without_devices_is_one_line(fake_rocm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_HIP_DEVICES", "0")
    with pytest.raises(GpuRuntimeUnavailable) as caught:
        open_driver("hip")
    _assert_one_line(caught.value, "no AMD GPU is visible", "no ROCm-capable device is detected")


# --- by-value struct arguments and CUDA tensor maps ------------------------------------------------------


@pytest.mark.parametrize("align", [1, 16, 64, 256])
def test_pack_kernel_bytes_is_an_aligned_copy(align: int) -> None:
    tensor_map = bytes(range(128))
    packed = pack_kernel_args([KernelBytes(tensor_map, align), KernelScalar(5, "i32"), KernelBytes(b"\x01\x02", 8)])
    array = ctypes.cast(packed.address, ctypes.POINTER(ctypes.c_void_p))
    assert array[0] % align == 0 and array[2] % 8 == 0
    assert ctypes.string_at(array[0], 128) == tensor_map  # the entry is the bytes' address, not a pointer to it
    assert ctypes.cast(array[1], ctypes.POINTER(ctypes.c_int32))[0] == 5
    assert ctypes.string_at(array[2], 2) == b"\x01\x02"


@pytest.mark.parametrize(("data", "align", "phrase"), [(b"", 64, "non-empty"), (b"x", 48, "power of two")])
def test_bad_kernel_bytes(data: bytes, align: int, phrase: str) -> None:
    with pytest.raises(GpuError) as caught:
        KernelBytes(data, align)
    _assert_one_line(caught.value, phrase)


def _fake_cuda_binding() -> types.SimpleNamespace:
    """The names tensor_map_arguments takes from cuda.bindings.driver; enum members are their names."""

    def enum(*names: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(**{name: name for name in names})

    return types.SimpleNamespace(
        cuuint64_t=lambda value: ("u64", value),
        cuuint32_t=lambda value: ("u32", value),
        CUtensorMapDataType=enum("CU_TENSOR_MAP_DATA_TYPE_BFLOAT16", "CU_TENSOR_MAP_DATA_TYPE_FLOAT16"),
        CUtensorMapInterleave=enum("CU_TENSOR_MAP_INTERLEAVE_NONE"),
        CUtensorMapSwizzle=enum("CU_TENSOR_MAP_SWIZZLE_NONE", "CU_TENSOR_MAP_SWIZZLE_128B"),
        CUtensorMapL2promotion=enum("CU_TENSOR_MAP_L2_PROMOTION_NONE"),
        CUtensorMapFloatOOBfill=enum("CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE"),
    )


def test_tensor_map_arguments_match_the_gemm_abi() -> None:
    """gemm.py's docstring: bf16, rank 2, dims {K, rows}, strides {2K}, box {64, 128}, element strides
    {1, 1}, no interleave, SWIZZLE_128B, no L2 promotion, OOB fill NONE (zeros)."""
    from tessera.runtime.cuda import tensor_map_arguments

    arguments = tensor_map_arguments(
        _fake_cuda_binding(), 0x7F00_0000_0100, rows=200, cols=5120, box_rows=128, box_cols=64
    )
    assert arguments == (
        "CU_TENSOR_MAP_DATA_TYPE_BFLOAT16",
        2,
        0x7F00_0000_0100,
        [("u64", 5120), ("u64", 200)],
        [("u64", 10240)],
        [("u32", 64), ("u32", 128)],
        [("u32", 1), ("u32", 1)],
        "CU_TENSOR_MAP_INTERLEAVE_NONE",
        "CU_TENSOR_MAP_SWIZZLE_128B",
        "CU_TENSOR_MAP_L2_PROMOTION_NONE",
        "CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE",
    )


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"cols": 60}, "a row (120 bytes) must be a multiple of 16 bytes"),
        ({"pointer": 0x1008}, "address 0x1008 must be a multiple of 16"),
        ({"box_cols": 128}, "must fit the 128B swizzle span"),
        ({"box_rows": 512}, "box must be in 1 .. 256"),
        ({"dtype": "f8"}, "dtype must be one of"),
        ({"swizzle": "256B"}, "swizzle must be one of"),
    ],
)
def test_tensor_map_rules(changes: dict[str, object], phrase: str) -> None:
    from tessera.runtime.cuda import tensor_map_arguments

    request: dict[str, object] = {"pointer": 0x1000, "rows": 200, "cols": 64, "box_rows": 128, "box_cols": 64}
    with pytest.raises(GpuError) as caught:
        tensor_map_arguments(_fake_cuda_binding(), **{**request, **changes})  # type: ignore[arg-type]
    _assert_one_line(caught.value, phrase)


# --- benchmarks/h100_gemm.py: build here, and its check against a fake CUDA driver that runs the GEMM's
# contract in numpy (the kernel itself needs an H100: lowering/nvvm/__init__.py lists what stays open) ---

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "h100_gemm.py"
SMALL_SPECS = ["small_200x200x64_bias_scale_f32", "small_100x200x64_relu2", "small_200x200x64_accumulate_bias"]


def _benchmark(script: str) -> types.ModuleType:
    """benchmarks/<script>.py as a module, imported as when it runs as a script (its folder first on the path:
    benchmarks/checkout.py and the scripts it imports)."""
    path = BENCHMARK.parent / f"{script}.py"
    spec = importlib.util.spec_from_file_location(script, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if str(BENCHMARK.parent) not in sys.path:
        sys.path.insert(0, str(BENCHMARK.parent))
    spec.loader.exec_module(module)
    return module


def _built(script: str, out: Path, spec: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """benchmarks/<script>.py build of one spec into `out` (as a process, as it runs here): its spec.json,
    and its one kernel's name and entry; the cubin checked to be an ELF."""
    command = [sys.executable, str(BENCHMARK.parent / f"{script}.py"), "build", "--out", str(out), "--only", spec]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "spec.json").read_text())
    ((name, kernel),) = manifest["kernels"].items()
    assert (out / f"{name}.cubin").read_bytes().startswith(b"\x7fELF")
    return manifest, name, kernel


class _Arguments:
    """A fake launch's packed kernel arguments (kept alive while read): device buffers by index, i32 scalars."""

    def __init__(self, fake: _FakeCuda, args: list[object]) -> None:
        self.fake, self.packed = fake, pack_kernel_args(args)  # type: ignore[arg-type]
        self.array = ctypes.cast(self.packed.address, ctypes.POINTER(ctypes.c_void_p))

    def __len__(self) -> int:
        return len(self.packed)

    def memory(self, index: int) -> np.ndarray:
        return self.fake.memory[int(ctypes.cast(self.array[index], ctypes.POINTER(ctypes.c_uint64))[0])]

    def scalar(self, index: int) -> int:
        return int(ctypes.cast(self.array[index], ctypes.POINTER(ctypes.c_int32))[0])


# The sm_90a GEMM's dynamic shared memory: 4 stages of a 128 x 64 x box and a 256 x 64 W box, 8 mbarriers.
GEMM_SHARED_BYTES = 4 * (128 + 256) * 64 * 2 + 8 * 8


class _FakeCuda:
    """A CudaDriver stand-in: host memory plays device memory, tensor maps carry their pointer and shape,
    and a launch computes y as the kernel's contract says (gemm.py's docstring) over the launched grid."""

    name = "cuda"

    def __init__(self, manifest: dict[str, object], unwritten_row: int | None = None) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.next_pointer = 0x1000
        self.kernels = manifest["kernels"]
        self.unwritten_row = unwritten_row
        self.launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int], int]] = []
        success, not_ready = "CUDA_SUCCESS", "CUDA_ERROR_NOT_READY"
        self.cu = types.SimpleNamespace(
            CUresult=types.SimpleNamespace(CUDA_SUCCESS=success, CUDA_ERROR_NOT_READY=not_ready),
            CUevent_flags=types.SimpleNamespace(CU_EVENT_DISABLE_TIMING=2),
            cuEventCreate=lambda flags: (success, object()),
            cuEventRecord=lambda event, stream: (success,),
            cuEventQuery=lambda event: (success,),
            cuEventDestroy=lambda event: (success,),
            cuEventElapsedTime=lambda start, end: (success, 0.5),
        )

    def call(self, call: str, result: tuple[object, ...]) -> object:
        assert result[0] == "CUDA_SUCCESS", call
        return None if len(result) == 1 else result[1]

    def device_name(self) -> str:
        return "fake H100"

    def _launched(self, kernel: KernelHandle, grid: tuple[int, int, int], block: tuple[int, int, int],
                  shared_bytes: int, args: list[object]) -> tuple[dict[str, Any], _Arguments]:  # fmt: skip
        """Record a launch: its kernel's spec.json entry and its arguments."""
        self.launches.append((kernel.name, grid, block, shared_bytes))
        return self.kernels[kernel.name], _Arguments(self, args)  # type: ignore[index]

    def load_module(self, image: bytes) -> types.SimpleNamespace:
        assert image.startswith(b"\x7fELF")
        return types.SimpleNamespace(function=lambda name: KernelHandle(name, name))

    def alloc(self, nbytes: int) -> DeviceBuffer:
        pointer, self.next_pointer = self.next_pointer, self.next_pointer + (nbytes + 255) // 256 * 256
        self.memory[pointer] = np.zeros(nbytes, dtype=np.uint8)
        return DeviceBuffer(pointer, nbytes)

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        self.memory[buffer.pointer][: host.nbytes] = np.ascontiguousarray(host).view(np.uint8).ravel()

    def download(self, buffer: DeviceBuffer, out: np.ndarray) -> None:
        out.view(np.uint8).ravel()[:] = self.memory[buffer.pointer][: out.nbytes]

    def free(self, buffer: DeviceBuffer) -> None:
        del self.memory[buffer.pointer]

    def encode_tensor_map_2d(self, pointer: int, **request: object) -> KernelBytes:
        from tessera.runtime.cuda import tensor_map_arguments

        arguments = tensor_map_arguments(_fake_cuda_binding(), pointer, **request)  # type: ignore[arg-type]
        box = [("u32", request["box_cols"]), ("u32", request["box_rows"])]
        assert arguments[5] == box and arguments[8] == "CU_TENSOR_MAP_SWIZZLE_128B"
        fields = (pointer, int(request["rows"]), int(request["cols"]))  # type: ignore[call-overload]
        return KernelBytes(np.array(fields, dtype=np.uint64).tobytes().ljust(128, b"\0"), 64)

    def launch(
        self,
        kernel: KernelHandle,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        shared_bytes: int,
        args: list[object],
    ) -> None:
        packed = pack_kernel_args(args)  # type: ignore[arg-type]
        array = ctypes.cast(packed.address, ctypes.POINTER(ctypes.c_void_p))
        info = self.kernels[kernel.name]  # type: ignore[index]
        self.launches.append((kernel.name, grid, block, shared_bytes))

        def tensor_map(index: int) -> np.ndarray:
            assert array[index] % 64 == 0
            pointer, rows, cols = np.frombuffer(ctypes.string_at(array[index], 24), dtype=np.uint64)
            return self.memory[int(pointer)][: int(rows) * int(cols) * 2].view(np.uint16).reshape(rows, cols)

        def pointer(index: int) -> int:
            return int(ctypes.cast(array[index], ctypes.POINTER(ctypes.c_uint64))[0])

        def scalar(index: int) -> int:
            return int(ctypes.cast(array[index], ctypes.POINTER(ctypes.c_int32))[0])

        def widen(bits: np.ndarray) -> np.ndarray:
            return (bits.astype(np.uint32) << 16).view(np.float32)

        x, w = widen(tensor_map(0)), widen(tensor_map(1))
        index = 2
        tokens, n = x.shape[0], w.shape[0]
        value = x.astype(np.float64) @ w.astype(np.float64).T
        if info["bias"]:
            bias_at, index = pointer(index), index + 1
        if info["row_scale"]:
            value *= self.memory[pointer(index)].view(np.float32)[:tokens, None]
            index += 1
        if info["bias"]:
            value += self.memory[bias_at].view(np.float32)[None, :n]
        y_memory = self.memory[pointer(index)]
        assert scalar(index + 1) == tokens and scalar(index + 2) == 0 and len(packed) == index + 3
        tiles = info["tiles"]
        assert grid == (-(-n // tiles["block_n"]), -(-tokens // tiles["block_m"]), 1) and block == (384, 1, 1)
        assert shared_bytes == info["shared_bytes"] == GEMM_SHARED_BYTES
        bf16 = info["y_dtype"] == "bf16"
        y = widen(y_memory.view(np.uint16)) if bf16 else y_memory.view(np.float32)
        y = y.reshape(tokens, n).astype(np.float64)
        if info["epilogue"] == "relu2":
            value = np.maximum(value, 0) ** 2
        elif info["epilogue"] == "accumulate":
            value += y
        rows = [row for row in range(tokens) if row != self.unwritten_row]
        out = value.astype(np.float32)
        if bf16:
            bits = out.view(np.uint32)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            y_memory.view(np.uint16).reshape(tokens, n)[rows] = rounded[rows]
        else:
            y_memory.view(np.float32).reshape(tokens, n)[rows] = out[rows]


@NEEDS_MLIR
@pytest.mark.parametrize("sampled", [False, True], ids=["all-rows", "sampled-rows"])
def test_h100_gemm_build_and_check_against_a_fake_driver(
    sampled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tessera.lowering.nvvm.pipeline import find_ptxas

    if find_ptxas() is None:
        pytest.skip("ptxas is not installed: CUDA 12.3+ assembles the sm_90a cubins")
    benchmark = _benchmark("h100_gemm")
    out = tmp_path / "h100_gemm"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "build", "--out", str(out), "--only", *SMALL_SPECS, "store_200x5120x5120"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "spec.json").read_text())
    assert sorted(manifest["specs"]) == sorted([*SMALL_SPECS, "store_200x5120x5120"])
    for name, kernel in manifest["kernels"].items():
        assert (out / f"{name}.cubin").read_bytes().startswith(b"\x7fELF")
        assert "wgmma.mma_async" in (out / f"{name}.ptx").read_text()
        assert kernel["threads"] == 384 and kernel["shared_bytes"] == GEMM_SHARED_BYTES
        assert kernel["ptxas"]["spill_bytes"] == 0
        assert [(entry["box_rows"], entry["box_cols"]) for entry in kernel["tensor_maps"]] == [(128, 64), (256, 64)]

    # check, with the big spec left out (float64 on 200x5120x5120 is slow for a unit test)
    del manifest["specs"]["store_200x5120x5120"]
    (out / "spec.json").write_text(json.dumps(manifest))
    fake = _FakeCuda(manifest)
    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: fake)
    monkeypatch.setattr(benchmark, "_torch", lambda: None)
    if sampled:  # the reference the big specs take: float64 on the first, last and sampled rows
        monkeypatch.setattr(benchmark, "FULL_REFERENCE_FLOPS", 0)
    assert benchmark.check(out, seed=1) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ok"] and sorted(summary["specs"]) == sorted(SMALL_SPECS)
    assert all(0 < spec["rel_error"] <= spec["tolerance"] for spec in summary["specs"].values())
    assert all(spec["ms"] == 0.5 for spec in summary["specs"].values())
    assert {launch[0] for launch in fake.launches} == set(manifest["kernels"]) - {"gemm_sm90_n5120_k5120_store_bf16"}

    # a row the kernel never writes fails the check (sampled: row 0, always among the rows checked)
    unwritten = 0 if sampled else 99
    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: _FakeCuda(manifest, unwritten))
    assert benchmark.check(out, seed=1) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not summary["ok"] and not any(spec["ok"] for spec in summary["specs"].values())
    assert summary["specs"]["small_200x200x64_bias_scale_f32"]["rel_error"] == "inf"  # the NaN prefill


def test_h100_gemm_check_without_artifacts_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "check", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout.strip().count("\n") == 0 and "h100_gemm.py build" in result.stdout


# --- benchmarks/h100_attention.py: build here, and its check against a fake CUDA driver that computes the
# kernel's contract in numpy (test/kernels/test_nvvm_attention.py runs the kernel itself in the simulator) ---

ATTENTION_BENCHMARK = BENCHMARK.parent / "h100_attention.py"
SMALL_ATTENTION = "small_t200_h4_kv2_d64"


class _FakeAttentionCuda(_FakeCuda):
    """A launch computes out as the bf16-operand attention contract says (kernels/attention.py): causal GQA
    from position 0, the scaled queries and the probabilities rounded to bf16; `unwritten_row` left NaN."""

    def launch(self, kernel: KernelHandle, grid: tuple[int, int, int], block: tuple[int, int, int],
               shared_bytes: int, args: list[object]) -> None:  # fmt: skip
        info, packed = self._launched(kernel, grid, block, shared_bytes, args)
        memory, scalar = packed.memory, packed.scalar

        def widen(bits: np.ndarray) -> np.ndarray:
            return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)

        def bf16(values: np.ndarray) -> np.ndarray:
            bits = values.astype(np.float32).view(np.uint32)
            return widen(((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16))

        heads, kv_heads, dim = info["heads"], info["kv_heads"], info["head_dim"]
        tokens, position = scalar(4), scalar(5)
        assert position == 0 and len(packed) == 6 and block == (256, 1, 1)
        assert grid == (heads, -(-tokens // 128), 1) and shared_bytes == info["shared_bytes"] > 0
        qkv = memory(0).view(np.float32)[: tokens * (heads + 2 * kv_heads) * dim].reshape(tokens, -1)
        keys, values = (widen(memory(i).view(np.uint16).reshape(-1, kv_heads, dim)[:tokens]) for i in (1, 2))
        q = bf16(qkv[:, : heads * dim] * np.float32(dim**-0.5)).reshape(tokens, heads, dim)
        k, v = (np.repeat(cache, heads // kv_heads, axis=1) for cache in (keys, values))
        scores = np.einsum("thd,shd->hts", q, k)
        scores = np.where(np.tril(np.ones((tokens, tokens), bool))[None], scores, -np.inf)
        p = np.exp(scores - scores.max(axis=2, keepdims=True))
        out = np.einsum("hts,shd->thd", bf16(p), v) / p.sum(axis=2)[..., None].transpose(1, 0, 2)
        rows = [row for row in range(tokens) if row != self.unwritten_row]
        result = out.reshape(tokens, heads * dim).astype(np.float32).view(np.uint32)
        rounded = ((result + 0x7FFF + ((result >> 16) & 1)) >> 16).astype(np.uint16)
        memory(3).view(np.uint16).reshape(tokens, heads * dim)[rows] = rounded[rows]


@NEEDS_MLIR
def test_h100_attention_build_and_check_against_a_fake_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tessera.lowering.nvvm.pipeline import find_ptxas

    if find_ptxas() is None:
        pytest.skip("ptxas is not installed: CUDA 12.3+ assembles the sm_90a cubins")
    benchmark = _benchmark("h100_attention")
    out = tmp_path / "h100_attention"
    manifest, name, kernel = _built("h100_attention", out, SMALL_ATTENTION)
    assert "wgmma.mma_async" in (out / f"{name}.ptx").read_text()
    assert kernel["threads"] == 256 and kernel["ptxas"]["spill_bytes"] == 0 and kernel["shared_bytes"] == 6 * 8192

    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: _FakeAttentionCuda(manifest))
    monkeypatch.setattr(benchmark, "_torch", lambda: None)
    assert benchmark.check(out, seed=1) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    spec = summary["specs"][SMALL_ATTENTION]
    assert summary["ok"] and 0 < spec["rel_error"] <= spec["tolerance"] and spec["ms"] == 0.5

    # the last query row never written (it is always among the rows checked) fails the check
    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: _FakeAttentionCuda(manifest, 199))
    assert benchmark.check(out, seed=1) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not summary["ok"] and summary["specs"][SMALL_ATTENTION]["rel_error"] == "inf"


def test_h100_attention_check_without_artifacts_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ATTENTION_BENCHMARK), "check", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.strip().count("\n") == 0 and "h100_attention.py build" in result.stdout


# --- benchmarks/h100_ssd.py: build here, and its check against a fake CUDA driver that computes the scan's
# contract in numpy (test/kernels/test_nvvm_ssd.py runs the kernel itself in the simulator) ---

SMALL_SSD = "small_t300_h4_p20_g2_n40"


class _FakeSsdCuda(_FakeCuda):
    """A launch computes y and the final state as ssd_scan's contract says (kernels/ssd_blocks.py: the
    chunked SSD from the state it is given, dt clamped, + D x), in float64; head `unwritten_row` of y left
    NaN."""

    def launch(self, kernel: KernelHandle, grid: tuple[int, int, int], block: tuple[int, int, int],
               shared_bytes: int, args: list[object]) -> None:  # fmt: skip
        from tessera.reference.common import softplus
        from tessera.reference.mamba2 import ssd_chunked

        info, packed = self._launched(kernel, grid, block, shared_bytes, args)

        def memory(index: int) -> np.ndarray:
            return packed.memory(index).view(np.float32)

        tokens = packed.scalar(7)
        heads, dim, groups, n, chunk = (info[key] for key in ("heads", "head_dim", "groups", "state", "chunk"))
        assert len(packed) == 9 and block == (128, 1, 1) and shared_bytes == info["shared_bytes"] > 0
        assert grid == (heads * -(-dim // info["tiles"]["block_p"]), 1, 1)
        inner, g_n = heads * dim, groups * n
        xbc = memory(1)[: tokens * (inner + 2 * g_n)].reshape(tokens, -1).astype(np.float64)
        dt_raw = memory(0)[: tokens * (2 * inner + 2 * g_n + heads)].reshape(tokens, -1)[:, inner + inner + 2 * g_n :]
        dt_bias, a_log, d = (memory(i)[:heads].astype(np.float64) for i in (2, 3, 4))
        state = memory(5)[: heads * dim * n].reshape(heads, dim, n)
        x = xbc[:, :inner].reshape(tokens, heads, dim)
        b, c = (np.repeat(xbc[:, at : at + g_n].reshape(tokens, groups, n), heads // groups, axis=1)
                for at in (inner, inner + g_n))  # fmt: skip
        dt = np.maximum(softplus(dt_raw + dt_bias), 1e-3)
        y, final = ssd_chunked(x, dt, -np.exp(a_log), b, c, state.astype(np.float64), chunk)
        y = y + x * d[:, None]
        if self.unwritten_row is not None:
            y[:, self.unwritten_row] = np.nan
        memory(6)[: tokens * inner].reshape(tokens, heads, dim)[:] = y
        state[:] = final


@NEEDS_MLIR
def test_h100_ssd_build_and_check_against_a_fake_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tessera.lowering.nvvm.pipeline import find_ptxas

    if find_ptxas() is None:
        pytest.skip("ptxas is not installed: CUDA 12.3+ assembles the sm_90a cubins")
    benchmark = _benchmark("h100_ssd")
    out = tmp_path / "h100_ssd"
    manifest, name, kernel = _built("h100_ssd", out, SMALL_SSD)
    assert "wgmma.mma_async" in (out / f"{name}.ptx").read_text() and not (out / "mamba_ssm_src").exists()
    assert kernel["threads"] == 128 and kernel["ptxas"]["spill_bytes"] == 0 and kernel["tiles"]["block_p"] == 24

    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: _FakeSsdCuda(manifest))
    monkeypatch.setattr(benchmark, "_torch", lambda: None)
    assert benchmark.check(out, seed=1) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    spec = summary["specs"][SMALL_SSD]
    assert summary["ok"] and spec["rel_error"] <= 1e-6 and spec["ms"] == 0.5  # the fake computes the reference

    # the last head's y never written (the first and last heads are always checked) fails the check
    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: _FakeSsdCuda(manifest, 3))
    assert benchmark.check(out, seed=1) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not summary["ok"] and not summary["specs"][SMALL_SSD]["all_finite"]


# --- benchmarks/h100_rows.py: build here, and its check with each kernel run by the lockstep simulator behind
# a CudaDriver's face ---


class _SimulatedCuda:
    """CudaDriver as check_specs uses it, over test/kernels/sim_driver.py: a cubin stands for the kernel
    spec.json records with its digest, emitted again from its kind and dims and run by the simulator."""

    name = "cuda"

    def __init__(self, manifest: dict[str, Any]) -> None:
        sys.path.insert(0, str(Path(__file__).parent / "kernels"))
        from sim_driver import SimulatedDriver

        self.simulated = SimulatedDriver(wave_size=32)
        self.kernels = manifest["kernels"]
        self.cu = _FakeCuda(manifest).cu
        self.call = _FakeCuda.call.__get__(self)

    def __getattr__(self, name: str) -> Any:  # alloc, upload, download, free, launch
        return getattr(self.simulated, name)

    def device_name(self) -> str:
        return "simulated H100"

    def load_module(self, image: bytes) -> Any:
        import hashlib

        from sim_driver import SimulatedModule
        from tile_kernels import tile_kernel

        from tessera.lowering.convert_tile_to_nvvm import emit_kernel

        digest = hashlib.sha256(image).hexdigest()
        name, kernel = next((name, k) for name, k in self.kernels.items() if k["cubin_sha256"] == digest)
        tiled = tile_kernel(kernel["kind"], kernel["dims"], "sm_90a", "bf16", name=name)
        return SimulatedModule(emit_kernel(tiled).text, 32)


@NEEDS_MLIR
def test_h100_gemm_decode_gemv_builds_and_checks_on_the_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A decode GEMV spec of the GEMM benchmark (one token: no tensor maps, a wave per few columns of W), at a
    small shape with every tail (N 70, K 300, a bias, accumulate), built through ptxas and checked by
    h100_gemm's own check with the kernel run by the simulator."""
    from tessera.lowering.nvvm.pipeline import find_ptxas

    if find_ptxas() is None:
        pytest.skip("ptxas is not installed: CUDA 12.3+ assembles the sm_90a cubins")
    benchmark = _benchmark("h100_gemm")
    monkeypatch.setattr(benchmark, "SPECS", {"decode_small": (1, 70, 300, "accumulate", "f32", True, False)})
    manifest = benchmark.build(tmp_path)
    (kernel,) = manifest["kernels"].values()
    assert kernel["tensor_maps"] == [] and kernel["shared_bytes"] == 0 and kernel["threads"] == 32
    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: _SimulatedCuda(manifest))
    monkeypatch.setattr(benchmark, "_torch", lambda: None)
    assert benchmark.check(tmp_path, seed=1) == 0
    spec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["specs"]["decode_small"]
    assert spec["ok"] and spec["rel_error"] <= spec["tolerance"] and spec["weight_tb_s"] > 0


@NEEDS_MLIR
def test_h100_rows_build_and_check_on_the_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every row kernel of the benchmark, at small shapes that keep its vector runs (rows of 256 features,
    groups and heads of 128), built through ptxas and checked by h100_rows' own check — its buffers, grid,
    numerics and byte counts — with the kernels run by the simulator."""
    from tessera.lowering.nvvm.pipeline import find_ptxas

    if find_ptxas() is None:
        pytest.skip("ptxas is not installed: CUDA 12.3+ assembles the sm_90a cubins")
    benchmark = _benchmark("h100_rows")
    mixer = {"num_heads": 4, "head_dim": 64, "n_groups": 2, "state_size": 16}
    small = {
        "rmsnorm": ("rmsnorm", {"hidden": 256, "epsilon": 1e-5, "out_dtype": "bf16"}),
        "rms_scale": ("rms_scale", {"hidden": 256, "epsilon": 1e-5}),
        "gated_rmsnorm": ("gated_rmsnorm", {**mixer, "epsilon": 1e-5, "out_dtype": "bf16"}),
        "embedding": ("embedding", {"hidden": 256, "vocab": 50}),
        "kv_append": (
            "kv_append",
            {"num_heads": 4, "num_kv_heads": 2, "head_dim": 128, "max_seq_len": 70, "cache_dtype": "bf16"},
        ),
        "conv_silu": ("conv_silu", {**mixer, "conv_kernel": 4, "channels": 256 + 2 * 2 * 16, "conv_bias": 1}),
    }
    monkeypatch.setattr(benchmark, "SPECS", small)
    monkeypatch.setattr(benchmark, "TOKENS", 70)  # conv: a block of 64 tokens and one of 6
    manifest = benchmark.build(tmp_path)
    monkeypatch.setattr("tessera.runtime.cuda.CudaDriver", lambda device: _SimulatedCuda(manifest))
    monkeypatch.setattr(benchmark, "_torch", lambda: None)
    assert benchmark.check(tmp_path, seed=1) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ok"] and set(summary["specs"]) == set(small)
    assert summary["specs"]["rmsnorm"]["bytes"] == 70 * 256 * (4 + 2) + 256 * 4
    assert summary["specs"]["kv_append"]["rel_error"] == 0


def test_hopper_tabulates_each_kernel_against_its_baseline() -> None:
    hopper = _benchmark("hopper")
    summaries = {
        "attention": {"specs": {"nano12b_8k": {"ms": 2.0, "sdpa_ms": 1.0}}},
        "ssd": {"specs": {"nano12b_8k": {"ms": 0.5, "mamba_ssm_ms": 1.0}, "small": {"ms": 0.1}}},
        "gemm": {"specs": {"big": {"ok": False, "error": "hang"}}},
        "slice": {"specs": {"prefill 8000": {"ms": 20.0, "transformers_ms": 36.0}}},
    }
    rows = hopper.table(summaries).splitlines()
    assert rows[0].startswith("| kernel | Tessera ms | baseline")
    assert "| gemm big | failed: hang | cuBLAS | | |" in rows
    assert "| attention nano12b_8k | 2.000 | SDPA | 1.000 | 0.50x |" in rows
    assert "| ssd nano12b_8k | 0.500 | mamba_ssm | 1.000 | 2.00x |" in rows
    assert "| ssd small | 0.100 | mamba_ssm |  | not measured |" in rows
    assert "| slice prefill 8000 | 20.000 | transformers | 36.000 | 1.80x |" in rows


def test_hopper_check_without_artifacts_fails_with_json_last(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK.parent / "hopper.py"), "check", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert not summary["ok"] and "is missing" in summary["hopper"]["contract"]["error"]
    assert all(not summary["hopper"][part]["ok"] for part in ("gemm", "attention", "ssd", "rows", "slice", "math"))


def test_hopper_stops_a_part_past_its_time(tmp_path: Path) -> None:
    """A part that outlives its seconds is stopped, and one with none left is not started: the check's JSON
    line still comes before the device command's limit."""
    hopper = _benchmark("hopper")
    assert hopper.run_part("contract", tmp_path, 0.01) == {"ok": False, "error": "stopped after 0 s"}
    assert "not run" in hopper.run_part("contract", tmp_path, 0)["error"]


def test_h100_slice_loads_the_drawn_weights_into_transformers(tmp_path: Path) -> None:
    """h100_slice's transformers side, on the CPU with the tiny config made dense, as the slice is (transformers
    5 holds MoE experts fused in its modules, under other names than a checkpoint's): the weights Tessera
    draws from the seed, mapped to HF's names and shapes (weights_layout.hf_tensors), give in transformers the
    logits the reference executor gives on them."""
    pytest.importorskip("transformers")
    from tessera.dialects import parse_module
    from tessera.frontend.config import load_model
    from tessera.frontend.graph_builder import build_graph
    from tessera.model.config import hf_config_dict
    from tessera.model.weight_init import random_weights
    from tessera.reference.executor import ReferenceExecutor
    from tessera.runtime.weights import bf16_bits, bf16_to_f32

    slice_benchmark = _benchmark("h100_slice")
    tiny = load_model(str(BENCHMARK.parent.parent / "configs" / "nemotron_h_tiny.yaml")).config
    config = replace(tiny, hybrid_override_pattern="M*-M")
    (tmp_path / "hf_config.json").write_text(json.dumps(hf_config_dict(config)))
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7]
    np.save(tmp_path / "prompt.npy", np.array(ids, np.int64))
    (tmp_path / "site").mkdir()  # the installed transformers here stands for the carried wheels
    measured = slice_benchmark._transformers(tmp_path, device="cpu")
    assert measured.get("transformers_ms", 0) > 0 and measured["reference"] == "transformers float32", measured
    module = parse_module(str(build_graph(config)), "tiny.mlir")
    rounded = {
        name: bf16_to_f32(bf16_bits(value)) for name, value in random_weights(config, slice_benchmark.SEED).items()
    }
    expected = ReferenceExecutor(module, rounded).prefill(ids)[-1]  # float32 on the bf16 model's weights
    assert slice_benchmark.relative_error(np.load(tmp_path / "hf_logits.npy"), expected) <= 1e-4


@NEEDS_MLIR
def test_h100_slice_runs_end_to_end_with_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """h100_slice's whole run — its build, transformers (on the CPU) and Tessera's bf16 nvvm artifact through
    GpuSession, a last-only prefill on the simulated H100 — on the tiny model's `M*-` layers and 20 tokens:
    the logits within the slice's bound of transformers' float32 ones, both sides timed, the profile printed."""
    pytest.importorskip("transformers")
    import functools

    sys.path.insert(0, str(Path(__file__).parent / "kernels"))
    from sim_driver import SimulatedDriver, SimulatedModule

    slice_benchmark = _benchmark("h100_slice")
    monkeypatch.setattr(slice_benchmark, "BASE", BENCHMARK.parent.parent / "configs" / "nemotron_h_tiny.yaml")
    monkeypatch.setattr(slice_benchmark, "SLICE", {"hybrid_override_pattern": "M*-", "num_hidden_layers": 3})
    monkeypatch.setattr(slice_benchmark, "VOCAB", 301)
    monkeypatch.setattr(slice_benchmark, "TOKENS", 20)  # a chunk of 16 and 4 more
    monkeypatch.setattr(slice_benchmark, "MAX_SEQ_LEN", 32)
    monkeypatch.setattr(slice_benchmark, "REPEATS", 1)
    monkeypatch.setattr(slice_benchmark, "download_transformers", lambda wheels: wheels.mkdir())
    cpu = functools.partial(slice_benchmark._transformers, device="cpu")
    monkeypatch.setattr(slice_benchmark, "_transformers", cpu)
    monkeypatch.setattr(slice_benchmark, "trim_for_carrying", lambda *_: None)  # the simulator reads the MLIR
    slice_benchmark.build(tmp_path)
    (tmp_path / "site").mkdir()  # the installed transformers here stands for the carried wheels

    class Simulated(SimulatedDriver):
        def load_module(self, image: bytes) -> SimulatedModule:  # the artifact's kernels, as MLIR text
            return SimulatedModule((tmp_path / "artifact" / "nvvm" / "kernels.mlir").read_text(), 32)

    monkeypatch.setattr("tessera.runtime.gpu_module.open_driver", lambda name, device=0: Simulated(wave_size=32))
    summary = slice_benchmark.run(tmp_path)
    (result,) = summary["specs"].values()
    assert summary["ok"], result
    assert result["reference"] == "transformers float32" and result["relative_error"] <= slice_benchmark.BOUND
    assert result["ms"] > 0 and result["transformers_ms"] > 0


@NEEDS_MLIR
def test_h100_model_runs_end_to_end_with_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """h100_model's whole run on the tiny model (every layer kind, MoE included): its build, transformers'
    prefill and decode timings (on the CPU), Tessera opening the seeded artifact with its weights drawn by the
    draw kernels on the simulated H100, decoding after a short prompt and after the prefill, the streaming
    limit from the program's bytes; and the artifact trimmed for carrying still opens."""
    pytest.importorskip("transformers")
    import functools

    sys.path.insert(0, str(Path(__file__).parent / "kernels"))
    from sim_driver import SimulatedDriver, SimulatedModule

    model_benchmark = _benchmark("h100_model")
    monkeypatch.setattr(model_benchmark, "CONFIG", BENCHMARK.parent.parent / "configs" / "nemotron_h_tiny.yaml")
    monkeypatch.setattr(model_benchmark, "PREFILL_TOKENS", 20)  # a chunk of 16 and 4 more
    monkeypatch.setattr(model_benchmark, "SHORT_PROMPT", 3)
    monkeypatch.setattr(model_benchmark, "DECODE_TOKENS", 2)
    monkeypatch.setattr(model_benchmark, "MAX_SEQ_LEN", 23)
    monkeypatch.setattr(model_benchmark, "REPEATS", 1)
    monkeypatch.setattr(model_benchmark, "download_transformers", lambda wheels: wheels.mkdir())
    monkeypatch.setattr(
        model_benchmark, "_transformers", functools.partial(model_benchmark._transformers, device="cpu")
    )
    monkeypatch.setattr(model_benchmark, "copy_bandwidth", lambda: 4.0e12)
    kernels = {}

    def trim(artifact: Path, target: str) -> None:  # the simulator runs the MLIR the trimmed copy leaves out
        kernels["text"] = (artifact / target / "kernels.mlir").read_text()
        model_benchmark_trim(artifact, target)

    model_benchmark_trim = model_benchmark.trim_for_carrying
    monkeypatch.setattr(model_benchmark, "trim_for_carrying", trim)
    model_benchmark.build(tmp_path)
    code_object = json.loads((tmp_path / "artifact" / "tessera.json").read_text())["targets"]["nvvm"]["code_object"]
    carried = {path.name for path in (tmp_path / "artifact" / "nvvm").iterdir()}
    assert carried == {"program.json", Path(code_object).name}  # a cubin where ptxas is installed, else the PTX
    (tmp_path / "site").mkdir()  # the installed transformers here stands for the carried wheels

    class Simulated(SimulatedDriver):
        def load_module(self, image: bytes) -> SimulatedModule:
            return SimulatedModule(kernels["text"], 32)

    monkeypatch.setattr("tessera.runtime.gpu_module.open_driver", lambda name, device=0: Simulated(wave_size=32))
    summary = model_benchmark.run(tmp_path)
    assert summary["ok"], summary
    assert summary["load_s"] > 0 and "error" not in summary, summary
    decode = summary["specs"]["nemotron_h_tiny decode at 20"]  # specs named by the model
    assert decode["ms"] > 0 and decode["transformers_ms"] > 0 and decode["streaming_limit_ms"] > 0
    assert summary["specs"]["nemotron_h_tiny prefill 20"]["transformers_ms"] > 0


def test_step_bytes_counts_weights_state_and_the_kv_cache_read() -> None:
    model_benchmark = _benchmark("h100_model")
    weights: dict[str, Any] = {
        "embedding.weight": {"shape": [100, 8]},
        "w": {"shape": [16, 8], "packing": {"dtype": "bf16"}},
    }
    program = {
        "weights": weights,
        "states": {"s": {"shape": [4, 3], "dtype": "f32", "kind": "ssm_state"},
                   "k": {"shape": [64, 2, 8], "dtype": "bf16", "kind": "k_cache"}},
    }  # fmt: skip
    # One embedding row (f32), the bf16 weight, the state read and written, 10 positions of the cache.
    assert model_benchmark.step_bytes(program, 10) == 8 * 4 + 16 * 8 * 2 + 2 * 12 * 4 + 10 * 2 * 8 * 2
    # A MoE: of the routed experts' stack, the share a token selects (2 of 8).
    weights["layers.0.moe.experts.up_proj"] = {"shape": [8, 4, 8], "packing": {"dtype": "bf16"}}
    assert (
        model_benchmark.step_bytes(program, 10, 2 / 8)
        == 8 * 4 + 16 * 8 * 2 + 2 * 12 * 4 + 10 * 2 * 8 * 2 + 2 * 4 * 8 * 2
    )


def test_launch_flops_counts_gemms_and_causal_attention() -> None:
    from tessera.runtime.profile import launch_flops

    weights = {"w": {"shape": [200, 64]}}
    states = {"k": {"shape": [48, 2, 16]}, "v": {"shape": [48, 2, 16]}}
    matmul = {"kind": "matmul", "args": [{"buffer": 0}, {"weight": "w"}, {"buffer": 1}]}
    attention = {"kind": "attention",
                 "args": [{"buffer": 0}, {"state": "k"}, {"state": "v"}, {"buffer": 1, "features": 4 * 16}]}  # fmt: skip
    assert launch_flops(matmul, weights, states, 5, 9) == 2 * 5 * 200 * 64
    # 3 queries from position 4 see 5, 6 and 7 keys: QKᵀ and P·V, 2 FLOPs a multiply-add, 4 heads of 16.
    assert launch_flops(attention, weights, states, 3, 4) == 4 * 4 * 16 * (5 + 6 + 7)
    assert launch_flops({"kind": "rmsnorm", "args": []}, weights, states, 3, 4) == 0


def test_row_tail_is_what_follows_the_last_token_mixing_launch() -> None:
    """A last-only prefill runs the row tail on one row: for a model ending in an MLP layer, that layer's norm
    and GEMMs as well as the final norm and lm_head — never a launch that reads a state or the ids."""
    from tessera.runtime.gpu_session import row_tail

    def launch(kind: str, *args: dict[str, object]) -> dict[str, object]:
        return {"kind": kind, "args": [{"buffer": 0, "features": 8, "dtype": "f32"}, *args]}

    mamba = [launch("matmul", {"weight": "in"}), launch("conv_silu", {"state": "conv"}),
             launch("ssd_scan", {"state": "ssm"}), launch("gated_rmsnorm"), launch("matmul", {"weight": "out"})]  # fmt: skip
    mlp = [launch("rmsnorm"), launch("matmul", {"weight": "up"}), launch("matmul", {"weight": "down"})]
    head = [launch("rmsnorm"), launch("matmul", {"weight": "lm_head"})]
    assert row_tail([launch("embedding", {"ids": True}), *mamba, *mlp, *head]) == 4
    assert row_tail([*mamba, *head]) == 3  # the mixer's gated norm and out_proj follow its scan
    assert row_tail([launch("rmsnorm", {"state": "s"}), *head]) == 1
    assert row_tail([launch("moe_combine"), *head]) == 1
    assert row_tail(head) == 0


def test_cuda_events_time_launches_in_seconds() -> None:
    """CudaDriver's event timers (gpu_module.EventTimer) through a stand-in binding: an event is created and
    recorded on the null stream, elapsed time comes back in milliseconds and is returned in seconds."""
    from tessera.runtime.cuda import CudaDriver

    calls: list[str] = []
    success = "CUDA_SUCCESS"

    def called(what: str, *result: object) -> tuple[object, ...]:
        calls.append(what)
        return (success, *result)

    driver = object.__new__(CudaDriver)
    driver.cu = types.SimpleNamespace(
        CUresult=types.SimpleNamespace(CUDA_SUCCESS=success),
        cuEventCreate=lambda flags: called(f"create {flags}", len(calls) + 1),
        cuEventRecord=lambda event, stream: called(f"record {event} on {stream}"),
        cuEventElapsedTime=lambda start, end: (success, 2.5 * (end - start)),
        cuEventDestroy=lambda event: called(f"destroy {event}"),
    )
    assert isinstance(driver, EventTimer)
    start, end = driver.record_event(), driver.record_event()
    assert driver.elapsed_seconds(start, end) == pytest.approx(2.5 * (end - start) / 1e3)
    driver.destroy_event(start)
    assert calls == ["create 0", "record 1 on 0", "create 0", "record 3 on 0", "destroy 1"]
