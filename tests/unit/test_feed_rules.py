"""The feed's pure rules: consumer names, `--option` pairs, the `log` consumer's line, a delivery's fields."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from itertrack.adapters.feed.consumer import CONSUMER_NAME, Consumer, Delivery
from itertrack.adapters.feed.log_consumer import LogConsumer
from itertrack.adapters.feed.registry import parse_options
from itertrack.adapters.feed.runner import checked_name, one_line
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.iteration import Iteration


def started() -> Iteration.Started:
    iid = uuid4()
    return Iteration.Started(
        originator_id=iid,
        originator_version=1,
        timestamp=datetime(2026, 11, 30, tzinfo=UTC),
        originator_topic="itertrack.domain.model.iteration:Iteration",
        agent_id="agent-1",
        iteration_number=7,
    )


def test_a_delivery_names_its_iteration_version_and_type() -> None:
    event = started()
    delivery = Delivery(event, 12, f"{event.originator_id}:1", "agent-1")
    assert (delivery.iteration_id, delivery.version, delivery.event_type) == (event.originator_id, 1, "Started")


@pytest.mark.parametrize("name", ["log", "relay", "embed.v2", "a-b_c", "x" * 64])
def test_good_consumer_names(name: str) -> None:
    assert CONSUMER_NAME.match(name)


@pytest.mark.parametrize("name", ["", "Log", "1st", "a b", "a/b", "x" * 65, "../etc"])
def test_bad_consumer_names_are_refused_naming_the_field(name: str) -> None:
    class Named(Consumer):
        def handle(self, delivery: Delivery) -> None:
            return

    Named.name = name
    with pytest.raises(InvalidInputError, match="name="):
        checked_name(Named())


def test_options_are_key_value_pairs() -> None:
    assert parse_options(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    for bad in ("novalue", "=1", " =2"):
        with pytest.raises(InvalidInputError, match="--option"):
            parse_options([bad])


def test_the_log_consumer_prints_one_sorted_json_line_per_event_and_takes_no_options() -> None:
    out = io.StringIO()
    consumer = LogConsumer(tracker=None, options={}, out=out)  # type: ignore[arg-type]  # unused by the consumer
    event = started()
    consumer.handle(Delivery(event, 3, f"{event.originator_id}:1", "agent-1"))
    line: dict[str, Any] = json.loads(out.getvalue())
    assert line == {
        "position": 3,
        "key": f"{event.originator_id}:1",
        "type": "Started",
        "iteration_id": str(event.originator_id),
        "version": 1,
        "agent_id": "agent-1",
        "timestamp": "2026-11-30T00:00:00+00:00",
        "payload": {"agent_id": "agent-1", "iteration_number": 7, "event_id": line["payload"]["event_id"]},
    }
    assert out.getvalue().count("\n") == 1
    with pytest.raises(InvalidInputError, match="--option='x'"):
        LogConsumer(tracker=None, options={"x": "1"})  # type: ignore[arg-type]


def test_an_error_is_one_bounded_line() -> None:
    assert one_line(ValueError("a\nb   c")) == "ValueError: a b c"
    assert one_line(RuntimeError()) == "RuntimeError"
    assert len(one_line(ValueError("x" * 5000))) == 1000
