"""The project's stores, opened the way the contract cases need them: one fresh store per test."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from unittest import TestCase

import psycopg
import pytest
from eventsourcing.utils import Environment, get_topic
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from itertrack.adapters.store.memory import MemoryStoreFactory
from itertrack.adapters.store.postgres import PostgresStoreFactory
from itertrack.adapters.store.sqlite import SQLiteStoreFactory


def memory_env() -> dict[str, str]:
    """The environment of the in-memory store."""
    return {"PERSISTENCE_MODULE": get_topic(MemoryStoreFactory)}


def sqlite_file_env(case: TestCase) -> dict[str, str]:
    """The environment of a SQLite store in a real file, in a temporary directory removed after the test."""
    directory = tempfile.mkdtemp(prefix="itertrack-contract-")
    case.addCleanup(shutil.rmtree, directory, True)
    return {
        "PERSISTENCE_MODULE": get_topic(SQLiteStoreFactory),
        "SQLITE_DBNAME": str(Path(directory) / "itertrack.db"),
        "SQLITE_LOCK_TIMEOUT": "5",
    }


def postgres_env(case: TestCase, postgres_url: str) -> dict[str, str]:
    """The environment of a PostgreSQL store in a fresh schema, dropped after the test."""
    schema = f"itertrack_contract_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    case.addCleanup(_drop_schema, postgres_url, schema)
    params = conninfo_to_dict(postgres_url)
    return {
        "PERSISTENCE_MODULE": get_topic(PostgresStoreFactory),
        "POSTGRES_DBNAME": str(params.get("dbname", "")),
        "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_SCHEMA": schema,
        # As the store resolver sets it: the library's database functions bypass our insert.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    }


def _drop_schema(postgres_url: str, schema: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def open_sqlite(case: TestCase) -> SQLiteStoreFactory:
    """A SQLite store factory on a fresh file, closed after the test, once the threads the test started are done."""
    factory = SQLiteStoreFactory(Environment(env=sqlite_file_env(case)))
    case.addCleanup(factory.close)
    case.addCleanup(join_threads_started_since, set(threading.enumerate()))  # cleanups run last-in first
    return factory


def join_threads_started_since(before: set[threading.Thread], timeout: float = 30.0) -> None:
    """Wait for the threads a test started and left running (the library's `test_concurrent_no_conflicts` sets its
    readers' stop event but never joins them): closing the store's connections under a reader still inside
    sqlite3 crashed the interpreter with a segmentation fault in CI, now and then under load."""
    for thread in threading.enumerate():
        if thread not in before and thread is not threading.current_thread() and not thread.daemon:
            thread.join(timeout)


def open_postgres(case: TestCase, postgres_url: str) -> PostgresStoreFactory:
    """A PostgreSQL store factory on a fresh schema, closed (before the schema is dropped) after the test."""
    factory = PostgresStoreFactory(Environment(env=postgres_env(case, postgres_url)))
    case.addCleanup(factory.close)
    return factory


@pytest.mark.postgres
@pytest.mark.usefixtures("contract_postgres")
class OnPostgres:
    """Mixin for cases on the test PostgreSQL: skipped locally and failed under CI when it is unreachable."""

    postgres_url: str
