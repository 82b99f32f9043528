"""The library internals the adapters depend on (adapters/library_hooks.py) exist in the installed eventsourcing."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import ListenNotifySubscription, StoredEvent
from support import wait_for

import itertrack.adapters
from itertrack.adapters.library_hooks import (
    HOOKS,
    LibraryHook,
    parameters_of,
    subscription_has_buffered,
    subscription_stopped,
)
from itertrack.adapters.store.memory import MemoryRecorder


def _resolve(hook: LibraryHook) -> Any:
    """The hook's attribute on its class, following dotted names; raises AttributeError when absent."""
    head, *rest = hook.name.split(".")
    value = getattr(hook.owner, head)
    for part in rest:
        value = getattr(value, part)
    return value


def _assigned_in_source(owner: type, name: str) -> bool:
    """Whether the class's own source assigns `self.<name>` (an instance attribute, set in a method)."""
    return re.search(rf"self\.{re.escape(name)}\s*(:[^=\n]+)?=[^=]", inspect.getsource(owner)) is not None


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: f"{h.owner.__name__}.{h.name}")
def test_hook_exists_on_its_class(hook: LibraryHook) -> None:
    """Each library internal we depend on is still defined on the class we name for it."""
    if "." in hook.name or hasattr(hook.owner, hook.name):
        _resolve(hook)
    else:
        assert _assigned_in_source(hook.owner, hook.name), f"{hook.owner.__qualname__} no longer sets {hook.name}"


@pytest.mark.parametrize(
    "hook", [h for h in HOOKS if h.parameters is not None], ids=lambda h: f"{h.owner.__name__}.{h.name}"
)
def test_hook_signature_is_unchanged(hook: LibraryHook) -> None:
    """Each library method we override or call still takes the parameters we rely on."""
    assert parameters_of(_resolve(hook)) == hook.parameters


def _adapter_classes() -> list[type]:
    classes = []
    for info in pkgutil.walk_packages(itertrack.adapters.__path__, "itertrack.adapters."):
        module = importlib.import_module(info.name)
        classes += [c for c in vars(module).values() if inspect.isclass(c) and c.__module__ == module.__name__]
    return classes


def test_every_override_of_a_library_private_method_is_listed() -> None:
    """An adapter class that redefines a private method of an eventsourcing base class names it in HOOKS."""
    listed = {(h.owner, h.name) for h in HOOKS}
    unlisted = []
    for cls in _adapter_classes():
        library_bases = [b for b in cls.__mro__[1:] if b.__module__.startswith("eventsourcing.")]
        for name in vars(cls):
            if not name.startswith("_") or name.startswith("__") or name == "_abc_impl":
                continue
            owners = [b for b in library_bases if name in vars(b)]
            if owners and not any((owner, name) in listed for owner in owners):
                unlisted.append(f"{cls.__qualname__}.{name} (on {owners[0].__qualname__})")
    assert not unlisted


def test_subscription_accessors_follow_a_live_subscription() -> None:
    """The buffered and stopped accessors report a library subscription's state as it changes."""
    recorder = MemoryRecorder()
    recorder.insert_events([StoredEvent(uuid4(), 1, "topic", b"{}")])
    with recorder.subscribe(gt=None) as subscription:
        assert isinstance(subscription, ListenNotifySubscription)
        wait_for(lambda: subscription_has_buffered(subscription), 5, "the subscription to fetch the recorded event")
        assert next(subscription).originator_version == 1
        assert not subscription_has_buffered(subscription)
        assert not subscription_stopped(subscription)
        subscription.stop()
        assert subscription_stopped(subscription)
