"""A damaged spool file is moved aside (with its -wal and -shm) so the tracker starts on a new one.

"Damaged" means SQLite says the file is not a database (`SQLITE_NOTADB`) or its image is malformed
(`SQLITE_CORRUPT`), or `PRAGMA quick_check` at open finds a fault. Errors that waiting or a person's
fix of the machine can cure (disk full, read-only file system, locked, cannot open, I/O) are not
damage: the file is left where it is and the spool raises `StoreUnavailableError` as before.

A quarantined file is `<spool>.damaged-<UTC time>` in the spool's folder, its companions
`<spool>.damaged-<UTC time>-wal` and `-shm` beside it, so SQLite (and `itertrack spool recover`)
still reads what its WAL held.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel, ConfigDict

from itertrack.adapters.private_files import PRIVATE_MODE

DAMAGED = ".damaged-"
_STAMP = "%Y%m%dT%H%M%SZ"
_COMPANIONS = ("-wal", "-shm")
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class SpoolDamagedError(Exception):
    """The spool file at open is damaged (raised inside the spool only; never reaches a caller)."""


class QuarantinedSpool(BaseModel):
    """A damaged spool file moved aside, as `spool status` shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    # When it was moved aside (UTC), from its name.
    quarantined_at: datetime | None
    # How many waiting changes can still be read from it (0: none, or not even its table).
    readable_rows: int


def quoted(column: str) -> str:
    """A column name as an SQL identifier (double quotes, inner ones doubled)."""
    return '"' + column.replace('"', '""') + '"'


def is_damage(error: sqlite3.Error) -> bool:
    """Whether SQLite's error says the file itself is damaged (not a passing or machine-level condition)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _DAMAGE_CODES


def probe(path: str | Path) -> None:
    """Raise `SpoolDamagedError` or SQLite's own error when the file at `path` is not an intact database.

    Read-only, so it never touches the file's -wal and -shm: SQLite deletes them when a read-write
    connection to a file that is not a database closes, and they may hold what `spool recover` can read.
    `PRAGMA quick_check` reads the whole file (O(size); once per open). An empty file is intact.
    """
    conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        if conn.execute("PRAGMA page_count").fetchone()[0]:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise SpoolDamagedError("quick_check: " + "; ".join(str(row[0]) for row in rows[:3]))
    finally:
        conn.close()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def file_identity(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, or None when there is none: which file a name means now."""
    return _identity(Path(path))


def quarantine(path: str | Path, damaged: tuple[int, int] | None, now: datetime | None = None) -> Path | None:
    """Move the damaged file at `path` and its companions aside; the new name, or None if already moved.

    `damaged` is the (device, inode) of the file found damaged: under a lock beside the spool, the
    file is moved only if `path` still names it, so processes sharing a spool that find it damaged
    at once move it once, and never move the new file one of them started.
    Raises `OSError` when it cannot be moved (the caller reports the damage as it is).
    """
    spool = Path(path)
    with FileLock(f"{spool}.quarantine.lock", mode=PRIVATE_MODE, timeout=30):
        if damaged is None or _identity(spool) != damaged:
            return None
        stamp = (now or datetime.now(UTC)).strftime(_STAMP)
        target = spool.with_name(f"{spool.name}{DAMAGED}{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = spool.with_name(f"{spool.name}{DAMAGED}{stamp}-{n}")
        # Companions first: a WAL left under the old name would be read into the new file started there.
        for suffix in _COMPANIONS:
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{spool}{suffix}", f"{target}{suffix}")
        os.rename(spool, target)
        return target


def quarantined_files(path: str | Path) -> list[Path]:
    """The quarantined files of the spool at `path`, oldest first (their companions not listed)."""
    spool = Path(path)
    if not spool.parent.is_dir():
        return []
    found = [
        p for p in spool.parent.glob(f"{spool.name}{DAMAGED}*") if not p.name.endswith(_COMPANIONS) and p.is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def read_rows(path: str | Path, columns: list[str]) -> Iterator[tuple[object, ...]]:
    """The rows of a (perhaps damaged) spool file's `spooled_changes`, in id order, read-only, until the first
    fault. `columns` are selected by name; a column the file lacks reads as NULL.

    Raises `sqlite3.Error` only when not even the table can be read.
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        present = {row[1] for row in conn.execute("PRAGMA table_info(spooled_changes)")}
        if not present:
            raise sqlite3.DatabaseError("no spooled_changes table")
        chosen = ", ".join(quoted(c) if c in present else "NULL" for c in columns) or "id"
        # Identifiers from the file's own table_info (or NULL); nothing from outside.
        cursor = conn.execute(f"SELECT {chosen} FROM spooled_changes ORDER BY id")  # noqa: S608
        while True:
            try:
                row = cursor.fetchone()
            except sqlite3.DatabaseError:
                return  # what was read so far is all that can be read this way (see `sqlite3 .recover`)
            if row is None:
                return
            yield tuple(row)
    finally:
        conn.close()


def describe(path: Path) -> QuarantinedSpool:
    """A quarantined file: its path, when it was moved aside, and how many of its rows can still be read."""
    stamp = path.name.rsplit(DAMAGED, 1)[-1][: len("20260101T000000Z")]
    try:
        when: datetime | None = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        when = None
    try:
        readable = sum(1 for _ in read_rows(path, []))
    except sqlite3.Error:
        readable = 0
    return QuarantinedSpool(path=str(path), quarantined_at=when, readable_rows=readable)
