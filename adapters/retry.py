"""How long a change that lost a version race waits before it is re-applied: full jitter, capped."""

from __future__ import annotations

import random
import time

from itertrack.domain.service.store_ports import RetryPause

BACKOFF_BASE_S = 0.002
BACKOFF_CAP_S = 0.25


def retry_delay(attempt: int) -> float:
    """Seconds to wait after losing a version race `attempt` times: uniform in [0, min(cap, base * 2**attempt)].

    Full jitter, because racing processes that wait alike retry in lock-step (the library's own retry
    varies its wait by about 5%, and 2-2.5% of contended commands gave up).
    """
    return random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class JitteredPause(RetryPause):
    """Sleeps `retry_delay(attempt)` seconds."""

    def pause(self, attempt: int) -> None:
        time.sleep(retry_delay(attempt))
