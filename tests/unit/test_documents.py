"""The JSON vocabulary: the published schemas are what the models generate, and the shared value types write
instants in UTC with `Z`, whole amounts as integers and dollars as exact strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from documents_support import check_document, vocabulary_problems
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from itertrack.adapters.documents.analytics import MetricsData
from itertrack.adapters.documents.envelope import SCHEMA_DIR, kind_of, names, published_schema, render, schema_text
from itertrack.adapters.documents.iterations import IterationRow, StatusData, StatusFilters
from itertrack.domain.model.phases import Status

EXPECTED = {
    *("demo", "show", "history", "replay", "status", "metrics", "report", "verify", "abandon", "similar"),
    *("spool.status", "spool.flush", "spool.recover", "spool.retry", "spool.discard"),
    *("prices.list", "prices.check", "consumers"),
    *("board", "iteration", "agents", "failures", "health", "error"),
}


def test_every_document_has_its_schema_published_as_the_models_generate_it() -> None:
    """The files in adapters/documents/schemas are exactly `python -m scripts.json_schemas`'s output (rerun it
    after changing a model), one per document, and each is a valid draft 2020-12 schema."""
    assert set(names()) == EXPECTED
    assert {p.name for p in SCHEMA_DIR.glob("*.schema.json")} == {f"{n}.schema.json" for n in EXPECTED}
    for name in names():
        assert kind_of(name).file.read_text(encoding="utf-8") == schema_text(name), name
        Draft202012Validator.check_schema(published_schema(name))


def _row(**changes: object) -> IterationRow:
    moment = datetime(2026, 11, 30, 9, 15, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    fields: dict[str, object] = {
        "iteration_id": UUID("4a1840ab-4c27-4000-8000-000000000001"),
        "agent_id": "agent-\U0001f680",
        "iteration_number": 3,
        "phase": "analysis",
        "status": Status.RUNNING,
        "error": None,
        "failed_in": None,
        "phase_entered_at": moment,
        "started_at": moment,
        "updated_at": moment,
        "finished_at": None,
        "version": 4,
    }
    return IterationRow.model_validate({**fields, **changes})


def test_the_envelope_names_the_document_and_its_version_and_instants_are_utc_with_z() -> None:
    """`render` wraps the payload as {schema, schema_version, data}; a time with an offset is written in UTC."""
    document = render("status", StatusData(filters=StatusFilters(limit=50), iterations=[_row()]))
    assert list(document) == ["schema", "schema_version", "data"]
    assert (document["schema"], document["schema_version"]) == ("itertrack.status", 1)
    row = check_document(document, "status")["iterations"][0]
    assert row["started_at"] == "2026-11-30T07:15:00.250000Z"
    assert row["iteration_id"] == "4a1840ab-4c27-4000-8000-000000000001"
    assert row["agent_id"] == "agent-\U0001f680"


def test_whole_amounts_are_integers_and_counts_refuse_fractions() -> None:
    """A metric total of 12.0 is written 12 (12.5 stays 12.5); a count given 2.5 is refused, naming the field."""
    data = MetricsData.model_validate(
        {
            "filters": {},
            "metrics": [
                {"agent_id": None, "metric": "analysis_tokens", "total": 12.0, "iterations": 2},
                {"agent_id": None, "metric": "analysis_time_ms", "total": 12.5, "iterations": 2.0},
            ],
        }
    )
    rows = render("metrics", data)["data"]["metrics"]
    assert [(r["total"], r["iterations"]) for r in rows] == [(12, 2), (12.5, 2)]
    assert isinstance(rows[0]["total"], int)
    assert isinstance(rows[1]["iterations"], int)
    with pytest.raises(ValidationError, match="iterations"):
        MetricsData.model_validate(
            {"filters": {}, "metrics": [{"agent_id": None, "metric": "m", "total": 1, "iterations": 2.5}]}
        )


def test_dollars_are_exact_strings_and_a_naive_time_is_refused() -> None:
    """Dollars are decimal strings without an exponent; an instant without a zone is refused."""
    row = {
        **_row().model_dump(),
        "tokens": 10,
        "usd": Decimal("1.2E-7"),
        "usd_text": "$0.00000012",
        "time_in_phase_text": "1 s",
        "stale": False,
    }
    board = {
        "position": 1,
        "server_time": datetime.now(UTC),
        "stale_after_s": 600.0,
        "filters": {},
        "running": [row],
        "running_not_shown": 0,
        "completed": [],
        "failed": [],
    }
    assert check_document(render("board", board), "board")["running"][0]["usd"] == "0.00000012"
    with pytest.raises(ValidationError, match="started_at"):
        _row(started_at=datetime(2026, 1, 1))


def test_the_vocabulary_check_finds_a_bare_id_an_offset_and_a_float_count() -> None:
    """The tests' checker flags what the vocabulary forbids (so a passing check means something)."""
    bad = {"id": "x", "started_at": "2026-01-01T00:00:00+00:00", "rows": [{"iterations": 3.0}]}
    assert vocabulary_problems(bad) == [
        ".id: a bare `id`",
        ".started_at: the timestamp '2026-01-01T00:00:00+00:00' is not UTC with Z",
        ".rows[0].iterations: the count 3.0 is a float",
    ]
