"""tessera-opt: xDSL's opt driver with Tessera's dialects and passes, used like mlir-opt.

tessera-opt graph_examples/hybrid.mlir -p tessera-graph-annotate-costs
tessera-opt test/dialects/nemotron/invalid.mlir --split-input-file --verify-diagnostics
tessera-opt model.mlir -p convert-tessera-graph-to-schedule,tessera-schedule-plan-buffers
tessera-opt tile.mlir -t x86-mlir        # the x86 kernels in upstream MLIR (what mlir-opt takes next)
tessera-opt tile.mlir -t x86-program     # the launch lists the runtime executes (program.json)
tessera-opt tile.mlir -t x86-native-mlir # those launch lists as native programs (llvm + omp dialects)
tessera-opt tile.mlir -t x86-amx-mlir    # convert-tessera-tile-to-amx: each GEMM's AMX variant (amx dialect)
tessera-opt tile.mlir -t x86-avx512bf16-mlir   # each bf16 GEMM's AVX-512 BF16 variant (x86vector dot products)
tessera-opt tile.mlir -t rocdl-mlir      # convert-tessera-tile-to-rocdl: Tile-IR tiled for gfx942 / gfx90a ->
                                         # a gpu.module of ROCDL kernels (what convert-gpu-to-rocdl takes next)
tessera-opt tile.mlir -t rocdl-program   # the ROCDL launch lists (program.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, NoReturn, get_type_hints

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import ArgSpec, parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError, VerifyException
from xdsl.xdsl_opt_main import xDSLOptMain

from tessera.dialects import MAX_MLIR_BYTES, TESSERA_DIALECTS, LocatingParser, diagnostic_line, parse_guarded
from tessera.errors import TesseraError
from tessera.lowering import CONVERSIONS
from tessera.passes import PASSES
from tessera.safe_io import check_regular_file
from tessera.staging import check_apart, write_atomically


class _Collected(io.StringIO):
    """The output, kept when xDSL closes its stream, so it can be written whole once the run succeeds."""

    text = ""

    def close(self) -> None:
        self.text = self.getvalue()
        super().close()


class TesseraOptMain(xDSLOptMain):
    _output: _Collected | None = None

    def prepare_input(self) -> tuple[list[tuple[IO[bytes], int]], str]:
        # Only a regular file: opening a FIFO would block for ever, a device never end.
        if self.args.input_file is not None:
            check_regular_file(Path(self.args.input_file))
        return super().prepare_input()

    def prepare_output(self) -> IO[str]:
        """-o is written whole, on success, by rename (never truncated before the input is read: -o may name
        the input itself, which is refused)."""
        if self.args.output_file is None:
            return super().prepare_output()
        if self.args.input_file is not None:
            check_apart(Path(self.args.output_file), [Path(self.args.input_file)])
        self._output = _Collected()
        return self._output

    def run(self) -> None:
        super().run()
        if self._output is not None:
            text = self._output.text if self._output.closed else self._output.getvalue()
            write_atomically(Path(self.args.output_file), text.encode())

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        # Loaded eagerly: lazy registration splits "tessera.graph" at its first dot.
        for dialect in TESSERA_DIALECTS:
            self.ctx.load_dialect(dialect)

    def register_all_frontends(self) -> None:
        super().register_all_frontends()
        self.available_frontends["mlir"] = self._parse_mlir

    def parse_chunk(self, chunk: IO[bytes], file_extension: str, start_offset: int = 0) -> ModuleOp | None:
        self._line_offset = start_offset
        return super().parse_chunk(chunk, file_extension, start_offset)

    def _parse_mlir(self, io: IO[bytes]) -> ModuleOp:
        name = self.get_input_name()
        data = io.read(MAX_MLIR_BYTES + 1)
        if len(data) > MAX_MLIR_BYTES:
            raise TesseraError(f"{name}: larger than the {MAX_MLIR_BYTES} bytes an IR file may have")
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise TesseraError(f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
        # Verified here, op by op, so a broken rule is reported at the op's file:line:col.
        return parse_guarded(LocatingParser(self.ctx, text, name, getattr(self, "_line_offset", 0)), name)

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.error = _argument_error  # type: ignore[method-assign]

    def setup_pipeline(self) -> None:
        check_pipeline(self.available_passes, self.args.passes)
        super().setup_pipeline()

    def register_all_targets(self) -> None:
        super().register_all_targets()
        self.available_targets["x86-mlir"] = _emit_x86_mlir
        self.available_targets["x86-program"] = _emit_x86_program
        self.available_targets["x86-native-mlir"] = _emit_x86_native_mlir
        self.available_targets["x86-amx-mlir"] = _emit_x86_amx_mlir
        self.available_targets["x86-avx512bf16-mlir"] = _emit_x86_avx512bf16_mlir
        self.available_targets["rocdl-mlir"] = _emit_rocdl_mlir
        self.available_targets["rocdl-program"] = _emit_rocdl_program
        self.available_targets["nvvm-mlir"] = _emit_nvvm_mlir
        self.available_targets["nvvm-program"] = _emit_nvvm_program

    def register_all_passes(self) -> None:
        super().register_all_passes()
        for name, factory in {**PASSES, **CONVERSIONS}.items():
            self.register_pass(name, factory)


def _argument_error(message: str) -> NoReturn:
    # argparse prints its usage block and the error: one line instead.
    raise TesseraError(message)


def _spec_error(exc: ArgSpecParseError) -> str:
    """xDSL's spec syntax error (a header, the spec, a caret line, the message) as `column N: message`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    column = lines[1].rsplit(":", 1)[-1] if len(lines) > 1 else "?"
    return f"column {column}: {lines[-1] if lines else 'malformed'}"


