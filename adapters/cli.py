"""The `itertrack` command line: its commands live in cli_iterations and cli_read_models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from itertrack.adapters import cli_iterations, cli_read_models, cli_report, cli_spool
from itertrack.adapters.cli_common import app

COMMAND_MODULES = (cli_iterations, cli_read_models, cli_report, cli_spool)  # importing them registers their commands


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., Any] = typer.main.get_command(app)
    command(args=argv, prog_name="itertrack")


if __name__ == "__main__":
    main()
