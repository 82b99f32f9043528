"""Progress on stderr while a command waits: a bar with the events to catch up, or a spinner with the time waited.

rich's `Progress` draws them (the CLI's tables are rich's too). They appear only when stderr is a terminal, only
once the wait has lasted `ITERTRACK_PROGRESS_DELAY` seconds (1 by default: a quick command prints nothing extra),
never with --json, and go when the wait ends (transient). On a terminal whose encoding is not UTF-8 they use ASCII
only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from itertrack.adapters.cli.common import err
from itertrack.adapters.cli.terminal import escape_controls
from itertrack.adapters.settings import load_settings
from itertrack.adapters.store.unavailable import store_unavailable_as_typed_error
from itertrack.adapters.views.keeper import ReadModels
from itertrack.adapters.views.runner import catch_up


def _utf8(console: Console) -> bool:
    return console.encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


@contextmanager
def _shown_after(progress: Progress, enabled: bool, delay: float) -> Iterator[Callable[[], None]]:
    """Start `progress` (its own thread refreshes it) once `delay` seconds have passed; yields `finish()`, which
    takes it away (and keeps it from appearing); the end of the block finishes it too."""
    lock = threading.Lock()
    state = {"started": False, "over": False}

    def start() -> None:
        with lock:
            if not state["over"]:
                progress.start()
                state["started"] = True

    def finish() -> None:
        with lock:
            state["over"] = True
            timer.cancel()
            if state["started"]:
                progress.stop()
                state["started"] = False

    timer = threading.Timer(delay, start)
    timer.daemon = True
    if enabled and delay <= 0:
        start()
    elif enabled:
        timer.start()
    try:
        yield finish
    finally:
        finish()


def _delay(given: float | None) -> float:
    return load_settings().progress_delay if given is None else given


def drawn(as_json: bool = False, console: Console | None = None) -> bool:
    """Whether progress is drawn: on a terminal stderr, and not for --json."""
    return not as_json and (console or err).is_terminal


@contextmanager
def counting(
    description: str,
    total: int,
    *,
    as_json: bool = False,
    console: Console | None = None,
    delay: float | None = None,
) -> Iterator[Callable[[int], None]]:
    """A bar of `total` steps (events to apply) labelled `description`; yields `advance(n)`."""
    console = console or err
    columns: list[ProgressColumn | str] = [
        TextColumn("{task.description}", markup=False),
        BarColumn(),  # rich draws it in ASCII when the console's encoding is not UTF-8
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    progress = Progress(*columns, console=console, transient=True, auto_refresh=True, refresh_per_second=5)
    task = progress.add_task(escape_controls(description), total=max(total, 0))
    with _shown_after(progress, drawn(as_json, console) and total > 0, _delay(delay)):
        yield lambda n: progress.advance(task, n)


@contextmanager
def waiting(
    description: str,
    limit_s: float | None = None,
    *,
    enabled: bool = True,
    console: Console | None = None,
    delay: float | None = None,
) -> Iterator[Callable[[], None]]:
    """A spinner labelled `description` with the time waited (and the most it will wait, `limit_s`); yields
    `done()`, which takes it away at once (before the block ends). Not `enabled`: nothing is drawn."""
    console = console or err
    limit = "" if limit_s is None else f" (gives up after {int(limit_s) // 60} min)"
    progress = Progress(
        SpinnerColumn("dots" if _utf8(console) else "line"),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        refresh_per_second=5,
    )
    # Host text (a consumer's name) is never read as markup or a format, and its control characters are escaped.
    progress.add_task(escape_controls(description + limit), total=None)
    with _shown_after(progress, enabled and drawn(False, console), _delay(delay)) as finish:
        yield finish


@store_unavailable_as_typed_error()
def caught_up(views: ReadModels, *, as_json: bool = False) -> int:
    """Apply the events the read models lack before a command reads them (nothing with --no-catch-up), with a
    bar of how many there are once it takes more than `ITERTRACK_PROGRESS_DELAY`; returns how many were applied.

    Raises `StoreUnavailableError` (typed) when the store cannot be reached, as a read's own catch-up does."""
    if not views.catch_up_on_read:
        return 0
    position = views.position()
    with counting("catching up the read models", position.latest - position.applied, as_json=as_json) as advance:
        return catch_up(views.tracker, views.view, batch_size=views.batch_size, on_batch=advance)
