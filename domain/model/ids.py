"""The domain's one source of random ids (event ids, and the ids `SystemClock.new_id` gives new iterations).

A seam, as the clock is one: the domain asks `random_id()`; which generator answers is chosen outside it. By
default a version-4 UUID from `os.urandom`. The adapters install their own (adapters/ids.py), which
makes no system call: `os.urandom` releases the GIL, and on an async host's event loop taking it back can wait
out another thread's whole switch interval (5 ms), once per change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from uuid import UUID, SafeUUID

# The bits `UUID(..., version=4)` clears, and those it sets (variant RFC 4122, version 4).
V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
V4_SET = (0x8000 << 48) | (4 << 76)
_UNKNOWN = SafeUUID.unknown


def version_4(bits: int) -> UUID:
    """The version-4 UUID of 128 random bits: what `UUID(int=bits, version=4)` makes, without the constructor's
    checks of arguments it is not given (the same value, type and `is_safe`)."""
    uid = object.__new__(UUID)
    object.__setattr__(uid, "int", (bits & V4_CLEAR) | V4_SET)
    object.__setattr__(uid, "is_safe", _UNKNOWN)
    return uid


def system_random_id() -> UUID:
    """The default source: 16 bytes of `os.urandom` as a version-4 UUID."""
    return version_4(int.from_bytes(os.urandom(16)))


_source: Callable[[], UUID] = system_random_id


def random_id() -> UUID:
    """A new random version-4 UUID from the installed source (`use_random_ids`)."""
    return _source()


def use_random_ids(source: Callable[[], UUID]) -> None:
    """Install the source of `random_id` for this process (the adapters do, when they load). It must return
    version-4 UUIDs that never repeat, across processes too."""
    global _source  # noqa: PLW0603  # the seam's one setting, for the whole process
    _source = source
