"""`itertrack consume` and `itertrack consumers`: running named consumers of the log, and operating them."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.cli.common import (
    JsonOption,
    StoreOption,
    app,
    cli_errors,
    err,
    fail,
    open_tracker,
    out,
    print_json,
    stderr_log,
)
from itertrack.adapters.cli.progress import waiting
from itertrack.adapters.cli.terminal import shown
from itertrack.adapters.feed.checkpoints import ConsumerTables
from itertrack.adapters.feed.registry import load_consumer, parse_options
from itertrack.adapters.feed.runner import ConsumerFailedError, run_consumer
from itertrack.adapters.feed.status import consumer_statuses, describe
from itertrack.adapters.store.unavailable import store_unavailable_as_typed_error
from itertrack.adapters.store.url import DEFAULT_STORE, redact
from itertrack.projections.projection import DEFAULT_BATCH_SIZE

NameArgument = Annotated[str, typer.Argument(help="The consumer's name (registered in `itertrack.consumers`).")]

consumers_app = typer.Typer(
    help="Named consumers of the log: position, lag, state and last error; retry or skip a failed event.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(consumers_app, name="consumers")


@app.command()
def consume(
    name: NameArgument,
    store: StoreOption = DEFAULT_STORE,
    follow: Annotated[bool, typer.Option("--follow", help="Keep delivering new events until interrupted.")] = False,
    reset: Annotated[bool, typer.Option("--reset", help="Start again from the log's first event.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for another runner of this consumer to stop.")] = False,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="KEY=VALUE handed to the consumer's factory.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Events per batch.")] = DEFAULT_BATCH_SIZE,
) -> None:
    """Deliver the log to a named consumer from its checkpoint (to the log's end, or with --follow until stopped).

    A handler that raises stops the consumer at that event (see `itertrack consumers`). Messages go to stderr;
    stdout is the consumer's.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        err.print(f"received {signal.Signals(signum).name}, stopping")
        stop.set()

    stderr_log("itertrack.consumer")
    with cli_errors(store), open_tracker(store, migrate=False) as tracker:
        consumer = load_consumer(name, tracker, parse_options(option or []))
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

        def started() -> None:
            lock_taken()
            where = "following" if follow else "catching up"
            err.print(Text.assemble(f"consumer {name}: {where} ", shown(redact(store)), " (Ctrl-C to stop)"))

        try:
            with (
                store_unavailable_as_typed_error(redact(store)),
                waiting(f"waiting for the running consumer {name} to stop", enabled=wait) as lock_taken,
            ):
                handled = run_consumer(
                    tracker,
                    consumer,
                    follow=follow,
                    stop=stop,
                    reset=reset,
                    wait=wait,
                    batch_size=batch_size,
                    on_start=started,
                )
        except ConsumerFailedError as e:
            if not e.logged:
                fail(str(e))  # refused at the start: failed in an earlier run
            raise typer.Exit(1) from None  # its one line was logged where the handler failed
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        err.print(f"consumer {name}: handled {handled} events")


@consumers_app.callback()
def consumers(ctx: typer.Context, store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Each consumer that ran on the store: position, lag (events, seconds), state, last error (and skips)."""
    if ctx.invoked_subcommand is not None:
        return
    with (
        cli_errors(store),
        open_tracker(store, migrate=False) as tracker,
        store_unavailable_as_typed_error(redact(store)),
    ):
        rows = consumer_statuses(tracker)
    if as_json:
        print_json("consumers", {"consumers": [row.model_dump(mode="python") for row in rows]})
        return
    table = Table(title=f"Consumers ({len(rows)})")
    for column in ("name", "position", "lag (events)", "lag (s)", "state", "last error", "skips"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            shown(row.name),
            f"{row.position:,}",
            f"{row.lag_events:,}",
            f"{row.lag_seconds:.1f}",
            row.state if row.failed_position is None else f"{row.state} at {row.failed_position:,}",
            shown(row.last_error or ""),
            str(len(row.skips)),
        )
    out.print(table)


@consumers_app.command("retry")
def consumers_retry(name: NameArgument, store: StoreOption = DEFAULT_STORE) -> None:
    """Clear a failed consumer's failure: its next run hands the failed event to its handler again."""
    with (
        cli_errors(store),
        open_tracker(store, migrate=False) as tracker,
        store_unavailable_as_typed_error(redact(store)),
    ):
        position = ConsumerTables.of(store_of(tracker).factory).retry(name)
    out.print(f"consumer {name}: the event at position {position} will be handled again on its next run")


@consumers_app.command("skip")
def consumers_skip(
    name: NameArgument,
    position: Annotated[int, typer.Option("--position", min=1, help="The failed event's position.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is skipped (recorded).")],
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Skip the one event a consumer failed on, recording who, when and why; its next run carries on after it."""
    with (
        cli_errors(store),
        open_tracker(store, migrate=False) as tracker,
        store_unavailable_as_typed_error(redact(store)),
    ):
        tables = ConsumerTables.of(store_of(tracker).factory)
        skip = tables.skip(name, position, reason, about=lambda p: describe(tracker, p))
    out.print(
        f"consumer {name}: skipped the event at position {skip.position} ({skip.event_type} {skip.event_key}); "
        f"recorded as skipped by {skip.skipped_by}"
    )
