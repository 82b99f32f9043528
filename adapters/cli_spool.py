"""`itertrack spool status` and `itertrack spool flush`: the changes waiting for an unreachable store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from itertrack.adapters.cli_common import JsonOption, StoreOption, app, cli_errors, open_tracker, out, print_json
from itertrack.adapters.spool_sqlite import SQLiteSpool
from itertrack.adapters.store_url import DEFAULT_STORE, parse_store_url, spool_path
from itertrack.domain.errors import StoreConfigError
from itertrack.domain.spool import SpoolStatus

spool_app = typer.Typer(
    help="Changes waiting in the local spool while PostgreSQL was unreachable.", no_args_is_help=True
)
app.add_typer(spool_app, name="spool")


def _spool_file(store: str) -> Path:
    url = parse_store_url(store)
    if url.scheme != "postgresql" or url.spool == "off":
        raise StoreConfigError("store", url.redacted, "has no spool (only PostgreSQL stores spool, unless spool=off)")
    return Path(spool_path(url))


@spool_app.command("status")
def spool_status(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """What is waiting (exits 1 when something is stuck and needs a person)."""
    with cli_errors(store):
        path = _spool_file(store)
        if path.exists():
            spool = SQLiteSpool(path)
            try:
                status = spool.status()
            finally:
                spool.close()
        else:
            status = SpoolStatus(path=str(path), waiting=0, stuck=0, entries=())
    if as_json:
        print_json(status.model_dump(mode="json"))
    else:
        out.print(f"spool {status.path}: {status.waiting} change(s) waiting, {status.stuck} stuck")
        if status.entries:
            table = Table()
            for column in ("#", "iteration", "change", "record", "stuck because"):
                table.add_column(column)
            for e in status.entries:
                # A deferred change has no versions yet: the forwarder gives them when it applies it.
                what = f"deferred: {e.deferred}" if e.deferred else "versions " + ", ".join(map(str, e.versions))
                table.add_row(str(e.id), str(e.iteration_id), what, "yes" if e.with_record else "", e.stuck or "")
            out.print(table)
    if status.stuck:
        raise typer.Exit(1)


@spool_app.command("flush")
def spool_flush(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Forward what is waiting now (exits 1 if anything is left)."""
    with cli_errors(store):
        _spool_file(store)
        with open_tracker(store, migrate=False, env={"ITERTRACK_FORWARD": "n"}) as tracker:
            result = tracker.flush_spool()
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        out.print(
            f"forwarded {result.forwarded}, already in the store {result.already_stored}, "
            f"stuck {result.stuck}, still waiting {result.waiting}"
        )
    if result.stuck or result.waiting:
        raise typer.Exit(1)
