"""Every error the tracker raises on purpose, under one root: `IterationError`."""

from __future__ import annotations

from typing import Any

_MAX_SHOWN = 120


def shown(value: Any) -> str:
    """Repr of a value, cut short so an error message stays one readable line."""
    try:
        text = repr(value)
    except RecursionError:
        return "<too deeply nested to show>"
    except ValueError:
        # An int past Python's int-to-str limit (sys.set_int_max_str_digits), alone or inside a container.
        return f"<{type(value).__name__} too long to show>"
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    return text


class IterationError(Exception):
    """Root of every error itertrack raises on purpose; catch this to catch them all."""


class InvalidInputError(IterationError, ValueError):
    """Raised when an argument breaks a rule; nothing is written.

    The message names the field and the offending value.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={shown(value)}: {reason}")


class UnknownPhaseError(InvalidInputError):
    """Raised when a phase name is neither built in nor registered by the host."""


class PhaseNameCollisionError(InvalidInputError):
    """Raised when a registered phase's metric names overlap another phase's (built-in or registered), so one
    phase's amounts would be read as the other's; `phase`, `other` and `metric` name both phases and the metric."""

    def __init__(self, phase: str, other: str, metric: str) -> None:
        self.phase = phase
        self.other = other
        self.metric = metric
        super().__init__(
            "phases",
            phase,
            f"its metric {metric!r} is also a metric of phase {other!r}; choose a name whose metrics no other "
            "phase writes",
        )


class InvalidMetricError(InvalidInputError):
    """Raised when a metric name is not snake_case or an amount is not a finite, non-negative number."""


class InvalidIterationIdError(InvalidInputError):
    """Raised when an iteration id is not a UUID (or a string that parses as one)."""


class IterationNotFoundError(IterationError, LookupError):
    """Raised when no iteration has been started under the given id."""

    def __init__(self, iteration_id: Any) -> None:
        self.iteration_id = iteration_id
        super().__init__(f"iteration_id={shown(str(iteration_id))}: no such iteration")


class DuplicateIterationError(IterationError):
    """Raised when an iteration is started under an id that is already taken."""

    def __init__(self, iteration_id: Any) -> None:
        self.iteration_id = iteration_id
        super().__init__(f"iteration_id={shown(str(iteration_id))}: an iteration with this id already exists")


class IterationFinishedError(IterationError):
    """Raised when an iteration that reached a terminal phase (completed, failed) is changed again."""

    def __init__(self, iteration_id: Any, phase: str, attempted: str) -> None:
        self.iteration_id = iteration_id
        self.phase = phase
        super().__init__(
            f"iteration_id={shown(str(iteration_id))}: the iteration is {phase} (terminal); refused: {attempted}"
        )


class RecordAlreadySavedError(IterationError):
    """Raised when the saving step runs a second time for the same iteration."""

    def __init__(self, iteration_id: Any) -> None:
        self.iteration_id = iteration_id
        super().__init__(f"iteration_id={shown(str(iteration_id))}: its iteration record is already saved")


class ConcurrencyError(IterationError):
    """Raised when a change kept losing to concurrent writers for every allowed attempt."""

    def __init__(self, iteration_id: Any, attempts: int) -> None:
        self.iteration_id = iteration_id
        self.attempts = attempts
        super().__init__(
            f"iteration_id={shown(str(iteration_id))}: gave up after {attempts} attempts, "
            "each lost to a concurrent change of the same iteration"
        )


class StoreError(IterationError):
    """Root of the errors about the store itself (configuration, reachability, schema)."""


class StoreConfigError(StoreError, InvalidInputError):
    """Raised when a store URL or store setting is wrong: malformed (the message names the setting), or refused by
    the store's server for a reason waiting cannot fix (no such database or role, authentication failed, a
    missing privilege; the message has the server's reason, never a password). Nothing is spooled for it."""


class StorePermissionError(StoreConfigError):
    """Raised when the store's server refuses the configured role an operation (SQLSTATE 42501), such as a
    read-only role that writes; the message has the server's reason. Nothing was written or spooled."""


class StoreUnavailableError(StoreError):
    """Raised when the store cannot be reached; the message never shows a password.

    Raised as such, the change was certainly not stored (it failed before its commit was sent).
    """


class OutcomeUnknownError(StoreUnavailableError):
    """Raised when the connection failed after a change's commit was sent: it may or may not be stored.

    A retry with the same `change_id=` applies it exactly once (a no-op if it landed); a retry without
    one may apply it twice.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"outcome unknown: the store stopped answering after the change was sent, so it may or may not be "
            f"stored; retry with the same change_id= to apply it exactly once ({reason})"
        )


class ChangeIdReusedError(InvalidInputError):
    """Raised when a `change_id` already applied to the iteration is given with a different change; nothing is
    written. A retry must repeat the change it keys exactly."""


class StoreNotMigratedError(StoreError):
    """Raised when the store's tables do not exist yet and the tracker was not asked to create them."""


class StoreReplacedError(StoreError):
    """Raised when the SQLite store's file was deleted, renamed away or replaced by another file while the
    tracker had it open: nothing is read from or acknowledged into a file the path no longer names.

    Not a `StoreUnavailableError`: waiting does not bring the file back, so nothing is spooled or retried.
    `path` is the file's absolute path, `happened` what was found there, `refused` what the call did not do.
    """

    def __init__(self, path: str, happened: str, refused: str) -> None:
        self.path = path
        self.happened = happened
        self.refused = refused
        super().__init__(
            f"store file {path} {happened} while this tracker had it open; {refused}. "
            "Put the file back at that path, or open a new tracker on whatever file is there now"
        )


class PriceTableError(InvalidInputError):
    """Raised when a price table (the shipped one or `ITERTRACK_PRICES`) breaks a rule; nothing is priced with it.

    `source` names the table (`shipped` or the file's path), `row` the index in its `prices` list (None for a
    table-level field), `model` that row's first model id (None when unknown), `field` the field's path inside
    the row (such as `cache_read` or `tiers[0].input`) and `value` the value found.
    """

    def __init__(
        self, source: str, field: str, value: Any, reason: str, *, row: int | None = None, model: str | None = None
    ) -> None:
        self.source = source
        self.row = row
        self.model = model
        where = f"price table {source}"
        if row is not None:
            where += f", row prices[{row}]" + (f" (model {model!r})" if model is not None else "")
        super().__init__(field, value, reason)
        self.args = (f"{where}: {field}={shown(value)}: {reason}",)

    def __str__(self) -> str:
        return str(self.args[0])