def check_pipeline(available: dict[str, Callable[[], type[ModulePass]]], spec: str) -> None:
    """Refuse a malformed -p pipeline in one line naming the pass and option, before any input is read.

    xDSL's own errors are several lines (a syntax error is even a BaseException) and name no option.
    """
    try:
        pass_specs = list(parse_pipeline(spec))
    except ArgSpecParseError as exc:
        raise TesseraError(f"-p {spec!r}: {_spec_error(exc)}") from None
    for pass_spec in pass_specs:
        if pass_spec.name not in available:
            raise TesseraError(f"-p: unknown pass '{pass_spec.name}'")
        pass_class = available[pass_spec.name]()
        options = [f.name for f in dataclasses.fields(pass_class) if f.init]
        for key, values in pass_spec.normalize_parameter_names().parameters.items():
            option = key.replace("_", "-")
            if key not in options:
                known = ", ".join(name.replace("_", "-") for name in options) or "none"
                raise TesseraError(f"{pass_spec.name}: unknown option '{option}' (options: {known})")
            try:
                # One option at a time, the others at their defaults: the pass's own bounds name it.
                pass_class.from_pass_spec(ArgSpec(pass_spec.name, {key: values}))
            except ValueError:
                hint = get_type_hints(pass_class)[key]
                expected = getattr(hint, "__name__", str(hint))
                given = " ".join(map(repr, values)) or "no value"
                raise TesseraError(f"{pass_spec.name}: option '{option}' expects {expected}, got {given}") from None


def _emit_x86_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import lower_kernels

    output.write(lower_kernels(module))


def _emit_x86_program(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import lower_programs

    output.write(json.dumps(lower_programs(module), indent=1) + "\n")


def _emit_x86_native_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import lower_programs
    from tessera.lowering.x86.native_program import entries_module

    output.write(entries_module(lower_programs(module)))


def _emit_x86_amx_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import matrix_variants, variants_module

    output.write(variants_module("amx", matrix_variants(module, "amx")))


def _emit_x86_avx512bf16_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import matrix_variants, variants_module

    output.write(variants_module("avx512bf16", matrix_variants(module, "avx512bf16")))


def _emit_rocdl_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_rocdl import lower_kernels

    output.write(lower_kernels(module))


def _emit_rocdl_program(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_rocdl import emit_kernels, lower_programs

    output.write(json.dumps(lower_programs(module, emit_kernels(module)), indent=1) + "\n")


def _emit_nvvm_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_nvvm import lower_kernels

    output.write(lower_kernels(module))


def _emit_nvvm_program(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_nvvm import emit_kernels, lower_programs

    output.write(json.dumps(lower_programs(module, emit_kernels(module)), indent=1) + "\n")


def main(args: Sequence[str] | None = None) -> None:
    try:
        TesseraOptMain("Tessera modular optimizer driver", args).run()
    except TesseraError as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except (ParseError, VerifyException, DiagnosticException, ValueError) as exc:
        _fail(diagnostic_line(exc))
    except ArgSpecParseError as exc:  # a BaseException; -p is checked before, so a malformed -t target spec
        _fail(f"-t: {_spec_error(exc)}")
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    except RecursionError:
        _fail("the IR is nested too deeply")
    except MemoryError:
        _fail("out of memory")


def _fail(message: str) -> NoReturn:
    print(f"tessera-opt: error: {message}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
