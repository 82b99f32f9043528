"""`itertrack serve`: the live web dashboard (adapters/web), read-only, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import Annotated

import typer

from itertrack.adapters.cli.common import StoreOption, app, cli_errors, fail, open_tracker
from itertrack.adapters.cli.stale import parse_duration
from itertrack.adapters.prices import load_price_table
from itertrack.adapters.settings import load_settings
from itertrack.adapters.store.url import DEFAULT_STORE, redact
from itertrack.adapters.views.keeper import ReadModels

DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    store: StoreOption = DEFAULT_STORE,
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs a token.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to bind (0: any free one).")] = (
        DEFAULT_PORT
    ),
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Token every request must carry (prefer ITERTRACK_SERVE_TOKEN: a command line is visible to ps).",
            show_default=False,
        ),
    ] = None,
    stale_after: Annotated[
        str,
        typer.Option(
            "--stale-after", metavar="DURATION", help="Flag a running iteration with no change for this long."
        ),
    ] = "10m",
    catch_up: Annotated[
        bool,
        typer.Option(
            "--catch-up/--no-catch-up",
            help="Keep the views current in this process (--no-catch-up for a read-only role: read them as they are).",
        ),
    ] = True,
) -> None:
    """Serve the live dashboard: running iterations, agents' trends, failures, each with a JSON twin under /api/."""
    import uvicorn  # noqa: PLC0415  # only this command needs the server

    from itertrack.adapters.web.app import create_app  # noqa: PLC0415
    from itertrack.adapters.web.pages import Dashboard  # noqa: PLC0415

    with cli_errors(store):
        stale = parse_duration(stale_after, "--stale-after")
        secret = token if token is not None else load_settings().serve_token
        if secret is not None and not secret.strip():
            secret = None
        if secret is None and not is_loopback(host):
            fail(f"--host {host} is not loopback: set ITERTRACK_SERVE_TOKEN (or --token) so requests must carry it", 2)
        prices = load_price_table()
        tracker = open_tracker(store)
        models = ReadModels(tracker, background=catch_up, catch_up_on_read=catch_up)
        try:
            dashboard = Dashboard(models, prices, stale_after=stale)
            asgi = create_app(dashboard, token=secret)
            # No access log: a first request may carry ?token=, and the gate redirects it away at once.
            config = uvicorn.Config(asgi, host=host, port=port, access_log=False, log_level="warning", lifespan="on")
            server = uvicorn.Server(config)
            shown = f"[{host}]" if ":" in host else host
            logging.getLogger("itertrack").setLevel(logging.WARNING)
            sys.stderr.write(f"itertrack: serving {redact(store)} on http://{shown}:{port}/ (Ctrl-C stops)\n")
            sys.stderr.flush()
            server.run()
        finally:
            models.close()
            tracker.close()
