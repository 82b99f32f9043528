"""The parts of eventsourcing (9.5.6) the adapters use that are not its public API, named in one place.

`HOOKS` lists each private (underscore) or undocumented name we override, call, read or replace: the
library class it lives on, where we use it and why. tests/contract/test_library_hooks.py fails when the
installed library no longer has one of them, or an overridden method's parameters changed. Private
attributes are read only through the accessors below, so an upgrade that renames one is fixed here.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from eventsourcing.persistence import ListenNotifySubscription, StoredEvent, Subscription
from eventsourcing.popo import POPOAggregateRecorder, POPORecorder
from eventsourcing.postgres import ConnectionPool as PostgresConnectionPool
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from eventsourcing.postgres import PostgresRecorder as PostgresBaseRecorder
from eventsourcing.projection import ApplicationSubscription, BaseProjectionRunner
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnectionPool, SQLiteDatastore

# override: we define a method of that name on a subclass; call: we call it; read/write: we use an
# attribute; replace: we assign over a method of one instance.
Use = Literal["override", "call", "read", "write", "replace"]


@dataclass(frozen=True)
class LibraryHook:
    """One non-public name of the library the adapters depend on."""

    owner: type
    name: str  # attribute or method name; "a.b" for an attribute of an attribute
    uses: tuple[Use, ...]
    where: str  # our module and class that depend on it
    why: str
    # For methods we override or call: the parameters we rely on, as `parameters_of` renders them.
    parameters: tuple[str, ...] | None = None


HOOKS: tuple[LibraryHook, ...] = (
    LibraryHook(
        POPORecorder,
        "_database_lock",
        ("read",),
        "store/memory.py MemoryRecorder",
        "holds the recorder's lock while checking and storing an iteration record with its events",
    ),
    LibraryHook(
        POPOAggregateRecorder,
        "_insert_events",
        ("override",),
        "store/memory.py MemoryRecorder",
        "the one insert path (insert_events calls it): the record is stored only if the events are",
        ("self", "stored_events", "**"),
    ),
    LibraryHook(
        POPOAggregateRecorder,
        "_stored_events",
        ("read", "write"),
        "store/memory.py MemoryRecorder",
        "the events in notification order: appended to by our insert, in one pass (the library's takes two)",
    ),
    LibraryHook(
        POPOAggregateRecorder,
        "_stored_events_index",
        ("read", "write"),
        "store/memory.py MemoryRecorder",
        "str(originator id) -> version -> position in `_stored_events`: the version check and its update",
    ),
    LibraryHook(
        SQLiteApplicationRecorder,
        "_insert_events",
        ("override", "call"),
        "store/sqlite.py SQLiteRecorder",
        "inserts the record on the events' cursor, in their transaction; called on our writer connection",
        ("self", "c", "stored_events", "**"),
    ),
    LibraryHook(
        SQLiteConnectionPool,
        "db_name",
        ("read",),
        "store/sqlite.py SQLiteRecorder, SQLiteStoreFactory, views/lock.py",
        "the file our writer connection, our guarded datastore and the projection lock file are opened on",
    ),
    LibraryHook(
        SQLiteConnectionPool,
        "lock_timeout",
        ("read",),
        "store/sqlite.py SQLiteRecorder, SQLiteStoreFactory",
        "the busy timeout of our writer connection and guarded datastore, as the pool's own connections have it",
    ),
    LibraryHook(
        SQLiteConnectionPool,
        "is_sqlite_memory_mode",
        ("read",),
        "store/sqlite.py SQLiteRecorder, store/sqlite_file.py GuardedSQLiteDatastore",
        "a shared-cache memory database must go through the pool's reader/writer interlock, and has no file to check",
    ),
    LibraryHook(
        PostgresDatastore,
        "pool",
        ("read",),
        "store/postgres.py PostgresRecorder, PostgresStoreFactory, views/runner.py ViewRunner",
        "the psycopg pool: its connect kwargs (migration lock connection, network limits), size, check() and"
        " resize() (room for a read-model runner's LISTEN connection in the pool trackers share)",
    ),
    LibraryHook(
        PostgresDatastore,
        "register_type_adapters",
        ("replace",),
        "store/postgres.py PostgresStoreFactory",
        "replaced per datastore so an unreachable store does not stop a tracker from being built",
        ("self",),
    ),
    LibraryHook(
        PostgresAggregateRecorder,
        "select_events.__wrapped__",
        ("call",),
        "store/postgres.py PostgresRecorder",
        "the select without the library's retry decorator (10 x 0.2 s): an unreachable store is reported at once",
        ("self", "originator_id", "gt=", "lte=", "desc=", "limit="),
    ),
    LibraryHook(
        PostgresBaseRecorder,
        "sql_create_statements",
        ("read",),
        "store/postgres.py PostgresRecorder",
        "the records table's and our append function's CREATEs are appended: create_table() makes them with the"
        " events table",
    ),
    LibraryHook(
        PostgresAggregateRecorder,
        "lock_table_statements",
        ("read",),
        "store/postgres.py PostgresRecorder",
        "`serialised` holds the library's table lock (the one our append function takes) while a retry catches up",
    ),
    LibraryHook(
        PostgresApplicationRecorder,
        "channel_name",
        ("read",),
        "store/postgres.py PostgresRecorder",
        "our append function (store/postgres_append.py) sends the NOTIFY the library's subscriptions LISTEN for",
    ),
    LibraryHook(
        ListenNotifySubscription,
        "_loop_on_pull",
        ("override",),
        "views/subscriptions.py PollingSubscription",
        "the pull thread's loop: ours also wakes every poll interval (SQLite has no notifications)",
        ("self",),
    ),
    LibraryHook(
        ListenNotifySubscription,
        "_pull",
        ("call",),
        "views/subscriptions.py PollingSubscription",
        "fetches the notifications after the last one into the subscription's queue",
        ("self",),
    ),
    LibraryHook(
        ListenNotifySubscription,
        "_has_been_notified",
        ("read",),
        "views/subscriptions.py PollingSubscription",
        "the event the pull loop waits on; writers in this process set it",
    ),
    LibraryHook(
        Subscription,
        "_has_been_stopped",
        ("read",),
        "views/subscriptions.py PollingSubscription",
        "ends the pull loop when the subscription stops",
    ),
    LibraryHook(
        ListenNotifySubscription,
        "_thread_error",
        ("read", "write"),
        "views/subscriptions.py PollingSubscription",
        "a pull failure is handed to the iterating thread, as the library's loop does",
    ),
    LibraryHook(
        ListenNotifySubscription,
        "_notifications",
        ("read",),
        "views/subscriptions.py has_buffered",
        "the page fetched and not yet all yielded: the follow runner cuts a batch when it is used up",
    ),
    LibraryHook(
        ListenNotifySubscription,
        "_notifications_index",
        ("read",),
        "views/subscriptions.py has_buffered",
        "how much of that page was yielded",
    ),
    LibraryHook(
        ListenNotifySubscription,
        "_notifications_queue",
        ("read",),
        "views/subscriptions.py has_buffered",
        "pages fetched but not yet taken",
    ),
    LibraryHook(
        ApplicationSubscription,
        "subscription",
        ("read",),
        "views/subscriptions.py has_buffered",
        "the recorder subscription inside the application subscription the runner iterates",
    ),
    LibraryHook(
        BaseProjectionRunner,
        "_process_events_loop",
        ("override",),
        "views/runner.py ViewRunner",
        "the runner's thread body (a staticmethod): ours applies what the subscription holds as one batch",
        ("subscription", "projection", "is_stopping", "runner"),
    ),
    LibraryHook(
        BaseProjectionRunner,
        "_thread_error",
        ("read", "write"),
        "views/runner.py ViewRunner",
        "an error in our loop is reported to the runner's caller the way the library's loop reports it",
    ),
    LibraryHook(
        BaseProjectionRunner,
        "_subscription",
        ("read",),
        "views/runner.py ViewRunner",
        "the runner's application subscription: wake its polling subscription, set its poll interval",
    ),
)


def parameters_of(function: Callable[..., Any]) -> tuple[str, ...]:
    """A function's parameters as names: `*name` and `**` for the variadic ones, `name=` for keyword-only."""
    rendered = []
    for p in inspect.signature(function).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            rendered.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            rendered.append("**")
        elif p.kind is p.KEYWORD_ONLY:
            rendered.append(f"{p.name}=")
        else:
            rendered.append(p.name)
    return tuple(rendered)


