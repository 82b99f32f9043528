"""`itertrack metrics-server`: the store's read models as Prometheus metrics on `/metrics`."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer

from itertrack.adapters.cli.common import StoreOption, app, cli_errors, open_tracker
from itertrack.adapters.cli.views import CatchUpOption
from itertrack.adapters.prometheus import METRICS_PATH, build_registry, metrics_server
from itertrack.adapters.store.url import DEFAULT_STORE
from itertrack.adapters.views.keeper import ReadModels

DEFAULT_PORT = 9464  # the default port of OpenTelemetry's Prometheus exporters, which this one stands in for


@app.command("metrics-server")
def metrics_server_command(
    store: StoreOption = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 or :: to be reachable from others).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = DEFAULT_PORT,
    catch_up: CatchUpOption = True,
) -> None:
    """Serve the read models as Prometheus metrics on /metrics until SIGINT or SIGTERM.

    Each scrape reads the views with a few aggregate queries, after bringing them up to the log (at most one
    catch-up at a time; --no-catch-up for read-only roles). The first line on stdout names the address.
    """
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    with (
        cli_errors(store),
        open_tracker(store, migrate=False, env={"ITERTRACK_FORWARD": "n"}) as tracker,
        ReadModels(tracker, background=False, catch_up_on_read=False) as views,
    ):
        server = metrics_server(build_registry(views, catch_up=catch_up), host, port)
        try:
            serving = threading.Thread(target=server.serve_forever, name="itertrack-metrics", daemon=True)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, on_signal)
            serving.start()
            shown_host = f"[{host}]" if ":" in host else host
            sys.stdout.write(f"serving http://{shown_host}:{server.server_port}{METRICS_PATH}\n")
            sys.stdout.flush()
            while not stop.wait(1.0):
                pass
            server.shutdown()
            serving.join(timeout=10)
        finally:
            server.server_close()
    sys.stdout.write("stopped\n")
