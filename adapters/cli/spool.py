"""`itertrack spool status|flush|retry|discard`: the changes waiting for an unreachable store, and stuck ones."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.adapters.cli.common import JsonOption, StoreOption, app, cli_errors, open_tracker, out, print_json
from itertrack.adapters.cli.terminal import shown
from itertrack.adapters.documents.iterations import SavedRecord
from itertrack.adapters.documents.operations import SpooledChange as SpooledChangeDocument
from itertrack.adapters.documents.operations import SpoolStatusData
from itertrack.adapters.settings import load_settings
from itertrack.adapters.spool.location import open_spool, spool_location
from itertrack.adapters.spool.port import SpooledChange
from itertrack.adapters.spool.quarantine import describe, quarantined_files
from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.adapters.store.url import DEFAULT_STORE, StoreURL, parse_store_url
from itertrack.domain.model.errors import InvalidInputError, StoreConfigError

# `spool status` exit codes for monitors; distinct from 1 (a typed error, such as a store without a
# spool), 2 (a usage error) and 70 (an unexpected error) that every command uses.
EXIT_EMPTY = 0
EXIT_WAITING = 3  # changes wait; the forwarder sends them when the store answers
EXIT_NEEDS_PERSON = 4  # a change is stuck, or a damaged spool file was moved aside: see `spool status`

spool_app = typer.Typer(
    help="Changes waiting in the local spool while PostgreSQL was unreachable.", no_args_is_help=True
)
app.add_typer(spool_app, name="spool")


def _spool_url(store: str) -> StoreURL:
    url = parse_store_url(store)
    if url.scheme != "postgresql" or url.spool == "off":
        raise StoreConfigError("store", url.redacted, "has no spool (only PostgreSQL stores spool, unless spool=off)")
    return url


def _spool_file(store: str) -> Path:
    return spool_location(_spool_url(store), load_settings())


@spool_app.command(
    "status",
    epilog=f"Exit codes: {EXIT_EMPTY} nothing waits; {EXIT_WAITING} changes wait to be forwarded; "
    f"{EXIT_NEEDS_PERSON} a change is stuck or a damaged spool file was quarantined (a person is needed); "
    "1 a typed error (e.g. a store without a spool); 70 an unexpected error.",
)
def spool_status(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """What is waiting, stuck or quarantined (exit 0 empty, 3 waiting, 4 stuck or quarantined)."""
    with cli_errors(store):
        # Opening moves a damaged file aside, and what an older release left in the working directory in.
        spool = open_spool(_spool_url(store), load_settings())
        try:
            status = spool.status()
        finally:
            spool.close()
        quarantined = [describe(path) for path in quarantined_files(status.path)]
    if as_json:
        print_json("spool.status", SpoolStatusData.of(status, quarantined))
    else:
        out.print(
            Text.assemble("spool ", shown(status.path), f": {status.waiting} change(s) waiting, {status.stuck} stuck")
        )
        if status.entries:
            table = Table()
            for column in ("#", "iteration", "change", "record", "stuck because"):
                table.add_column(column)
            for e in status.entries:
                # A deferred change has no versions yet: the forwarder gives them when it applies it.
                what = f"deferred: {e.deferred}" if e.deferred else "versions " + ", ".join(map(str, e.versions))
                table.add_row(
                    str(e.id), str(e.iteration_id), shown(what), "yes" if e.with_record else "", shown(e.stuck or "")
                )
            out.print(table)
        for q in quarantined:
            when = q.quarantined_at.isoformat() if q.quarantined_at else "?"
            out.print(
                Text.assemble(
                    "quarantined (damaged) spool ",
                    shown(q.path),
                    f", moved aside {when}: {q.readable_rows} change(s) readable; `itertrack spool recover ",
                    shown(q.path),
                    "` forwards them",
                )
            )
    if status.stuck or quarantined:
        raise typer.Exit(EXIT_NEEDS_PERSON)
    if status.waiting:
        raise typer.Exit(EXIT_WAITING)


@spool_app.command("recover")
def spool_recover(
    damaged: Annotated[Path, typer.Argument(help="a quarantined spool file, as `spool status` lists it")],
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Add what a damaged spool file still holds to this store's spool; the forwarder sends it (idempotent).

    A change the store already holds is recognised when forwarded and only removed, so running this twice,
    or on a file some of whose changes were forwarded before the damage, stores nothing twice. The damaged
    file is only read: delete it (with its -wal and -shm) once `spool status` shows nothing stuck.
    """
    with cli_errors(store):
        if not damaged.is_file():
            raise InvalidInputError("damaged", str(damaged), "is not a file")
        spool = open_spool(_spool_url(store), load_settings())
        try:
            read, added = spool.recover(damaged)
        finally:
            spool.close()
    if as_json:
        print_json("spool.recover", {"read": read, "added": added})
    else:
        out.print(
            f"{added} of {read} readable change(s) added to the spool; the forwarder (or `spool flush`) sends them"
        )


