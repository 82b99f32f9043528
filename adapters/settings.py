"""Every `ITERTRACK_*` setting, declared once (pydantic-settings); a bad value is an error naming the setting.

Read from the environment, then from the `env=` mapping a tracker is given (which wins). Yes/no
settings take y/n, yes/no, true/false, on/off or 1/0 (pydantic's boolean parsing); an empty value
means the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from itertrack.domain.model.errors import StoreConfigError

PREFIX = "ITERTRACK_"


class Settings(BaseSettings):
    """The tracker's settings (environment variable = `ITERTRACK_` + the field name in upper case)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    # The store URL: memory://, sqlite:///path.db or postgresql://...; None means sqlite:///itertrack.db.
    store: str | None = None
    # Create the store's tables if missing: the default is yes for SQLite and memory, no for PostgreSQL.
    migrate: bool | None = None
    # A PostgreSQL store that does not answer at construction: spool from the first change (y),
    # or raise StoreUnavailableError (n, the CLI's choice).
    start_offline: bool = True
    # Forward the spool from a background thread (n: only `itertrack spool flush` forwards).
    forward: bool = True
    # The folder of per-user state (a PostgreSQL store's default spool file); None means platformdirs'
    # user_state_dir("itertrack"), which is $XDG_STATE_HOME/itertrack or ~/.local/state/itertrack on Linux.
    state_dir: str | None = None
    # Bounds on every store call, in whole seconds; a store URL's option of the same name wins.
    # How long to wait for a PostgreSQL connection (libpq connect_timeout, and the pool's wait).
    connect_timeout: int = Field(default=2, ge=1, le=600)
    # How long a statement may wait for a lock another session holds (PostgreSQL lock_timeout, SQLite's
    # busy timeout); 0 means no limit.
    lock_timeout: int = Field(default=5, ge=0, le=3600)
    # How long a PostgreSQL statement may run (statement_timeout); 0 means no limit.
    statement_timeout: int = Field(default=10, ge=0, le=86400)
    # A price table file of the user's (TOML, or JSON when it ends in .json) used instead of the shipped one.
    prices: str | None = None

    # A PostgreSQL store's connection pool, shared by every tracker of the process on the same store and
    # connection settings: connections kept open, and how many more it may open when all are busy (so at
    # most pool_size + max_overflow per store per process). A store URL's option of the same name wins.
    pool_size: int = Field(default=2, ge=1, le=100)
    max_overflow: int = Field(default=8, ge=0, le=100)

    # Group commit: the most changes, and the most bytes of events (a saving step's record counts 4 KiB), that
    # one store transaction carries when changes arrive from many threads while a commit is in flight.
    # 1 commits every change alone.
    group_commit_changes: int = Field(default=256, ge=1, le=100_000)
    group_commit_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024**3)

    # Followers of the log (`project --follow`, `consume`, the in-process read models) after a store outage:
    # the first wait before trying again, and the longest, in seconds (the waits double between, jittered).
    follow_retry_first: float = Field(default=0.5, ge=0.01, le=3600)
    follow_retry_max: float = Field(default=30.0, ge=0.01, le=86400)

    # Audit replay (domain/service/replay_cache.py): the most entries (decoded events plus remembered states,
    # about 2-3 KiB each) kept in this process so that states as of a version or an instant are not decoded
    # again; 0 keeps none (every such read decodes the events it needs, as before the cache).
    replay_cache_entries: int = Field(default=10_000, ge=0, le=10_000_000)

    # `itertrack serve`: the token every request to the dashboard must carry (required when it is bound to an
    # address other than loopback); `--token` wins.
    serve_token: str | None = None

    # The CLI: how many seconds a wait (catching up the read models, a lock held elsewhere) lasts before its
    # progress bar or spinner appears on a terminal; 0 shows it at once.
    progress_delay: float = Field(default=1.0, ge=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _blank_means_default(cls, values: Any) -> Any:
        # A blank value (from env=, where it masks the environment, or a variable of spaces) is the default.
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        return values


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return PREFIX + field.upper()


def load_settings(overrides: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment, with `overrides` (keys such as `ITERTRACK_MIGRATE`) on top.

    Raises `StoreConfigError` naming the setting and its value when one is malformed.
    """
    given: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        field = key.removeprefix(PREFIX).lower()
        if key.startswith(PREFIX) and field in Settings.model_fields:
            given[field] = value  # a blank one still wins over the environment, and means the default
    try:
        return Settings(**given)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise StoreConfigError(env_name(field), first.get("input"), _expected(field)) from None


def _expected(field: str) -> str:
    """What a setting's value must be, as its error says."""
    info = Settings.model_fields.get(field)
    if info is None or info.annotation in (bool, bool | None):
        return "must be y or n"
    low = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    unit = (
        "connections"
        if field in _COUNTS
        else "bytes"
        if field.endswith("_bytes")
        else "changes"
        if field.endswith("_changes")
        else "entries"
        if field.endswith("_entries")
        else "seconds"
    )
    return f"must be a whole number of {unit} from {low} to {high}"


# The whole-number settings that count connections (the others are in seconds, bytes or changes).
_COUNTS = frozenset({"pool_size", "max_overflow"})
