"""Random ids without a system call: the generator the adapters install behind the domain's id seam
(`itertrack.domain.model.ids.use_random_ids`) when they load.

`os.urandom` (the domain's default) releases the GIL around its `getrandom` system call, and a thread that
releases it must take it back: beside another thread running Python (the async tracker's writer thread, a
host's worker threads) that can wait out a whole switch interval (`sys.getswitchinterval()`, 5 ms by default).
Measured on an async host's event loop, once per tracked change: 11,000 ids took 58-80 ms of the loop's time
(up to 4-6 ms for one) with `os.urandom`, 7-8 ms (at most 0.04-0.15 ms) with this generator.

The generator is `random.Random` (Mersenne Twister, period 2**19937 - 1) of this module alone, seeded from
`os.urandom` when the module loads and again in every child process after a fork, so two processes never share
a sequence, whatever a host does to the `random` module's own generator. Ids need to be unique, not unguessable:
nothing here is a secret or a token.
"""

from __future__ import annotations

import os
import random
from uuid import UUID, SafeUUID

from itertrack.domain.model.ids import V4_CLEAR, V4_SET, use_random_ids

_generator = random.Random()  # seeded from os.urandom (2,496 bytes of state)
_bits = _generator.getrandbits
_UNKNOWN = SafeUUID.unknown


def _reseed_after_fork() -> None:
    _generator.seed()  # again from os.urandom: a forked child must not repeat its parent's ids


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reseed_after_fork)


def random_uuid4() -> UUID:
    """A random version-4 UUID, as `uuid.uuid4()` makes, without a system call (0.2 us). Thread-safe: the
    generator's `getrandbits` runs under the GIL in one C call. `ids.version_4`, inlined (once per change)."""
    uid = object.__new__(UUID)
    object.__setattr__(uid, "int", (_bits(128) & V4_CLEAR) | V4_SET)
    object.__setattr__(uid, "is_safe", _UNKNOWN)
    return uid


def install() -> None:
    """Make `random_uuid4` the domain's source of random ids in this process."""
    use_random_ids(random_uuid4)
