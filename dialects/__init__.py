"""Tessera's dialects, and the one way to get a context that knows them and to read a module."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.dialects.func import Func
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.exceptions import DiagnosticException, ParseError, VerifyException
from xdsl.utils.lexer import Span

from tessera.dialects.graph import TesseraGraph
from tessera.dialects.nemotron import Nemotron
from tessera.dialects.schedule import TesseraSchedule
from tessera.dialects.tile import TesseraTile
from tessera.errors import TesseraError

TESSERA_DIALECTS = (TesseraGraph, Nemotron, TesseraSchedule, TesseraTile)


def context(upstream: bool = False) -> Context:
    """Builtin, func, arith and every Tessera dialect, loaded eagerly (xDSL's lazy loading would
    split `tessera.graph` at the first dot); with `upstream`, every other dialect xDSL has too, loaded on
    first use (what a dataflow kernel's body holds: scf, memref, math...)."""
    ctx = Context()
    for dialect in (Builtin, Func, Arith, *TESSERA_DIALECTS):
        ctx.load_dialect(dialect)
    if upstream:
        from xdsl.dialects import get_all_dialects

        for name, load in get_all_dialects().items():
            if name not in ctx.registered_dialect_names:
                ctx.register_dialect(name, load)
    return ctx


class LocatedVerifyException(VerifyException):
    """A verifier error whose message already starts with the op's `file:line:col`."""


class LocatingParser(Parser):
    """xDSL's parser, remembering where each operation starts, so verifier errors carry file:line:col."""

    def __init__(self, ctx: Context, text: str | bytes, name: str, line_offset: int = 0) -> None:
        super().__init__(ctx, text, name)
        self.line_offset = line_offset
        self.op_spans: dict[Operation, Span] = {}
        self._op_names: list[str] = []  # of the ops being parsed, innermost last

    def _get_op_by_name(self, name: str) -> type[Operation]:
        if self._op_names:
            self._op_names[-1] = name
        return super()._get_op_by_name(name)

    def parse_operation(self) -> Operation:
        span = self._current_token.span
        self._op_names.append("")
        try:
            op = super().parse_operation()
        except LocatedVerifyException:
            raise
        except VerifyException as exc:
            # A declarative format checks property and type constraints while it parses (an f32
            # epsilon, a memref operand): place that error at the op, and name the op, too.
            raise self.located(span, exc, self._op_names[-1]) from None
        finally:
            self._op_names.pop()
        self.op_spans[op] = span
        return op

    def located(self, span: Span, exc: VerifyException, op_name: str = "") -> LocatedVerifyException:
        location = span.get_location()
        where = f"{location.file}:{location.line + self.line_offset}:{location.col}"
        message = diagnostic_line(exc)
        if op_name and not message.startswith(op_name):
            message = f"{op_name}: {message}"
        return LocatedVerifyException(f"{where}: {message}")

    def parse_and_verify(self) -> ModuleOp:
        module = self.parse_module()
        # Op by op, innermost first, so the error names the op that broke a rule and where it is.
        for op in reversed(list(module.walk())):
            try:
                op.verify(verify_nested_ops=False)
            except VerifyException as exc:
                span = self.op_spans.get(op)
                if span is None:
                    raise
                raise self.located(span, exc) from None
        return module


# The largest IR text Tessera parses: a Nano-12B's Tile-IR is a few MB; a bound keeps a hostile file from
# costing gigabytes before the parser sees its first op.
MAX_MLIR_BYTES = 128 * 2**20


def parse_module(text: str, filename: str) -> ModuleOp:
    """Parse and verify; any error becomes one TesseraError line naming file:line:col and the op."""
    try:
        return parse_guarded(LocatingParser(context(), text, filename), filename)
    except (ParseError, VerifyException, DiagnosticException) as exc:
        raise TesseraError(diagnostic_line(exc)) from None


def parse_kernel(text: str) -> Operation:
    """The one op of `text`, a kernel as Tessera printed it (a compile worker's input)."""
    module = Parser(context(upstream=True), text).parse_module()
    (op,) = module.ops
    op.detach()
    return op


def parse_guarded(parser: LocatingParser, filename: str) -> ModuleOp:
    """`parser.parse_and_verify()`, with the failures that are no diagnostic of the IR — nesting deeper than
    Python recurses, an integer literal longer than Python converts — as one TesseraError line naming the
    file. Parse and verify errors pass through (tessera-opt --verify-diagnostics matches them)."""
    try:
        return parser.parse_and_verify()
    except RecursionError:  # the parser recurses once per nested region, attribute or type
        raise TesseraError(f"{filename}: nested too deeply to parse") from None
    except ValueError as exc:
        raise TesseraError(f"{filename}: {diagnostic_line(exc)}") from None


def diagnostic_line(exc: Exception) -> str:
    """One line for an xDSL parse or verify error: `file:line:col: message` or the message."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, ParseError) and len(lines) >= 2:
        # xDSL prints "file:line:col", the source line, a caret line, then the message.
        return f"{lines[0].strip()}: {lines[-1].strip()}"
    return lines[0].strip() if lines else type(exc).__name__
