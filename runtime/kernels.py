"""Loading an artifact's x86 kernels: JIT for the exact host CPU when llvmlite is present, else the
ahead-of-time library of the ISA level this CPU has; the GEMMs' matrix variant from its own library where
chosen.

JIT: the artifact's LLVM IR (kernels.ll) is compiled by llvmlite's MCJIT for the CPU name and features
detected at load; the machine code is cached on disk ($TESSERA_CACHE_DIR/jit, keyed by a hash of the IR
and the CPU; each entry sealed with the SHA-256 of the object, so a corrupt one is rebuilt, never handed to
the JIT linker), so only the first load on a machine pays for code generation. Without llvmlite (or with
TESSERA_KERNELS=aot) the library of the level runtime/cpu_features.py chooses is loaded with ctypes:
kernels.avx512.so or the x86-64 baseline kernels.so. When it chooses a matrix variant for a bf16 artifact
(AMX: tiles, permission granted; else AVX-512 BF16 dot products), each GEMM with that variant runs
`<name>__<isa>` from kernels.<isa>.so. Either way a kernel is a C function taking MLIR's expanded memref
arguments (runtime/native.py), with a launch entry `<kernel>__launch` the native programs call.
Given the artifact's file records, every file loaded here — LLVM IR or library — is checked against its
size and SHA-256 first: nothing native runs from a truncated or modified file. Each loaded file also says
which program.json it was compiled for (the constant runtime/program_check.PROGRAM_DIGEST_SYMBOL, read into
`KernelSet.program_digests`), for the session to compare before any launch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.runtime import openmp
from tessera.runtime.integrity import IntegrityError, check_bytes, read_cache_entry, write_cache_entry
from tessera.runtime.native import LAUNCH_SUFFIX, NativeError
from tessera.runtime.program_check import PROGRAM_DIGEST_SYMBOL
from tessera.safe_io import check_file_record


class _CFunction(ctypes._CFuncPtr):  # type: ignore[name-defined,misc]
    """A C function at an address, called like a ctypes.CDLL function (no fixed argument types)."""

    _flags_ = ctypes._FUNCFLAG_CDECL  # type: ignore[attr-defined]
    _restype_ = None


def cache_root() -> Path:
    """Where compiled code is cached: $TESSERA_CACHE_DIR, else $XDG_CACHE_HOME/tessera, else
    ~/.cache/tessera (the compiler's kernel cache and the runtime's JIT cache share it)."""
    explicit = os.environ.get("TESSERA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tessera"


@dataclass(frozen=True)
class FileRecords:
    """The {sha256, bytes} records of an artifact's files by path, and the manifest that holds them."""

    by_path: Mapping[Path, Any]
    source: str

    def record(self, path: Path) -> Any:
        if path not in self.by_path:
            raise IntegrityError(f"{self.source}: no sha256 recorded for {path} (rebuild it with tessera-compile)")
        return self.by_path[path]


class KernelSet:
    """Kernels by name; `how` says which code runs and why (e.g. "aot avx512 + amx GEMMs (bf16 artifact,
    AMX granted)" or "jit znver5 (no matrix GEMMs: ...)"); `matrix` the GEMMs' matrix variant that runs and
    `matrix_kernels` the GEMMs that run it (their weights are packed for it); `program_digests` the program
    digest each file of code was compiled for, by its path (None: the file has none)."""

    def __init__(
        self,
        lookup: Callable[[str], Any],
        how: str,
        keepalive: Any = None,
        program_digests: Mapping[str, str | None] | None = None,
    ) -> None:
        self._lookup = lookup
        self.how = how
        self._keepalive = keepalive  # the engine or library that owns the code
        self.matrix: str | None = None  # the GEMMs' matrix variant that runs (amx, avx512bf16), if any
        self.matrix_kernels: frozenset[str] = frozenset()  # the GEMMs that run it (their weights repacked)
        self.program_digests: dict[str, str | None] = dict(program_digests or {})

    def function(self, name: str) -> Any:
        return self._lookup(name)

    def address(self, name: str) -> int:
        """Where function `name` starts (the native programs call kernels through these)."""
        address = ctypes.cast(self._lookup(name), ctypes.c_void_p).value
        assert address is not None
        return address


