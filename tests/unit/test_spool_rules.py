"""The two domain decisions behind the spool: when a change waits as a change, and when it is already applied."""

from __future__ import annotations

from uuid import UUID

import pytest

from itertrack.domain.service.spool_rules import already_applied, must_wait_as_change


@pytest.mark.parametrize(
    ("waiting", "as_changes", "cached", "answers", "expected"),
    [
        (0, 0, True, True, False),  # nothing waits, copy here: apply now
        (0, 0, True, False, False),  # store away but copy here: events can be made (and spooled)
        (0, 0, False, True, False),  # no copy, store answers: load it
        (0, 0, False, False, True),  # no copy, store away: version unknown
        (2, 0, False, True, True),  # no copy, store behind waiting events: version unknown
        (2, 0, True, True, False),  # copy here includes the waiting events
        (1, 1, True, True, True),  # behind a waiting change: always (order)
    ],
)
def test_a_change_waits_as_a_change_exactly_when_its_next_version_is_unknown_or_a_change_waits_before_it(
    waiting: int, as_changes: int, cached: bool, answers: bool, expected: bool
) -> None:
    """The rule the spooling writer applies to every change while its spool is in use."""
    assert (
        must_wait_as_change(waiting=waiting, waiting_as_changes=as_changes, cached=cached, store_answers=answers)
        is expected
    )


def test_a_change_is_already_applied_only_when_its_event_id_is_in_the_history() -> None:
    """Idempotence by event id: the same id means the same change, a different id never does."""
    mine, other = UUID(int=1), UUID(int=2)
    assert already_applied([other, mine], mine)
    assert not already_applied([other], mine)
    assert not already_applied([], mine)
