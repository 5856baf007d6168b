"""tessera-opt: xDSL's opt driver with Tessera's dialects and passes, used like mlir-opt.

tessera-opt graph_examples/hybrid.mlir -p tessera-graph-annotate-costs
tessera-opt test/dialects/nemotron/invalid.mlir --split-input-file --verify-diagnostics
tessera-opt model.mlir -p convert-tessera-graph-to-schedule,tessera-schedule-plan-buffers
tessera-opt tile.mlir -t x86-mlir        # the x86 kernels in upstream MLIR (what mlir-opt takes next)
tessera-opt tile.mlir -t x86-program     # the launch lists the runtime executes (program.json)
tessera-opt tile.mlir -t x86-amx-mlir    # convert-tessera-tile-to-amx: each GEMM's AMX variant (amx dialect)
tessera-opt tile.mlir -t rocdl-mlir      # convert-tessera-tile-to-rocdl: Tile-IR tiled for gfx942 / gfx90a ->
                                         # a gpu.module of ROCDL kernels (what convert-gpu-to-rocdl takes next)
tessera-opt tile.mlir -t rocdl-program   # the ROCDL launch lists (program.json)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import DiagnosticException, ParseError, VerifyException
from xdsl.xdsl_opt_main import xDSLOptMain

from tessera.dialects import TESSERA_DIALECTS, LocatingParser, diagnostic_line
from tessera.errors import TesseraError
from tessera.passes import ALL_PASSES


class TesseraOptMain(xDSLOptMain):
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
        # Verified here, op by op, so a broken rule is reported at the op's file:line:col.
        parser = LocatingParser(self.ctx, io.read(), self.get_input_name(), getattr(self, "_line_offset", 0))
        return parser.parse_and_verify()

    def register_all_targets(self) -> None:
        super().register_all_targets()
        self.available_targets["x86-mlir"] = _emit_x86_mlir
        self.available_targets["x86-program"] = _emit_x86_program
        self.available_targets["x86-amx-mlir"] = _emit_x86_amx_mlir
        self.available_targets["rocdl-mlir"] = _emit_rocdl_mlir
        self.available_targets["rocdl-program"] = _emit_rocdl_program
        self.available_targets["nvvm-mlir"] = _emit_nvvm_mlir
        self.available_targets["nvvm-program"] = _emit_nvvm_program

    def register_all_passes(self) -> None:
        super().register_all_passes()
        for name, factory in ALL_PASSES.items():
            self.register_pass(name, factory)


def _emit_x86_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import lower_kernels

    output.write(lower_kernels(module))


def _emit_x86_program(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import lower_programs

    output.write(json.dumps(lower_programs(module), indent=1) + "\n")


def _emit_x86_amx_mlir(module: ModuleOp, output: IO[str]) -> None:
    from tessera.lowering.convert_tile_to_x86 import amx_kernels, kernels_module

    output.write(kernels_module(list(amx_kernels(module).values())))


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
        print(f"tessera-opt: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except (ParseError, VerifyException, DiagnosticException, ValueError) as exc:
        print(f"tessera-opt: error: {diagnostic_line(exc)}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        print(f"tessera-opt: error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