def load_kernels(
    llvm_ir_path: Path,
    libraries: Mapping[str, Path],
    mode: str = "auto",
    precision: str = "fp32",
    variant_kernels: Mapping[str, Iterable[str]] | None = None,
    records: FileRecords | None = None,
) -> KernelSet:
    """mode: auto (JIT if llvmlite imports, else AOT), jit, or aot. `libraries` by ISA level (generic,
    avx512, amx, avx512bf16: runtime/cpu_features.ISAS); `variant_kernels` by matrix variant (amx,
    avx512bf16) the GEMMs that have one; `records`
    the artifact's {sha256, bytes} of these files (and where they are recorded), checked before a file is
    used — None only for files no manifest records (tests building libraries of their own)."""
    from tessera.runtime.cpu_features import MATRIX_VARIANTS, choose_isa

    if mode not in ("auto", "jit", "aot"):
        raise NativeError(f"kernel loading mode must be auto, jit or aot, got '{mode}'")
    openmp.load()  # before any library that needs it is loaded (found then by its soname)
    choice = choose_isa(precision)
    kernels: KernelSet | None = None
    # A forced ISA level (TESSERA_ISA) means that level's library, not code for whatever this CPU has.
    if mode == "jit" or (mode == "auto" and not os.environ.get("TESSERA_ISA")):
        try:
            import llvmlite.binding  # noqa: F401
        except ImportError:
            if mode == "jit":
                raise NativeError(
                    "llvmlite is not installed: cannot JIT-compile the kernels (use the AOT library)"
                ) from None
        else:
            kernels = _jit(llvm_ir_path, records)
    if kernels is None:
        level = choice.other if choice.other in libraries else "generic"
        kernels = _aot(libraries[level], level, records)
    isa = choice.matrix
    variants = frozenset((variant_kernels or {}).get(isa, ())) if isa in MATRIX_VARIANTS else frozenset()
    if variants:
        matrix = _aot(libraries[isa], isa, records)
        base = kernels

        def lookup(name: str) -> Any:  # a kernel, or its launch entry (<kernel>__<isa>__launch for the variant)
            kernel = name.removesuffix(LAUNCH_SUFFIX)
            return (
                matrix.function(f"{kernel}__{isa}{name[len(kernel) :]}") if kernel in variants else base.function(name)
            )

        kernels = KernelSet(lookup, base.how, (base, matrix), {**base.program_digests, **matrix.program_digests})
        kernels.matrix = isa
    kernels.how += f" + {isa} GEMMs ({choice.why})" if variants else f" (no matrix GEMMs: {choice.why})"
    kernels.matrix_kernels = variants
    return kernels


def _aot(library_path: Path, level: str, records: FileRecords | None) -> KernelSet:
    if not library_path.is_file():
        raise NativeError(f"{library_path}: missing (the artifact has no ahead-of-time kernel library)")
    if records is not None:
        # dlopen maps the file: one truncated since it was written would fault (SIGBUS) in the loader.
        check_file_record(library_path, records.record(library_path), records.source, error=IntegrityError)
    try:
        library = ctypes.CDLL(str(library_path))
    except OSError as exc:
        raise NativeError(f"{library_path}: cannot load: {exc}") from None

    def lookup(name: str) -> Any:
        try:
            function = getattr(library, name)
        except AttributeError:
            raise NativeError(f"{library_path}: no kernel '{name}'") from None
        function.restype = None
        return function

    return KernelSet(lookup, f"aot {level}", library, {str(library_path): _library_digest(library)})


def _library_digest(library: ctypes.CDLL) -> str | None:
    """The kernel-table digest a library was compiled with (64 hex digits), None when it has none."""
    try:
        return _digest_text((ctypes.c_char * 64).in_dll(library, PROGRAM_DIGEST_SYMBOL).raw)
    except ValueError:  # ctypes: symbol not found
        return None


def _digest_text(data: bytes) -> str:
    return data.decode("ascii", errors="replace")  # not ASCII: compares unequal, named in one line


def _jit(llvm_ir_path: Path, records: FileRecords | None) -> KernelSet:
    import llvmlite.binding as llvm

    if not llvm_ir_path.is_file():
        raise NativeError(f"{llvm_ir_path}: missing (the artifact has no LLVM IR to JIT-compile)")
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    data = llvm_ir_path.read_bytes()
    if records is not None:
        check_bytes(data, records.record(llvm_ir_path), llvm_ir_path, records.source)
    text = data.decode("utf-8", errors="replace")  # not UTF-8: parse_assembly names the line
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    try:
        module = llvm.parse_assembly(text)
        module.verify()
    except RuntimeError as exc:
        raise NativeError(f"{llvm_ir_path}: invalid LLVM IR: {str(exc).strip().splitlines()[0]}") from None
    try:
        module.get_global_variable(PROGRAM_DIGEST_SYMBOL)
        bound = True
    except NameError:  # an artifact built before kernels were bound to program.json
        bound = False
    target = llvm.Target.from_default_triple()
    machine = target.create_target_machine(cpu=cpu, features=features, opt=3, codemodel="jitdefault")
    cache_file = cache_root() / "jit" / (hashlib.sha256(f"{cpu}\0{features}\0{text}".encode()).hexdigest() + ".o")

    # An object that does not check is never given to MCJIT (whose loader aborts the process on a corrupt
    # one): it is compiled again, and notify() rewrites the entry.
    cached_object = read_cache_entry(cache_file)

    def notify(_module: Any, data: bytes) -> None:
        write_cache_entry(cache_file, data)

    def cached(_module: Any) -> bytes | None:
        return cached_object

    if cached_object is None:
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        builder = llvm.create_pass_builder(machine, options)
        builder.getModulePassManager().run(module, builder)
    # The native programs' OpenMP calls: bound to libiomp5, which is kept out of the global symbol scope.
    for function in module.functions:
        if function.is_declaration and function.name.startswith("__kmpc_"):
            llvm.add_symbol(function.name, openmp.symbol_address(function.name))
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.set_object_cache(notify, cached)
    engine.finalize_object()

    def lookup(name: str) -> Any:
        address = engine.get_function_address(name)
        if not address:
            raise NativeError(f"{llvm_ir_path}: no kernel '{name}'")
        return _CFunction(address)

    # MCJIT aborts the process when asked for the address of a symbol it lacks: asked only when it has it.
    digest = (
        _digest_text(ctypes.string_at(engine.get_global_value_address(PROGRAM_DIGEST_SYMBOL), 64)) if bound else None
    )
    return KernelSet(lookup, f"jit {cpu}", (engine, module), {str(llvm_ir_path): digest})
