"""The SQLite store's file identity: refuse to read or write once the path no longer names the file opened.

SQLite in WAL mode keeps writing to a database file that was deleted or renamed away (its open file
handles still work), so without this check such writes are acknowledged and then lost: the next
process on the path finds no file, or a different one. The file is known by `(st_dev, st_ino)`,
recorded when the store is opened, and the path is `os.stat`-ed again around every transaction
(about 1 us each; see the README's Reliability section for the measured cost per change).

The inode number cannot be reused for another file while this process holds a connection open on the
old one (an unlinked file lives until its last handle closes), and the library's pool keeps its
connections from the first query until the store is closed. No extra handle of our own is held on the
file: closing one would drop the process's POSIX locks that SQLite relies on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore

from itertrack.adapters.library_hooks import sqlite_pool
from itertrack.domain.model.errors import StoreReplacedError


class StoreFileGuard:
    """The identity of one SQLite database file, and the check that its path still names it."""

    def __init__(self, path: str) -> None:
        """Record the identity of the file at `path` (made absolute, as SQLite opens it), if it exists yet.

        A file that does not exist yet is recorded on the first check that finds it (SQLite creates it
        on its first connection).
        """
        self.path = os.path.abspath(path)
        self._identity: tuple[int, int] | None = None
        self._record()

    def _record(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return  # not there yet: SQLite's own open creates it, or reports why it cannot
        self._identity = (st.st_dev, st.st_ino)

    def check(self, when: str) -> None:
        """Raise `StoreReplacedError` unless the path still names the file first opened.

        `when` says what is refused, for the message (for example "the change was not saved").
        """
        identity = self._identity
        if identity is None:
            self._record()
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreReplacedError(self.path, "was deleted or renamed away", when) from None
        except OSError as e:
            raise StoreReplacedError(self.path, f"can no longer be checked ({e.strerror or e})", when) from e
        if (st.st_dev, st.st_ino) != identity:
            raise StoreReplacedError(self.path, "was replaced by another file", when)


class GuardedSQLiteDatastore(SQLiteDatastore):
    """The library's SQLite datastore, with every transaction refused once the store's file is gone or replaced.

    Each transaction checks the path before it starts (so no connection re-creates a deleted file), a
    writing one again before it commits (a failed check rolls it back) and every one after it ends (a
    read's rows, or a commit, came from the file still at the path). In-memory databases have no file
    and are not checked.
    """

    def __init__(
        self,
        db_name: str,
        *,
        lock_timeout: int | None = None,
        single_row_tracking: bool = True,
        originator_id_type: Literal["uuid", "text"] = "uuid",
    ) -> None:
        super().__init__(
            db_name,
            lock_timeout=lock_timeout,
            single_row_tracking=single_row_tracking,
            originator_id_type=originator_id_type,
        )
        memory = sqlite_pool(self).is_sqlite_memory_mode
        self.file_guard: StoreFileGuard | None = None if memory else StoreFileGuard(db_name)

    def check_file(self, when: str) -> None:
        """Raise `StoreReplacedError` if the store's file was deleted, renamed away or replaced."""
        if self.file_guard is not None:
            self.file_guard.check(when)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        """The library's transaction, checked before, before the commit, and after (see the class)."""
        refused = "the change was not saved" if commit else "nothing was read"
        self.check_file(refused)
        with super().transaction(commit=commit) as curs:
            yield curs
            if commit:
                self.check_file(refused)  # raised inside the transaction: it rolls back
        self.check_file("the change was written to the file no longer at that path" if commit else "nothing was read")
