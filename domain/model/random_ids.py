"""Random version-4 UUIDs that never release the GIL.

`os.urandom` releases the GIL around its `getrandom` system call; a thread that releases it must take it back,
and when another thread is running Python (the async tracker's writer thread, a host's worker threads) that can
wait out a whole switch interval (`sys.getswitchinterval()`, 5 ms by default): measured here, `os.urandom(16)`
took 0.7 us at the median but up to 5.1 ms beside one busy thread, on the event loop of an async host once per
tracked change. These ids instead come from a generator of this module alone, `random.Random` (Mersenne Twister,
period 2**19937 - 1) seeded from `os.urandom` when the module loads and again in every child process after a
fork (so two processes never share a sequence, whatever a host does to the `random` module's own generator).

Ids need to be unique, not unguessable: nothing here is a secret or a token.
"""

from __future__ import annotations

import os
import random
from uuid import UUID, SafeUUID

# The bits `UUID(..., version=4)` clears, and those it sets (variant RFC 4122, version 4).
_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)
_UNKNOWN = SafeUUID.unknown

_generator = random.Random()  # seeded from os.urandom (2,496 bytes of state)
_bits = _generator.getrandbits


def _reseed_after_fork() -> None:
    _generator.seed()  # again from os.urandom: a forked child must not repeat its parent's ids


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reseed_after_fork)


def random_uuid4() -> UUID:
    """A random version-4 UUID: the same value type, version, variant and `is_safe` as `uuid.uuid4()`, made
    without a system call (0.2 us; see the module's docstring for why not `os.urandom`). Thread-safe: the
    generator's `getrandbits` runs under the GIL in one C call."""
    uid = object.__new__(UUID)
    object.__setattr__(uid, "int", (_bits(128) & _V4_CLEAR) | _V4_SET)
    object.__setattr__(uid, "is_safe", _UNKNOWN)
    return uid