# -- accessors: the only places the adapters read the library's private attributes ------------------


def popo_lock(recorder: POPORecorder) -> threading.RLock:
    """The in-memory recorder's database lock."""
    return recorder._database_lock


def popo_events(recorder: POPOAggregateRecorder) -> tuple[list[StoredEvent], dict[str, dict[int, int]]]:
    """The in-memory recorder's events (notification order) and its index: str(originator id) -> version ->
    position in that list (a defaultdict: reading an absent id adds an empty dict, as the library's reads do)."""
    return recorder._stored_events, recorder._stored_events_index


def sqlite_pool(datastore: SQLiteDatastore) -> SQLiteConnectionPool:
    """The SQLite datastore's connection pool (file name, lock timeout, memory mode)."""
    return datastore.pool


def postgres_pool(datastore: PostgresDatastore) -> PostgresConnectionPool[Any]:
    """The PostgreSQL datastore's psycopg pool."""
    return datastore.pool


def postgres_connect_kwargs(datastore: PostgresDatastore) -> dict[str, Any]:
    """The connect arguments the datastore's pool opens connections with (mutable: changes apply to new ones)."""
    kwargs = datastore.pool.kwargs
    assert isinstance(kwargs, dict)  # what eventsourcing gives its pool
    return kwargs


def unretried_select_events() -> Callable[..., Any]:
    """`PostgresApplicationRecorder.select_events` without the library's retry decorator."""
    return cast(Callable[..., Any], PostgresApplicationRecorder.select_events.__wrapped__)


