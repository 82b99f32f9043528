"""The built-in example consumer `log`: one JSON line per event on stdout (at-least-once)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import IO, Any, ClassVar

from itertrack.adapters.feed.consumer import Consumer, Delivery
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.service.tracker import PerformanceTracker


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """A delivery as plain JSON data: position, key, type, iteration id, version, agent, timestamp and the
    event's fields (`payload`)."""
    payload = delivery.event.model_dump(mode="json")
    for envelope in ("originator_id", "originator_version", "timestamp", "originator_topic"):
        payload.pop(envelope, None)
    return {
        "position": delivery.position,
        "key": delivery.key,
        "type": delivery.event_type,
        "iteration_id": str(delivery.iteration_id),
        "version": delivery.version,
        "agent_id": delivery.agent_id,
        "timestamp": delivery.event.timestamp.isoformat(),
        "payload": payload,
    }


class LogConsumer(Consumer):
    """Prints each event as one JSON line (`delivery_json`, keys sorted) to stdout, flushed per line.

    At-least-once: after a crash a line may be printed again; its `key` is the same. Takes no options
    (`InvalidInputError` naming the first one given).
    """

    name: ClassVar[str] = "log"

    def __init__(self, tracker: PerformanceTracker, options: Mapping[str, str], out: IO[str] | None = None) -> None:
        for key in options:
            raise InvalidInputError("--option", key, "is not an option of the log consumer (it takes none)")
        self.out = out or sys.stdout

    def handle(self, delivery: Delivery) -> None:
        """Write the event's line."""
        self.out.write(json.dumps(delivery_json(delivery), sort_keys=True, separators=(",", ":")) + "\n")
        self.out.flush()
