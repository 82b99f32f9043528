"""Fuzzing store URLs, saved records and CLI arguments: success or the typed error, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from itertrack.adapters import cli  # noqa: F401  # registers every command on the app
from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.cli.common import app
from itertrack.adapters.store.url import parse_store_url
from itertrack.domain import InvalidInputError, IterationRecord, PerformanceTracker, StoreConfigError

hostile = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["'; DROP TABLE stored_events; --", "\x00", "\ud800", "x" * 5000, "", "%s%s%s", "{0}"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=8,
)
RECORD_FIELDS = [
    "id",
    "agent_id",
    "iteration_number",
    "strategy",
    "scan_results",
    "backtest_results",
    "analysis",
    "refinements",
    "manual_guidance",
    "iteration_status",
    "created_at",
]


@given(
    url=st.one_of(
        hostile,
        st.builds(
            lambda scheme, rest: f"{scheme}://{rest}",
            st.sampled_from(["sqlite", "postgresql", "postgres", "memory", "mysql", "SQLITE"]),
            hostile,
        ),
        st.builds(lambda pw, q: f"postgresql://u:{pw}@h:5432/db?{q}", st.text(min_size=1, max_size=12), hostile),
    )
)
def test_store_urls_parse_or_are_refused_naming_the_setting(url: str) -> None:
    """Any string is a store URL or a StoreConfigError naming `store`, and a password never shows."""
    try:
        parsed = parse_store_url(url)
    except StoreConfigError as e:
        assert e.field.startswith("store")
        if url.startswith("postgresql://u:") and "@" in url:
            password = url.split("postgresql://u:", 1)[1].split("@", 1)[0]
            if "/" not in password:
                assert f"u:{password}@" not in str(e) or password == "***"  # noqa: S105  # the redaction mark
    else:
        assert parsed.scheme in ("memory", "sqlite", "postgresql")


@pytest.fixture(scope="module")
def memory_tracker() -> Iterator[PerformanceTracker]:
    with PerformanceTracker(store="memory://") as tracker:
        yield tracker


@given(data=st.dictionaries(st.one_of(st.sampled_from(RECORD_FIELDS), hostile), json_values, max_size=8))
def test_saved_records_succeed_or_are_refused_writing_nothing(memory_tracker: PerformanceTracker, data: Any) -> None:
    """A record given as any mapping is saved or refused with `record.<field>`; a refusal appends nothing."""
    before = store_of(memory_tracker).recorder.max_notification_id() or 0
    try:
        memory_tracker.save_iteration(data)
    except InvalidInputError as e:
        assert e.field.startswith("record")
        assert (store_of(memory_tracker).recorder.max_notification_id() or 0) == before


@given(data=st.dictionaries(st.sampled_from(RECORD_FIELDS), json_values, max_size=8))
def test_records_built_directly_are_valid_or_refused_naming_the_field(data: Any) -> None:
    """`IterationRecord(...)` raises the same typed error as the saving step, never pydantic's own."""
    try:
        record = IterationRecord(**data)
    except InvalidInputError as e:
        assert e.field.split(".")[1] in RECORD_FIELDS
        assert e.field in str(e)
    else:
        assert record.agent_id == data["agent_id"]


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = f"sqlite:///{tmp_path_factory.mktemp('cli-fuzz') / 'f.db'}"
    result = CliRunner().invoke(app, ["demo", "--iterations", "3", "--store", store])
    assert result.exit_code == 0, result.output
    return store


commands = st.sampled_from(
    [
        ["show"],
        ["history"],
        ["replay"],
        ["status"],
        ["metrics"],
        ["report"],
        ["verify"],
        ["replay", "--at"],
        ["replay", "--version"],
        ["status", "--status"],
        ["report", "--since"],
        ["metrics", "--agent"],
        ["status", "--phase"],
        ["status", "--since"],
        ["metrics", "--until"],
        ["abandon"],
        ["spool", "status"],
        ["spool", "retry"],
        ["spool", "discard"],
    ]
)


@given(command=commands, args=st.lists(hostile.filter(lambda s: "\x00" not in s), max_size=3))
def test_cli_arguments_never_end_in_a_traceback(cli_store: str, command: list[str], args: list[str]) -> None:
    """Any arguments give exit 0, 1 (one clear line) or 2 (usage), never an untyped exception."""
    result = CliRunner().invoke(app, [*command, *args, "--store", cli_store])
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def test_hostile_text_in_every_field_is_stored_verbatim(tmp_path: Path) -> None:
    """SQL metacharacters and confusables in agent ids, errors, metric amounts' record fields are data."""
    hostile_text = "x'); DROP TABLE agent_iterations; -- \u0430gent %s {0}"
    with PerformanceTracker(store=f"sqlite:///{tmp_path / 'h.db'}") as tracker:
        iid = tracker.start_iteration(hostile_text, 1)
        tracker.save_iteration({"id": iid, "agent_id": hostile_text, "iteration_number": 1, "strategy": hostile_text})
        tracker.update_phase(iid, "failed", error=hostile_text)
        record = tracker.get_record(iid)
        state = tracker.get_iteration(iid)
    assert record is not None
    assert (record.agent_id, record.strategy, state.error) == (hostile_text, hostile_text, hostile_text)
