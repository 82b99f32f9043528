"""Where a PostgreSQL store's spool file lives: one file per store, in the user's state directory.

The default is `<state dir>/spool-<host>_<port>_<db>[_<schema>]-<key>.db`, where the state directory is
`ITERTRACK_STATE_DIR` or platformdirs' `user_state_dir("itertrack")` (`$XDG_STATE_HOME/itertrack`, else
`~/.local/state/itertrack` on Linux), and `<key>` is a short hash of the store without its password
(user, host, port, database, schema: options such as `pool_size` do not move the spool). So every
process of one user on one store finds the same file, whatever its working directory. The store URL's
`?spool=PATH` still names a file of its own choosing.

Releases before this one kept the default spool as `itertrack-spool-<key>.db` in the working directory.
`open_spool` moves the changes still waiting there into the new file (`SQLiteSpool.take_over`), with a
warning, so an upgrade forgets none of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path

import platformdirs

from itertrack.adapters.settings import Settings
from itertrack.adapters.spool.sqlite_file import SQLiteSpool
from itertrack.adapters.store.url import StoreURL
from itertrack.domain.model.errors import StoreUnavailableError

log = logging.getLogger("itertrack")

STATE_DIR_MODE = 0o700
_READABLE = re.compile(r"[^A-Za-z0-9._-]+")


def store_key(url: StoreURL) -> str:
    """10 hex digits naming the store's data: user, host, port, database and schema (never the password)."""
    identity = f"{url.user}@{url.host}:{url.port}/{url.dbname}/{url.schema_name}"
    return hashlib.sha256(identity.encode()).hexdigest()[:10]


def state_dir(settings: Settings) -> Path:
    """The per-user folder of the tracker's local state: `ITERTRACK_STATE_DIR`, else the platform's."""
    if settings.state_dir:
        return Path(settings.state_dir).expanduser()
    return Path(platformdirs.user_state_dir("itertrack"))


def default_spool_path(url: StoreURL, settings: Settings) -> Path:
    """The spool file of a store whose URL names none: `<state dir>/spool-<host>_<port>_<db>[_<schema>]-<key>.db`."""
    parts = [url.host, str(url.port), url.dbname] + ([url.schema_name] if url.schema_name != "public" else [])
    readable = _READABLE.sub("-", "_".join(parts)).strip("-")[:80]
    return state_dir(settings) / f"spool-{readable}-{store_key(url)}.db"


def legacy_spool_path(url: StoreURL) -> Path:
    """Where releases before the state directory kept this store's spool: in the working directory."""
    return Path(f"itertrack-spool-{store_key(url)}.db")


def spool_location(url: StoreURL, settings: Settings) -> Path:
    """The store's spool file: the URL's `?spool=PATH` (relative to the working directory), else the default."""
    return Path(url.spool) if url.spool else default_spool_path(url, settings)


def make_state_dir(folder: Path) -> None:
    """Create the state folder 0700 if it is missing (an existing one keeps its mode).

    A folder that cannot be made (read-only home) is left for the spool's own open to report, as
    `StoreUnavailableError` when a change must be spooled: a tracker that never spools never needs it.
    """
    with contextlib.suppress(OSError):
        folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=STATE_DIR_MODE)
    except OSError:
        return  # it exists (kept as it is), or cannot be made
    with contextlib.suppress(OSError):
        os.chmod(folder, STATE_DIR_MODE)  # mkdir's mode is masked by the umask


def open_spool(url: StoreURL, settings: Settings) -> SQLiteSpool:
    """The store's spool, with what an older release left waiting in the working directory moved into it.

    Old changes that cannot be moved now (the old file locked, a disk full) stay where they are, with a
    warning, and are moved at the next start: the tracker still starts, and nothing is forgotten.
    """
    path = spool_location(url, settings)
    if url.spool:
        return SQLiteSpool(path)
    make_state_dir(path.parent)
    spool = SQLiteSpool(path)
    legacy = legacy_spool_path(url)
    if not legacy.exists() or legacy.resolve() == path.resolve():
        return spool
    try:
        moved = spool.take_over(legacy)
    except StoreUnavailableError as e:
        log.warning(
            "the old default spool %s could not be moved to %s now (the next start tries again): %s", legacy, path, e
        )
        return spool
    if moved:
        log.warning(
            "moved %d waiting change(s) from the old default spool %s to %s; the old file is empty now",
            moved,
            legacy.resolve(),
            path,
        )
    return spool
