"""Files the tracker creates (the SQLite store, the spool, lock files) are readable by their owner only."""

from __future__ import annotations

import contextlib
import os

PRIVATE_MODE = 0o600


def create_private(path: str) -> None:
    """Create `path` empty with mode 0600 if it does not exist; an existing file is left as it is.

    SQLite gives its -wal and -shm files the database file's mode, so creating the database this way
    keeps all three private. A path that cannot be created here (no such folder, read-only mount) is
    left for the caller's own open to report, as a typed error.
    """
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        os.close(fd)
