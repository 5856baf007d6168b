"""Tessera's dialects, and the one way to get a context that knows them and to read a module."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.dialects.func import Func
from xdsl.parser import Parser
from xdsl.utils.exceptions import DiagnosticException, ParseError, VerifyException

from tessera.dialects.graph import TesseraGraph
from tessera.dialects.nemotron import Nemotron
from tessera.errors import TesseraError

TESSERA_DIALECTS = (TesseraGraph, Nemotron)


def context() -> Context:
    """Builtin, func, arith and every Tessera dialect, loaded eagerly (xDSL's lazy loading would
    split `tessera.graph` at the first dot)."""
    ctx = Context()
    for dialect in (Builtin, Func, Arith, *TESSERA_DIALECTS):
        ctx.load_dialect(dialect)
    return ctx


def parse_module(text: str, filename: str) -> ModuleOp:
    """Parse and verify; any error becomes one TesseraError line naming file:line:col and the op."""
    try:
        module = Parser(context(), text, filename).parse_module()
    except ParseError as exc:
        raise TesseraError(diagnostic_line(exc)) from None
    try:
        module.verify()
    except (VerifyException, DiagnosticException) as exc:
        raise TesseraError(f"{filename}: {diagnostic_line(exc)}") from None
    return module


def diagnostic_line(exc: Exception) -> str:
    """One line for an xDSL parse or verify error: `file:line:col: message` or the message."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, ParseError) and len(lines) >= 2:
        # xDSL prints "file:line:col", the source line, a caret line, then the message.
        return f"{lines[0].strip()}: {lines[-1].strip()}"
    return lines[0].strip() if lines else type(exc).__name__
