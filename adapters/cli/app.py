"""The `itertrack` command line: the entry point; each command group lives in a module of its own."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable
from typing import Any

import typer

from itertrack.adapters.cli import (
    feed,
    iterations,
    metrics_server,
    prices,
    relay,
    report,
    serve,
    similar,
    spool,
    stale,
    views,
)
from itertrack.adapters.cli.common import app

# Importing them registers their commands.
COMMAND_MODULES = (iterations, views, report, spool, stale, prices, metrics_server, feed, similar, relay, serve)


def escape_unencodable_output() -> None:
    """Characters stdout and stderr cannot encode (an emoji in an agent id under an ASCII or Latin-1 locale, a
    pipe with PYTHONIOENCODING=ascii) are written as Python escapes (`\\U0001f680`) instead of raising."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage errors, like every other error, are one line on stderr."""
    escape_unencodable_output()
    # Errors are reported as one line by the commands; library warnings would only add noise.
    logging.getLogger("itertrack").setLevel(logging.ERROR)
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    command: Callable[..., Any] = typer.main.get_command(app)
    try:
        result = command(args=argv, prog_name="itertrack", standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.stderr.write("itertrack: aborted\n")
        sys.exit(1)
    except Exception as e:
        message = getattr(e, "format_message", None)
        if message is None:
            raise
        if not message().strip():
            sys.exit(0)  # a command group run without a command: its help was printed
        sys.stderr.write(f"itertrack: error: {message()} (see itertrack --help)\n")
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
