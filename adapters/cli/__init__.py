"""The `itertrack` command line, one module per command group."""

from itertrack.adapters.cli.app import main

__all__ = ["main"]
