"""eventsourcing's infrastructure-factory contract, run unmodified against the project's three store factories."""

from __future__ import annotations

from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, ProcessRecorder, TrackingRecorder
from eventsourcing.popo import POPOAggregateRecorder, POPOProcessRecorder, POPOTrackingRecorder
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresProcessRecorder, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteProcessRecorder, SQLiteTrackingRecorder
from eventsourcing.tests.persistence import InfrastructureFactoryTestCase
from eventsourcing.utils import Environment

from contract.stores import OnPostgres, memory_env, postgres_env, sqlite_file_env
from itertrack.adapters.store.memory import MemoryRecorder, MemoryStoreFactory
from itertrack.adapters.store.postgres import PostgresRecorder, PostgresStoreFactory
from itertrack.adapters.store.sqlite import SQLiteRecorder, SQLiteStoreFactory


class OtherPOPOTrackingRecorder(POPOTrackingRecorder):
    """A tracking recorder class named by argument or topic."""


class OtherSQLiteTrackingRecorder(SQLiteTrackingRecorder):
    """A tracking recorder class named by argument or topic."""


class OtherPostgresTrackingRecorder(PostgresTrackingRecorder):
    """A tracking recorder class named by argument or topic."""


class TestMemoryStoreFactory(InfrastructureFactoryTestCase[MemoryStoreFactory]):
    """The library's factory contract on the in-memory store's factory."""

    def setUp(self) -> None:
        self.env = Environment("TestCase", memory_env())
        super().setUp()

    def expected_factory_class(self) -> type[MemoryStoreFactory]:
        return MemoryStoreFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return POPOAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return MemoryRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return POPOTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return OtherPOPOTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return POPOProcessRecorder


class TestSQLiteStoreFactory(InfrastructureFactoryTestCase[SQLiteStoreFactory]):
    """The library's factory contract on the SQLite store's factory, on a real file."""

    def setUp(self) -> None:
        self.env = Environment("TestCase", sqlite_file_env(self))
        super().setUp()

    def expected_factory_class(self) -> type[SQLiteStoreFactory]:
        return SQLiteStoreFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return SQLiteAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return SQLiteRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return SQLiteTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return OtherSQLiteTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return SQLiteProcessRecorder


class TestPostgresStoreFactory(OnPostgres, InfrastructureFactoryTestCase[PostgresStoreFactory]):
    """The library's factory contract on the PostgreSQL store's factory, in a fresh schema."""

    def setUp(self) -> None:
        self.env = Environment("TestCase", postgres_env(self, self.postgres_url))
        super().setUp()

    def expected_factory_class(self) -> type[PostgresStoreFactory]:
        return PostgresStoreFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return PostgresAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return PostgresRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return PostgresTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return OtherPostgresTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return PostgresProcessRecorder
