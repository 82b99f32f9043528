"""`itertrack serve`: the live web dashboard (adapters/web), read-only, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import sys
from types import FrameType
from typing import Annotated, Any

import typer

from itertrack.adapters.cli.common import StoreOption, app, cli_errors, fail, open_tracker
from itertrack.adapters.cli.stale import parse_duration
from itertrack.adapters.prices import load_price_table
from itertrack.adapters.settings import load_settings
from itertrack.adapters.store.url import DEFAULT_STORE, redact
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain.model.errors import InvalidInputError

DEFAULT_PORT = 8765
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _server_class() -> type[Any]:
    """uvicorn's server, ending the live streams as it starts to stop (they would hold it open). Made on first
    use: uvicorn is imported only by this command."""
    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config, feed: Any) -> None:
            super().__init__(config)
            self.feed = feed

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            """On SIGINT/SIGTERM: close the feed's streams on the event loop, then stop as uvicorn does."""
            with contextlib.suppress(RuntimeError):  # no loop yet: nothing streams
                asyncio.get_running_loop().call_soon_threadsafe(self.feed.close)
            super().handle_exit(sig, frame)

    return Server


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); `InvalidInputError` naming --host/--port when it cannot be had
    (address in use, not an address of this machine)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        raise InvalidInputError(
            "--host/--port", f"{host}:{port}", f"cannot be listened on: {e.strerror or e}"
        ) from None
    return sock


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
    from itertrack.adapters.web.live import LiveFeed  # noqa: PLC0415
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
            feed = LiveFeed(dashboard)
            # On loopback, requests must name a loopback host: a page elsewhere cannot rebind its name to it.
            hosts = LOOPBACK_NAMES | {host.strip("[]").lower()} if is_loopback(host) else None
            asgi = create_app(dashboard, token=secret, feed=feed, hosts=hosts)
            # No access log: a first request may carry ?token=, and the gate redirects it away at once.
            # Live streams never end by themselves: on Ctrl-C or SIGTERM they are cut after 2 s.
            config = uvicorn.Config(
                asgi,
                host=host,
                port=port,
                access_log=False,
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
            server = _server_class()(config, feed)
            listening = listen(host, port)
            shown = f"[{host}]" if ":" in host else host
            logging.getLogger("itertrack").setLevel(logging.WARNING)
            bound = listening.getsockname()[1]
            sys.stderr.write(f"itertrack: serving {redact(store)} on http://{shown}:{bound}/ (Ctrl-C stops)\n")
            sys.stderr.flush()
            server.run(sockets=[listening])
        finally:
            models.close()
            tracker.close()
