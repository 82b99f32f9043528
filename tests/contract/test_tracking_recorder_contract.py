"""eventsourcing's tracking-recorder contract, run unmodified against both read-model views.

The views are the tracking recorders of follow mode (the library's projection runner records its
position through them), so they must behave as the library's own tracking recorders do.
"""

from __future__ import annotations

from eventsourcing.persistence import TrackingRecorder
from eventsourcing.tests.persistence import TrackingRecorderTestCase

from contract.stores import OnPostgres, open_postgres, open_sqlite
from itertrack.adapters.views.postgres import PostgresViewTables
from itertrack.adapters.views.sqlite import SQLiteViewTables


class TestSQLiteViewTablesTracking(TrackingRecorderTestCase):
    """The library's tracking-recorder contract on the SQLite views, in a real file."""

    def create_recorder(self) -> TrackingRecorder:
        view = SQLiteViewTables(open_sqlite(self).datastore)
        view.migrate_views()
        return view


class TestPostgresViewTablesTracking(OnPostgres, TrackingRecorderTestCase):
    """The library's tracking-recorder contract on the PostgreSQL views, in a fresh schema."""

    def create_recorder(self) -> TrackingRecorder:
        view = PostgresViewTables(open_postgres(self, self.postgres_url).datastore)
        view.migrate_views()
        return view
