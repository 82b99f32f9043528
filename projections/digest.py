"""The text digest of one finished iteration, built from its events: what the embedding consumer embeds.

A digest is a few short lines, for example::

    agent momentum iteration 12 failed in backtest_execution after 41.2 s
    phases: initializing 0.2 s, scan_generation 8.1 s, backtest_execution 32.9 s
    tokens: 18400 (scan_generation 6200, execution_generation 12200)
    error: KeyError: 'close'

The first line says who and how it ended (`completed after T s`, or `failed in PHASE after T s`, PHASE being the
phase the iteration was in when it failed); `phases` lists each non-terminal phase in the order first entered
with the time spent in it over all its stays (`xN` after a phase entered N > 1 times); `tokens` is the sum of
the phases' `<phase>_tokens` metrics with the phases that used any (omitted when none did); `error` is the
failure message, its whitespace collapsed and cut to `MAX_DIGEST_ERROR` characters (only when failed).
Durations are seconds with one decimal, from the events' timestamps. Pure: the same events give the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.iteration import Iteration
from itertrack.domain.model.metrics import Amount, tokens_metric
from itertrack.domain.model.phases import TERMINAL_PHASES, Phase, Status, status_of

# The digest's layout; a change of it changes every vector, so re-embed (`itertrack consume embeddings --reset`).
DIGEST_VERSION = 1
MAX_DIGEST_ERROR = 300


class Digest(BaseModel):
    """The digest of one finished iteration: its identity, how it ended, and the text to embed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration_id: UUID
    agent_id: str
    iteration_number: int
    status: Status
    text: str


def _seconds(ms: float) -> str:
    return f"{ms / 1000.0:.1f} s"


def _ms(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds() * 1000.0)


def _amount(amount: Amount) -> str:
    return str(amount) if isinstance(amount, int) else f"{amount:g}"


def _short_error(error: str) -> str:
    text = " ".join(error.split())
    return text if len(text) <= MAX_DIGEST_ERROR else text[: MAX_DIGEST_ERROR - 1] + "…"


def iteration_digest(events: Sequence[Iteration.Event]) -> Digest:
    """The digest of an iteration from its events (version 1 on, in order, up to and including the event that
    finished it; later events, if any, are ignored).

    Raises `InvalidInputError` (field `events`) when the events do not begin with `Started` or the iteration has
    not finished (no `PhaseChanged` to `completed` or `failed`).
    """
    if not events or not isinstance(events[0], Iteration.Started):
        raise InvalidInputError("events", len(events), "must begin with the iteration's Started event")
    started = events[0]
    spent: dict[str, float] = {}
    visits: dict[str, int] = {Phase.INITIALIZING.value: 1}
    spent[Phase.INITIALIZING.value] = 0.0
    phase, entered = Phase.INITIALIZING.value, started.timestamp
    token_phases: dict[str, None] = {}
    finish: Iteration.PhaseChanged | None = None
    failed_in = phase
    iteration: Iteration | None = None
    for event in events:
        iteration = event.mutate(iteration)
        if isinstance(event, Iteration.LLMCallRecorded):
            token_phases.setdefault(event.phase)
        elif isinstance(event, Iteration.PhaseChanged):
            spent[phase] = spent.get(phase, 0.0) + _ms(event.timestamp, entered)
            if event.phase in TERMINAL_PHASES:
                finish, failed_in = event, phase
                break
            phase, entered = event.phase, event.timestamp
            spent.setdefault(phase, 0.0)
            visits[phase] = visits.get(phase, 0) + 1
    if finish is None or iteration is None:
        raise InvalidInputError("events", len(events), "hold no finish: the iteration has not completed or failed")
    metrics = iteration.metrics
    total_ms = _ms(finish.timestamp, started.timestamp)
    status = status_of(finish.phase)
    if status is Status.FAILED:
        head = f"agent {started.agent_id} iteration {started.iteration_number} failed in {failed_in} after"
    else:
        head = f"agent {started.agent_id} iteration {started.iteration_number} completed after"
    lines = [f"{head} {_seconds(total_ms)}"]
    stays = [
        f"{name} {_seconds(ms)}" + (f" x{visits[name]}" if visits.get(name, 1) > 1 else "")
        for name, ms in spent.items()
    ]
    lines.append("phases: " + ", ".join(stays))
    by_phase = {name: metrics.get(tokens_metric(name), 0) for name in dict.fromkeys([*spent, *token_phases])}
    used = {name: amount for name, amount in by_phase.items() if amount}
    if used:
        parts = ", ".join(f"{name} {_amount(amount)}" for name, amount in used.items())
        lines.append(f"tokens: {_amount(sum(used.values()))} ({parts})")
    if status is Status.FAILED and finish.error is not None:
        lines.append(f"error: {_short_error(finish.error)}")
    return Digest(
        iteration_id=started.originator_id,
        agent_id=started.agent_id,
        iteration_number=started.iteration_number,
        status=status,
        text="\n".join(lines),
    )
