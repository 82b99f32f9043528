"""What every `itertrack` command shares: the app, the options, error handling and output."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console

from itertrack.adapters.cli.terminal import escape_controls
from itertrack.adapters.documents.envelope import dumps
from itertrack.adapters.store.url import DEFAULT_STORE, redact
from itertrack.domain.model.errors import InvalidInputError, IterationError, StoreError
from itertrack.domain.service.tracker import PerformanceTracker

app = typer.Typer(
    name="itertrack",
    help="Event-sourced performance tracker for AI agents that learn in iterations.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
if not out.is_terminal and "COLUMNS" not in os.environ:
    # Piped or captured output: room for full ids and timestamps in one row.
    out.width = 160
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"itertrack {package_version('itertrack')}\n")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print `itertrack <version>` and exit."),
    ] = False,
) -> None:
    """Options of `itertrack` itself, before the command."""


StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="ITERTRACK_STORE",
        help="memory://, sqlite:///path.db or postgresql://user[:password]@host:port/db[?schema=...]",
        show_default=DEFAULT_STORE,
    ),
]
SinceOption = Annotated[
    str | None, typer.Option(help="Iterations started at or after (ISO 8601; UTC if no offset).", show_default=False)
]
UntilOption = Annotated[
    str | None, typer.Option(help="Iterations started before (ISO 8601; UTC if no offset).", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
IdArgument = Annotated[
    str, typer.Argument(help="The iteration's id (a UUID), or a unique prefix of it (at least 4 hex digits).")
]


# The exit code of a usage error: click's own, and ours for input that breaks a rule.
USAGE_ERROR = 2


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr (control characters escaped), then exit non-zero."""
    sys.stderr.write(f"itertrack: error: {escape_controls(message)}\n")
    raise typer.Exit(code)


@contextmanager
def cli_errors(store: str) -> Iterator[None]:
    """Typed errors become one line on stderr; anything else too, never a traceback.

    Exit codes: 2 for input that breaks a rule (`InvalidInputError`: an argument, an option's value, an
    ambiguous id prefix), as for click's own usage errors; 1 for the store's errors (`StoreError`, a bad store
    URL among them) and every other typed error (no such iteration, finished, ...); 70 for anything else (a bug).
    """
    try:
        yield
    except StoreError as e:
        fail(str(e))
    except InvalidInputError as e:
        fail(str(e), code=USAGE_ERROR)
    except IterationError as e:
        fail(str(e))
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as e:
        fail(f"unexpected {type(e).__name__} with store {redact(store)}: {redact(str(e))}", code=70)


def open_tracker(store: str, **kwargs: Any) -> PerformanceTracker:
    """The tracker for `store` (errors are handled by `cli_errors`); a command never starts offline."""
    env = {"ITERTRACK_START_OFFLINE": "n", **kwargs.pop("env", {})}
    return PerformanceTracker(store=store, env=env, **kwargs)


def print_json(name: str, data: BaseModel | dict[str, Any]) -> None:
    """The document `name` holding `data` (see `itertrack.adapters.documents`) on stdout: the envelope
    `{"schema": "itertrack.<name>", "schema_version": N, "data": {...}}`, indented, non-ASCII as `\\u` escapes."""
    sys.stdout.write(dumps(name, data, indent=2) + "\n")


def parse_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """`--since` and `--until` as instants (`parse_instant`; either may be None)."""
    return (
        None if since is None else parse_instant(since, "since"),
        None if until is None else parse_instant(until, "until"),
    )


def parse_instant(text: str, field: str) -> datetime:
    """An ISO-8601 instant; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInputError(field, text, "is not an ISO-8601 timestamp such as 2026-11-25T14:03:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def stderr_log(name: str) -> logging.Logger:
    """The logger `name` writing its lines (INFO and up) to stderr as `itertrack: <message>`, once configured: the
    outage and failure lines of long-running commands (`project --follow`, `consume`, `relay`), whose stdout is
    their output. The CLI keeps the rest of itertrack's logging to errors."""
    log = logging.getLogger(name)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("itertrack: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log
