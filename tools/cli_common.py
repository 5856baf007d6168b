"""What every Tessera CLI shares: bad input ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tessera.errors import TesseraError

F = TypeVar("F", bound=Callable[..., Any])


def fail(tool: str, message: str, code: int = 1) -> None:
    click.echo(f"{tool}: error: {message}", err=True)
    sys.exit(code)


def one_line_errors(tool: str) -> Callable[[F], F]:
    """Turn TesseraError / OSError / MemoryError into `tool: error: ...` and exit 1, never a traceback."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except TesseraError as exc:
                fail(tool, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            except OSError as exc:
                where = f"{exc.filename}: " if exc.filename else ""
                fail(tool, f"{where}{exc.strerror or exc}")
            except MemoryError:
                fail(tool, "out of memory")
            except KeyboardInterrupt:
                fail(tool, "interrupted", 130)

        return wrapper  # type: ignore[return-value]

    return decorate


def parse_int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise TesseraError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise TesseraError(f"{option}: empty")
    return values
