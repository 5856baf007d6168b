"""The GPU module loaders without a GPU: absent runtimes fail as one line, arguments pack as the launch
calls expect, and the HIP driver's ctypes wiring runs end to end against a small fake libamdhip64.so
(compiled here when a C compiler exists) whose "kernel" reads its arguments exactly as HIP would."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tessera.errors import TesseraError
from tessera.runtime.gpu_module import (
    DeviceBuffer,
    GpuError,
    GpuRuntimeUnavailable,
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
    return 0;
}
int hipMalloc(void **pointer, size_t size) { *pointer = malloc(size); return *pointer ? 0 : 2; }
int hipFree(void *pointer) { free(pointer); return 0; }
int hipMemcpyHtoD(void *dst, const void *src, size_t n) { memcpy(dst, src, n); return 0; }
int hipMemcpyDtoH(void *dst, const void *src, size_t n) { memcpy(dst, src, n); return 0; }
int hipDeviceSynchronize(void) { return 0; }
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


def test_hip_driver_against_fake_runtime(fake_rocm: Path) -> None:
    driver = open_driver("hip")
    assert driver.name == "hip"
    assert driver.device_name() == "Fake gfx942"
    kernel = driver.load_module(b"\x7fELF fake code object").function("add_scalar")
    data = np.random.default_rng().standard_normal(1000).astype(np.float32)
    buffer = driver.alloc(data.nbytes)
    driver.upload(buffer, data)
    driver.launch(kernel, (4, 1, 1), (256, 1, 1), 0, [buffer, KernelScalar(data.size, "i32"), KernelScalar(2.5, "f32")])
    driver.synchronize()
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
