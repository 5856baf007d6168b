"""What every Tessera CLI shares: bad input ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tessera.errors import TesseraError

F = TypeVar("F", bound=Callable[..., Any])

# Seeds go into JSON manifests, whose integers safe_io reads back within int64; numpy's default_rng
# refuses negative seeds.
SEED = click.IntRange(0, 2**63 - 1)
# Token counts and positions: the GPU kernels compute positions in i32.
MAX_COUNT = 2**31 - 1
COUNT = click.IntRange(0, MAX_COUNT)
POSITIVE_COUNT = click.IntRange(1, MAX_COUNT)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and ±inf (nan compares false with every bound, so passes it)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class OneLineCommand(click.Command):
    """A command whose usage errors (bad option values, unknown options) are one line too:
    `tool: error: Invalid value for '--seed': ...` instead of click's usage block."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.ClickException as exc:
            message = exc.format_message().splitlines() or [type(exc).__name__]
            fail(self.name or "tessera", message[0], exc.exit_code)
        except click.exceptions.Abort:
            fail(self.name or "tessera", "interrupted", 130)
        # Without standalone mode click returns --help's exit code instead of exiting.
        sys.exit(code if isinstance(code, int) else 0)


def fail(tool: str, message: str, code: int = 1) -> None:
    click.echo(f"{tool}: error: {message}", err=True)
    sys.exit(code)


# Set to 1 to see the traceback of an internal error (a bug in Tessera, not in the input).
TRACEBACK_ENV = "TESSERA_TRACEBACK"


def one_line_errors(tool: str) -> Callable[[F], F]:
    """Turn TesseraError / OSError / MemoryError into `tool: error: ...` and exit 1, never a traceback; any
    other exception is a bug of Tessera's, reported as one line too (TESSERA_TRACEBACK=1 shows it whole)."""

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
            except Exception as exc:
                if os.environ.get(TRACEBACK_ENV) == "1":
                    raise
                detail = str(exc).splitlines()[0] if str(exc) else ""
                fail(tool, f"internal error ({type(exc).__name__}: {detail[:200]}); {TRACEBACK_ENV}=1 shows where")

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
