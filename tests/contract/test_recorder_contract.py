"""eventsourcing's own application-recorder contract, run unmodified against every recorder the project ships.

Only the factory hooks the library's cases ask for are implemented here; their test methods run as written.
"""

from __future__ import annotations

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.tests.persistence import ApplicationRecorderTestCase, NonInterleavingNotificationIDsBaseCase
from eventsourcing.utils import Environment

from contract.stores import OnPostgres, open_postgres, open_sqlite
from itertrack.adapters.store.memory import MemoryRecorder, MemoryStoreFactory
from itertrack.adapters.store.postgres import PostgresRecorder
from itertrack.adapters.store.sqlite import SQLiteRecorder


def memory_recorder() -> MemoryRecorder:
    """The in-memory store's recorder, as its factory makes it."""
    recorder = MemoryStoreFactory(Environment()).application_recorder()
    assert isinstance(recorder, MemoryRecorder)
    return recorder


class SQLiteFileRecorderMixin:
    """Opens the SQLite store (a real file) and migrates it, as a tracker does."""

    def create_recorder(self) -> SQLiteRecorder:
        recorder = open_sqlite(self).application_recorder()  # type: ignore[arg-type]
        assert isinstance(recorder, SQLiteRecorder)
        recorder.migrate()
        return recorder


class PostgresRecorderMixin(OnPostgres):
    """Opens the PostgreSQL store (a fresh schema) and migrates it, as `itertrack migrate` does."""

    def create_recorder(self) -> PostgresRecorder:
        recorder = open_postgres(self, self.postgres_url).application_recorder()  # type: ignore[arg-type]
        assert isinstance(recorder, PostgresRecorder)
        recorder.migrate()
        return recorder


class TestMemoryRecorder(ApplicationRecorderTestCase[ApplicationRecorder]):
    """The library's application-recorder contract on the in-memory store."""

    def create_recorder(self) -> ApplicationRecorder:
        return memory_recorder()

    def test_insert_subscribe(self) -> None:
        """Subscribers receive recorded and newly inserted notifications (the library's optional case)."""
        self.optional_test_insert_subscribe()


class TestSQLiteFileRecorder(SQLiteFileRecorderMixin, ApplicationRecorderTestCase[ApplicationRecorder]):
    """The library's application-recorder contract on the SQLite store, in a real file."""

    def test_insert_subscribe(self) -> None:
        """Our polling subscription yields recorded and newly inserted notifications (the library's optional case)."""
        self.optional_test_insert_subscribe()


class TestPostgresRecorder(PostgresRecorderMixin, ApplicationRecorderTestCase[ApplicationRecorder]):
    """The library's application-recorder contract on the PostgreSQL store, in a fresh schema."""

    def test_insert_subscribe(self) -> None:
        """LISTEN/NOTIFY subscribers receive recorded and newly inserted notifications (library's optional case)."""
        self.optional_test_insert_subscribe()


class TestMemoryNonInterleaving(NonInterleavingNotificationIDsBaseCase):
    """Two concurrent inserts into the in-memory store get non-interleaved notification ids."""

    def create_recorder(self) -> ApplicationRecorder:
        return memory_recorder()


class TestSQLiteFileNonInterleaving(SQLiteFileRecorderMixin, NonInterleavingNotificationIDsBaseCase):
    """Two concurrent inserts into the SQLite file get non-interleaved notification ids."""


class TestPostgresNonInterleaving(PostgresRecorderMixin, NonInterleavingNotificationIDsBaseCase):
    """Two concurrent inserts into PostgreSQL get non-interleaved notification ids."""
