"""Store selection: turns a parsed store URL into an eventsourcing infrastructure factory, tables checked.

This is the one choke point where driver and connection failures at start-up become typed
`StoreError`s, with the password redacted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import InfrastructureFactory, PersistenceError
from eventsourcing.utils import Environment, get_topic

from itertrack.adapters.private_files import create_private
from itertrack.adapters.settings import Settings
from itertrack.adapters.store.mapper import PydanticMapper
from itertrack.adapters.store.memory import MemoryStoreFactory
from itertrack.adapters.store.postgres import POSTGRES_STATEMENT_TIMEOUT, PostgresRecorder, PostgresStoreFactory
from itertrack.adapters.store.postgres_failures import Failure, failure_of, server_reason
from itertrack.adapters.store.sqlite import SQLiteRecorder, SQLiteStoreFactory
from itertrack.adapters.store.unavailable import CANNOT_WAIT
from itertrack.adapters.store.url import StoreURL
from itertrack.domain.model.errors import (
    StoreConfigError,
    StoreError,
    StoreNotMigratedError,
    StorePermissionError,
    StoreUnavailableError,
)

log = logging.getLogger("itertrack")
_STORE_KEY_PREFIXES = ("POSTGRES_", "SQLITE_", "PERSISTENCE_MODULE", "CREATE_TABLE", "MAPPER_TOPIC")


def _clean_env(env: Environment, settings: dict[str, str]) -> Environment:
    # The store URL is the single source of truth: drop stray POSTGRES_*/SQLITE_* keys,
    # including the application-prefixed ones that eventsourcing would prefer.
    prefix = env.name.upper() + "_" if env.name else ""
    kept = {key: value for key, value in env.items() if not key.removeprefix(prefix).startswith(_STORE_KEY_PREFIXES)}
    return Environment(env.name, {**kept, **settings, "CREATE_TABLE": "n", "MAPPER_TOPIC": get_topic(PydanticMapper)})


@contextmanager
def store_errors(url: StoreURL) -> Iterator[None]:
    """Translate driver and pool failures into typed errors, raised from the original, password redacted.

    A failure waiting cannot fix (postgres_failures.py) is `StoreConfigError` (`StorePermissionError` for
    a missing privilege) with the server's reason; any other is `StoreUnavailableError`.
    """
    try:
        yield
    except StoreError:
        raise
    except (PersistenceError, OSError, sqlite3.Error, psycopg.Error) as e:
        detail = server_reason(e)
        if url.password.get_secret_value():
            detail = detail.replace(url.password.get_secret_value(), "***")
        failure = failure_of(e)
        if failure is Failure.PERMISSION:
            raise StorePermissionError("store", url.redacted, f"the server refused: {detail}; {CANNOT_WAIT}") from e
        if failure is Failure.CONFIG:
            raise StoreConfigError("store", url.redacted, f"the server refused: {detail}; {CANNOT_WAIT}") from e
        raise StoreUnavailableError(f"store {url.redacted} is unavailable: {detail}") from e


@dataclass(frozen=True)
class OpenedFactory:
    """The library's infrastructure factory for a store URL, and whether the store answered when it was opened."""

    factory: InfrastructureFactory[Any]
    url: StoreURL
    started_offline: bool = False


def open_factory(url: StoreURL, settings: Settings, env: Environment) -> OpenedFactory:
    """Build the factory for the store URL, migrating or checking its tables.

    A PostgreSQL store that does not answer, with a spool and `start_offline`, opens offline (its
    tables are checked when it answers); otherwise every failure is a typed `StoreError`.
    """
    if url.scheme == "memory":
        return OpenedFactory(MemoryStoreFactory(_clean_env(env, {})), url)
    if url.scheme == "sqlite":
        return OpenedFactory(_sqlite_factory(url, settings, env), url)
    pg_env = _clean_env(env, _postgres_settings(url, settings))
    with store_errors(url):
        pg_factory = PostgresStoreFactory(pg_env, pool_key=pool_key(pg_env))
    migrate = settings.migrate if settings.migrate is not None else False
    try:
        # One connection first: a refusal waiting cannot fix (no such database or role, authentication)
        # is raised now with the server's reason, and an unreachable store costs one connect_timeout.
        with store_errors(url):
            pg_factory.probe()
        _prepare(pg_factory, url, migrate=migrate, close_on_failure=False)
    except StoreUnavailableError as e:
        if url.spool == "off" or not settings.start_offline:
            pg_factory.close()
            raise
        # A host may start while the store is down: it starts offline, spooling from its first change.
        log.warning("store %s unavailable at start; spooling until it answers: %s", url.redacted, e)
        pg_factory.opened_offline()
        return OpenedFactory(pg_factory, url, started_offline=True)
    except BaseException:
        pg_factory.close()
        raise
    return OpenedFactory(pg_factory, url)