@spool_app.command("flush")
def spool_flush(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Forward what is waiting now (exits 1 if anything is left)."""
    with cli_errors(store):
        _spool_file(store)
        with open_tracker(store, migrate=False, env={"ITERTRACK_FORWARD": "n"}) as tracker:
            result = spooling_writer(tracker).flush()
    if as_json:
        print_json("spool.flush", result.model_dump(mode="python"))
    else:
        if result.forwarded_elsewhere:
            out.print("another process is forwarding this spool now; nothing sent from here")
        out.print(
            f"forwarded {result.forwarded}, already in the store {result.already_stored}, "
            f"set aside {result.set_aside}, stuck {result.stuck}, still waiting {result.waiting}"
        )
    if result.stuck or result.waiting:
        raise typer.Exit(1)


ChangeIds = Annotated[list[int], typer.Argument(help="the # of changes, as `spool status` shows them")]


def _stuck(spool: SQLiteSpool, ids: list[int]) -> list[SpooledChange]:
    """The named changes, all of them stuck; otherwise a typed error naming the first bad id (nothing done)."""
    by_id = {change.id: change for change in spool.waiting(10**9)}
    for change_id in ids:
        change = by_id.get(change_id)
        if change is None:
            raise InvalidInputError("id", change_id, "is not in the spool")
        if change.stuck is None:
            raise InvalidInputError("id", change_id, "is not stuck: it waits to be forwarded (spool flush)")
    return [by_id[change_id] for change_id in dict.fromkeys(ids)]


def _state(data: bytes) -> Any:
    """An event's stored state as JSON if it is (the usual case), else base64."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"base64": base64.b64encode(data).decode()}


def _dump(change: SpooledChange) -> dict[str, Any]:
    """Everything a spooled change holds, for the operator's record of what was discarded."""
    return {
        "change_id": change.id,
        "iteration_id": str(change.iteration_id),
        "stuck": change.stuck,
        "events": [
            {"version": e.originator_version, "topic": e.topic, "state": _state(e.state)} for e in change.events
        ],
        "deferred": None if change.deferred is None else change.deferred.model_dump(mode="json"),
        "record": SavedRecord.of(change.record),
    }


def _open_spool(store: str) -> SQLiteSpool:
    spool = open_spool(_spool_url(store), load_settings())
    if not Path(spool.path).exists():
        raise InvalidInputError("store", spool.path, "has no spool file: nothing is waiting")
    return spool


@spool_app.command("retry")
def spool_retry(ids: ChangeIds, store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Clear the stuck mark of these changes once their cause is fixed; the next flush tries them again."""
    with cli_errors(store):
        spool = _open_spool(store)
        try:
            retried = [change.id for change in _stuck(spool, ids) if spool.unstick(change.id)]
        finally:
            spool.close()
    if as_json:
        print_json("spool.retry", {"retried": retried})
    else:
        out.print(f"{len(retried)} change(s) will be tried again at the next flush: {', '.join(map(str, retried))}")


@spool_app.command("discard")
def spool_discard(ids: ChangeIds, store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Drop stuck changes for good, printing all they held first (the changes after them went on without them)."""
    with cli_errors(store):
        spool = _open_spool(store)
        try:
            dropped = _stuck(spool, ids)
            # The operator's record of what is dropped goes out (and is flushed) before anything is removed.
            if as_json:
                print_json("spool.discard", {"discarded": [_dump(change) for change in dropped]})
            else:
                for change in dropped:
                    # One line each, raw: no markup, no wrapping (as the JSON document's `discarded` items).
                    sys.stdout.write(SpooledChangeDocument.model_validate(_dump(change)).model_dump_json() + "\n")
            sys.stdout.flush()
            spool.remove(*(change.id for change in dropped))
        finally:
            spool.close()
    if not as_json:
        out.print(f"discarded {len(dropped)} change(s)")
