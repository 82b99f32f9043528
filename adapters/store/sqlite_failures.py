"""Which SQLite failures waiting can fix (another process holds the lock, the disk is full) and which it cannot
(the file cannot be opened or is not a database, the tables are missing, the file is read-only): the SQLite
counterpart of postgres_failures.py, with the same `Failure` verdicts.

A failure is classified by SQLite's primary result code (`sqlite3.Error.sqlite_errorcode`, Python 3.11+),
found on the sqlite3 error itself or down the chain of errors the library raised from it.
"""

from __future__ import annotations

import sqlite3

from itertrack.adapters.store.postgres_failures import Failure

# SQLite's primary result code (the low byte of an extended code) -> what it means.
# https://www.sqlite.org/rescode.html
RESULT_CODES: dict[int, tuple[Failure, str]] = {
    5: (Failure.OUTAGE, "SQLITE_BUSY: another connection holds the lock past the busy timeout"),
    6: (Failure.OUTAGE, "SQLITE_LOCKED: a table is locked by another connection of this process"),
    10: (Failure.OUTAGE, "SQLITE_IOERR: an I/O error the operating system reported"),
    13: (Failure.OUTAGE, "SQLITE_FULL: the disk is full"),
    15: (Failure.OUTAGE, "SQLITE_PROTOCOL: a lock protocol race; worth trying again"),
    1: (Failure.CONFIG, "SQLITE_ERROR: an SQL error, such as a missing table or column (the schema)"),
    3: (Failure.PERMISSION, "SQLITE_PERM: access permission denied"),
    8: (Failure.PERMISSION, "SQLITE_READONLY: the database file is read-only"),
    11: (Failure.CONFIG, "SQLITE_CORRUPT: the database file is malformed"),
    14: (Failure.CONFIG, "SQLITE_CANTOPEN: the database file cannot be opened"),
    23: (Failure.PERMISSION, "SQLITE_AUTH: not authorised"),
    26: (Failure.CONFIG, "SQLITE_NOTADB: the file is not a database"),
}


def sqlite_error(error: BaseException) -> sqlite3.Error | None:
    """The sqlite3 error behind `error` (itself, or the first one down its chain of causes)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, sqlite3.Error):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def sqlite_failure(error: BaseException) -> Failure | None:
    """What a SQLite failure means, by its primary result code (None: no sqlite3 error behind it, or a code
    not listed in `RESULT_CODES`)."""
    cause = sqlite_error(error)
    code = getattr(cause, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    found = RESULT_CODES.get(code & 0xFF)
    return None if found is None else found[0]
