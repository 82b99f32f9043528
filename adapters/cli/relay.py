"""`itertrack relay`: the event log published to NATS JetStream by the named consumer `relay`.

The loop is the feed's runner (`itertrack.adapters.feed.runner.run_consumer`): the relay's checkpoint, its
lock (one relay per store at a time), outages of the store and `itertrack consumers` all come from there.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from itertrack.adapters.cli.common import StoreOption, app, cli_errors, open_tracker, out, stderr_log
from itertrack.adapters.feed.relay import (
    DEFAULT_DUPLICATE_WINDOW_S,
    DEFAULT_NATS_URL,
    DEFAULT_STREAM,
    RelayConsumer,
    RelaySettings,
)
from itertrack.adapters.feed.runner import run_consumer
from itertrack.adapters.feed.schema import SUBJECT_PREFIX
from itertrack.adapters.store.url import DEFAULT_STORE


@app.command()
def relay(
    nats: Annotated[
        str, typer.Option("--nats", envvar="ITERTRACK_NATS", metavar="URL", help="NATS server(s), comma-separated.")
    ] = DEFAULT_NATS_URL,
    stream: Annotated[
        str, typer.Option("--stream", help="The JetStream stream (created if missing).")
    ] = DEFAULT_STREAM,
    subject_prefix: Annotated[
        str, typer.Option("--subject-prefix", help="Subjects are <prefix>.<agent token>.<event type>.")
    ] = SUBJECT_PREFIX,
    duplicate_window: Annotated[
        float, typer.Option("--duplicate-window", metavar="SECONDS", help="Of a stream the relay creates.")
    ] = DEFAULT_DUPLICATE_WINDOW_S,
    store: StoreOption = DEFAULT_STORE,
    follow: Annotated[bool, typer.Option("--follow/--once", help="Keep publishing until interrupted.")] = False,
) -> None:
    """Publish every event of the log to NATS JetStream, each exactly once in the stream (see the README)."""
    with cli_errors(store):
        settings = RelaySettings(
            url=nats, stream=stream, subject_prefix=subject_prefix, duplicate_window_s=duplicate_window
        )
        stderr_log("itertrack.relay")
        consumer = RelayConsumer(settings)
        try:
            with open_tracker(store, migrate=False) as tracker:
                high_water = consumer.sync()
                out.print(f"relaying to stream {stream} on {nats} (the stream holds the log up to {high_water})")
                sys.stdout.flush()
                run_consumer(tracker, consumer, follow=follow)
        finally:
            consumer.close()
        out.print(f"published {consumer.published} events, skipped {consumer.skipped} already in the stream")