def _sqlite_factory(url: StoreURL, settings: Settings, env: Environment) -> SQLiteStoreFactory:
    path = url.path
    if path == ":memory:":
        # A private shared-cache database, so every pooled connection sees the same data.
        path = f"file:itertrack-{id(env)}?mode=memory&cache=shared"
    migrate = settings.migrate if settings.migrate is not None else True
    if not migrate and path == url.path and not Path(path).exists():
        # Connecting would create an empty file; a reader should not leave one behind.
        raise StoreNotMigratedError(f"store {url.redacted} does not exist (no file {path})")
    if path == url.path:
        create_private(path)  # a new store file is its owner's only (SQLite would make it 0644)
    with store_errors(url):
        factory = SQLiteStoreFactory(
            _clean_env(
                env,
                {
                    "SQLITE_DBNAME": path,
                    "SQLITE_LOCK_TIMEOUT": str(_or_setting(url.lock_timeout, settings.lock_timeout)),
                },
            )
        )
    _prepare(factory, url, migrate=migrate)
    return factory


def _or_setting(from_url: int | None, setting: int) -> int:
    """A bound the URL gives wins over its ITERTRACK_* setting."""
    return setting if from_url is None else from_url


def _postgres_settings(url: StoreURL, settings: Settings) -> dict[str, str]:
    return {
        "POSTGRES_DBNAME": url.dbname,
        "POSTGRES_HOST": url.host,
        "POSTGRES_PORT": str(url.port),
        "POSTGRES_USER": url.user,
        "POSTGRES_PASSWORD": url.password.get_secret_value(),
        "POSTGRES_SCHEMA": url.schema_name,
        "POSTGRES_POOL_SIZE": str(_or_setting(url.pool_size, settings.pool_size)),
        "POSTGRES_MAX_OVERFLOW": str(_or_setting(url.max_overflow, settings.max_overflow)),
        "POSTGRES_CONNECT_TIMEOUT": str(_or_setting(url.connect_timeout, settings.connect_timeout)),
        "POSTGRES_LOCK_TIMEOUT": str(_or_setting(url.lock_timeout, settings.lock_timeout)),
        POSTGRES_STATEMENT_TIMEOUT: str(_or_setting(url.statement_timeout, settings.statement_timeout)),
        # Its database functions bypass the recorder hook that writes iteration records.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    }


# The keys, besides POSTGRES_*, from which the library builds its datastore.
_DATASTORE_KEYS = ("SINGLE_ROW_TRACKING", "ORIGINATOR_ID_TYPE")


def pool_key(env: Environment) -> tuple[tuple[str, str | None], ...]:
    """What makes two trackers' datastores the same: every setting the library builds one from (the store
    URL's server, database, role, password and schema, the pool limits and the timeouts). Trackers of one
    process with the same key share one pool (shared_pools.py); the spool is not part of it."""
    keys = sorted({key for key in env if key.startswith("POSTGRES_")} | set(_DATASTORE_KEYS))
    return tuple((key, env.get(key)) for key in keys)


def _prepare(
    factory: SQLiteStoreFactory | PostgresStoreFactory, url: StoreURL, *, migrate: bool, close_on_failure: bool = True
) -> None:
    """Migrate (when asked) or check that the tables exist; close the factory on any failure (unless told not to)."""
    try:
        with store_errors(url):
            recorder = factory.application_recorder()
            assert isinstance(recorder, SQLiteRecorder | PostgresRecorder)
            if migrate:
                recorder.migrate()
            else:
                _check_migrated(recorder, url)
    except BaseException:
        if close_on_failure:
            factory.close()
        raise


def _check_migrated(recorder: SQLiteRecorder | PostgresRecorder, url: StoreURL) -> None:
    missing = recorder.missing_tables()
    if missing:
        raise StoreNotMigratedError(
            f"store {url.redacted} has no table(s) {', '.join(missing)}: "
            f"run `itertrack migrate --store {url.redacted}` (or pass migrate=True) first"
        )
