"""A failure is always recorded on a real store, however long its error text (issue 12, item 6)."""

from __future__ import annotations

import pytest
from spool_support import Open

from itertrack.domain.model.text import MAX_ERROR_MESSAGE

STDERR = "\n".join(f"error: line {n:05d} of the build log" for n in range(260))  # 9,099 characters


def test_an_8660_character_failure_is_recorded_and_the_iteration_ends_failed(
    sqlite_store: str, open_tracker: Open
) -> None:
    """The failure is stored cut to the limit with its original length; a new process reads it back as failed."""
    stderr = STDERR[:8_660]
    host = open_tracker(sqlite_store)
    iid = host.start_iteration("agent-1", 1)
    host.update_phase(iid, "backtest_execution")
    host.update_phase(iid, "failed", error=stderr)
    host.close()

    state = open_tracker(sqlite_store).get_iteration(iid)
    assert state.phase == "failed"
    assert state.status == "failed"
    assert state.error is not None
    assert len(state.error) == MAX_ERROR_MESSAGE
    assert state.error.startswith(stderr[:3_900])
    assert "8,660 characters" in state.error


def test_track_phase_records_a_failure_whose_message_is_over_long(sqlite_store: str, open_tracker: Open) -> None:
    host = open_tracker(sqlite_store)
    iid = host.start_iteration("agent-1", 2)
    with pytest.raises(RuntimeError), host.track_phase(iid, "scan_execution"):
        raise RuntimeError(STDERR)
    state = open_tracker(sqlite_store).get_iteration(iid)
    assert state.phase == "failed"
    assert state.error is not None
    assert f"{len(STDERR):,} characters" in state.error
