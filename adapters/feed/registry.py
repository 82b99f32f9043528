"""Finding a consumer by name: the entry-point group `itertrack.consumers` (see `consumer.ConsumerFactory`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points

from itertrack.adapters.feed.consumer import Consumer
from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.service.tracker import PerformanceTracker

GROUP = "itertrack.consumers"


def registered() -> list[str]:
    """The names of the installed consumers, sorted."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs as a mapping; `InvalidInputError` naming `--option` and the pair for one without `=` or
    with an empty key."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError("--option", pair, "must be KEY=VALUE")
        options[key.strip()] = value
    return options


def load_consumer(name: str, tracker: PerformanceTracker, options: Mapping[str, str]) -> Consumer:
    """The consumer registered as `name`, built by its factory with `(tracker, options)`.

    Raises `InvalidInputError` naming the field for an unknown name, a factory that returns no `Consumer` or one
    with another name, and whatever the factory raises for bad options.
    """
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        known = ", ".join(registered()) or "none"
        raise InvalidInputError("name", name, f"is not a registered consumer (installed: {known})")
    factory = found[0].load()
    consumer = factory(tracker, options)
    if not isinstance(consumer, Consumer):
        raise InvalidInputError("name", name, f"its factory returned a {type(consumer).__name__}, not a Consumer")
    if consumer.name != name:
        raise InvalidInputError("name", name, f"its factory returned the consumer {consumer.name!r}")
    return consumer
