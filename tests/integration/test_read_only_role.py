"""The read models can be served from a PostgreSQL role that may only read them (the grants in the README)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from documents_support import payload
from psycopg import sql

from itertrack.adapters.bootstrap import spooling_writer
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain import PerformanceTracker, StorePermissionError

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
VIEW_TABLES = (
    "iteration_current",
    "iteration_metrics",
    "agent_metrics",
    "iteration_phase_durations",
    "itertrack_read_models_tracking",
)
pytestmark = pytest.mark.postgres


@pytest.fixture
def reader(pg_store: str, postgres_url: str) -> Iterator[str]:
    """A LOGIN role with USAGE on the schema and SELECT on the read-model tables only; its store URL."""
    role = f"itertrack_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    parts = urlsplit(pg_store)
    yield (
        parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}").geturl().split("&spool=")[0]
        + "&spool=off"
    )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def grant(postgres_url: str, reader_url: str) -> None:
    """The grants the README documents."""
    parts = urlsplit(reader_url)
    role, schema = str(parts.username), parts.query.split("schema=")[1].split("&")[0]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
        for table in VIEW_TABLES:
            conn.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, table), sql.Identifier(role))
            )


def test_a_read_only_role_reads_the_views_and_cannot_write(
    pg_store: str, postgres_url: str, reader: str, open_tracker: Callable[..., PerformanceTracker]
) -> None:
    """With SELECT on the view tables only, status and metrics work (--no-catch-up) and tracking is refused."""
    writer = open_tracker(pg_store)
    iid = writer.start_iteration("agent-1", 1)
    writer.update_metrics(iid, {"analysis_tokens": 42})
    ReadModels(writer, background=False).sync()
    grant(postgres_url, reader)

    status = subprocess.run(
        [ITERTRACK, "status", "--store", reader, "--no-catch-up", "--json"], capture_output=True, text=True, check=False
    )
    assert status.returncode == 0, status.stderr
    assert [row["iteration_id"] for row in payload(status.stdout, "status")["iterations"]] == [str(iid)]
    metrics = subprocess.run(
        [ITERTRACK, "metrics", "--store", reader, "--no-catch-up", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert metrics.returncode == 0, metrics.stderr
    assert payload(metrics.stdout, "metrics")["metrics"][0]["total"] == 42

    with PerformanceTracker(store=reader) as read_only:
        with pytest.raises(StorePermissionError, match="permission denied"):  # the server's refusal, typed
            read_only.start_iteration("agent-2", 1)
        with pytest.raises(StorePermissionError, match="permission denied"):
            ReadModels(read_only, background=False).sync()


def test_a_role_that_may_only_read_gets_a_typed_refusal_and_nothing_is_spooled(
    pg_store: str, postgres_url: str, reader: str, open_tracker: Callable[..., PerformanceTracker]
) -> None:
    """With the spool on (the default), a role with SELECT on every table of the store but no INSERT: each write
    raises StorePermissionError with the server's reason (waiting cannot fix it), and nothing waits in the spool."""
    writer = open_tracker(pg_store)
    iid = writer.start_iteration("agent-1", 1)
    parts = urlsplit(reader)
    role, schema = str(parts.username), parts.query.split("schema=")[1].split("&")[0]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)
            )
        )
    spooled = reader.split("&spool=", maxsplit=1)[0] + "&spool=" + pg_store.split("&spool=", maxsplit=1)[1]
    with PerformanceTracker(store=spooled) as read_only:
        assert read_only.get_iteration(iid).agent_id == "agent-1"  # it may read
        with pytest.raises(StorePermissionError, match="permission denied for table") as started:
            read_only.start_iteration("agent-2", 1)
        with pytest.raises(StorePermissionError, match="permission denied for table") as changed:
            read_only.update_phase(iid, "scan_generation")  # loaded (it may read), refused when appended
        assert "42501" in str(started.value)
        assert "42501" in str(changed.value)
        spool = spooling_writer(read_only)
        assert spool.spool.count() == 0
        assert spool.store_answers()  # a refusal is no outage
    assert [e.originator_version for e in writer.history(iid)] == [1]  # nothing landed either


def test_the_dashboard_serves_a_read_only_role(
    pg_store: str, postgres_url: str, reader: str, open_tracker: Callable[..., PerformanceTracker], tmp_path: Path
) -> None:
    """`itertrack serve --no-catch-up` on a role with the README's grants (views, events, records: SELECT only)
    serves every page, and its live stream sends a change the views do not hold yet (it reads the events)."""
    from dashboard_support import serving  # noqa: PLC0415  # only this test starts the dashboard

    writer = open_tracker(pg_store)
    iid = writer.start_iteration("agent-1", 1)
    writer.update_phase(iid, "failed", error="boom")
    ReadModels(writer, background=False).sync()
    grant(postgres_url, reader)
    parts = urlsplit(reader)
    role, schema = str(parts.username), parts.query.split("schema=")[1].split("&")[0]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for table in ("performancetracker_events", "agent_iterations", "llm_calls"):
            conn.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, table), sql.Identifier(role))
            )
    with serving(reader, tmp_path / "serve.log", "--no-catch-up") as server:
        for path in ("/", "/agents", "/failures", f"/iterations/{iid}", "/api/board", "/healthz"):
            assert server.get(path).status_code == 200, (path, server.get(path).text)
        assert payload(server.get("/api/failures").text, "failures")["groups"][0]["error"] == "boom"
        position = payload(server.get("/api/board").text, "board")["position"]
        later = writer.start_iteration("agent-2", 1)  # the views (kept by no one here) do not hold it
        import httpx  # noqa: PLC0415

        with httpx.stream("GET", f"{server.url}/events", params={"after": position}, timeout=10) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and str(later) in line:
                    break
        assert payload(server.get("/healthz").text, "health")["behind"] > 0
    assert "permission denied" not in (tmp_path / "serve.log").read_text()