def subscription_wakeup(subscription: ListenNotifySubscription[Any]) -> threading.Event:
    """The event a subscription's pull loop waits on."""
    return subscription._has_been_notified


def subscription_stopped(subscription: Subscription[Any]) -> bool:
    """Whether the subscription was stopped."""
    return subscription._has_been_stopped


def subscription_pull(subscription: ListenNotifySubscription[Any]) -> None:
    """Fetch the notifications after the last one into the subscription's queue."""
    subscription._pull()


def subscription_failed(subscription: ListenNotifySubscription[Any], error: BaseException) -> None:
    """Hand a pull failure to the iterating thread (the first one only), as the library's loop does."""
    if subscription._thread_error is None:
        subscription._thread_error = error


def subscription_has_buffered(subscription: ListenNotifySubscription[Any]) -> bool:
    """Whether notifications were fetched and not yet yielded."""
    return bool(
        subscription._notifications_index < len(subscription._notifications)
        or not subscription._notifications_queue.empty()
    )


def runner_error(runner: BaseProjectionRunner[Any]) -> BaseException | None:
    """The error the runner's thread stopped with, if any."""
    return runner._thread_error


def set_runner_error(runner: BaseProjectionRunner[Any], error: BaseException | None) -> None:
    """Report (or, with None, take back) the error the runner's thread stopped with."""
    runner._thread_error = error


def runner_subscription(runner: BaseProjectionRunner[Any]) -> ApplicationSubscription[Any]:
    """The application subscription the runner iterates (ours are never the library's DCB kind)."""
    subscription = runner._subscription
    assert isinstance(subscription, ApplicationSubscription)
    return subscription
