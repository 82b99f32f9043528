"""Store URLs: parsing, validation and redaction (a password never leaves this module in clear)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from itertrack.domain.model.errors import StoreConfigError

DEFAULT_STORE = "sqlite:///itertrack.db"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_PG_OPTIONS = {"schema", "pool_size", "max_overflow", "connect_timeout", "lock_timeout", "statement_timeout", "spool"}
_SQLITE_OPTIONS = {"lock_timeout"}


class StoreURL(BaseModel):
    """A parsed store URL; `redacted` is the only form that may be shown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Literal["memory", "sqlite", "postgresql"]
    redacted: str
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = ""
    password: SecretStr = SecretStr("")
    dbname: str = ""
    schema_name: str = "public"
    # The pool's limits; None: not in the URL (ITERTRACK_POOL_SIZE / ITERTRACK_MAX_OVERFLOW apply).
    pool_size: int | None = None
    max_overflow: int | None = None
    # The bounds on store calls, in seconds; None: not in the URL (the ITERTRACK_* setting applies).
    connect_timeout: int | None = None
    # "" means the default: one file per store in the user's state directory (adapters/spool/location.py).
    spool: str = ""
    lock_timeout: int | None = None
    statement_timeout: int | None = None


def redact(url: str) -> str:
    """The URL as it may be shown: any password replaced by `***`, option values shown only for known options.

    The password is taken as everything between the user name and the last `@`, so `/`, `:` or `@`
    inside it cannot move it into the visible host or path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<store URL without a scheme>" if "@" in url or "password" in url.lower() else url
    if scheme.lower().startswith("postgres"):
        userinfo, at, tail = rest.rpartition("@")
        if at:
            user = userinfo.split(":", 1)[0].split("/", 1)[0]
            rest = f"{user}:***@{tail}" if ":" in userinfo or "/" in userinfo else f"{user}@{tail}"
    base, question, query = rest.partition("?")
    if question:
        shown_options = [
            f"{key}={value}" if key in _PG_OPTIONS | _SQLITE_OPTIONS else key
            for key, value in parse_qsl(query, keep_blank_values=True)
        ]
        return f"{scheme}://{base}?{'&'.join(shown_options)}"
    return f"{scheme}://{base}"


def _int_option(name: str, raw: str, shown: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise StoreConfigError(f"store ({name})", raw, f"must be an int, in {shown}") from None
    if not low <= value <= high:
        raise StoreConfigError(f"store ({name})", value, f"must be between {low} and {high}, in {shown}")
    return value


def _seconds_option(options: dict[str, str], name: str, shown: str, low: int, high: int) -> int | None:
    """A whole-number option (a timeout in seconds, a pool limit), or None when the URL does not give it."""
    return _int_option(name, options[name], shown, low, high) if name in options else None


def _spool_option(value: str, shown: str) -> str:
    if "\x00" in value:
        raise StoreConfigError("store (spool)", value, f"must be a file path or 'off', in {shown}")
    return value.strip()


def parse_store_url(url: object) -> StoreURL:  # noqa: C901  # the URL grammar in one place: a validating branch per scheme
    """Parse `memory://`, `sqlite:///relative.db`, `sqlite:////abs.db` or `postgresql://user[:pw]@host:port/db`."""
    if not isinstance(url, str) or not url.strip():
        raise StoreConfigError("store", url, "must be a store URL such as sqlite:///itertrack.db")
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise StoreConfigError("store", shown, f"malformed URL ({e})") from None
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "memory":
        return StoreURL(scheme="memory", redacted=shown)
    if scheme == "sqlite":
        unknown = set(options) - _SQLITE_OPTIONS
        if unknown:
            raise StoreConfigError(
                "store", shown, f"unknown option(s) {sorted(unknown)}; known: {sorted(_SQLITE_OPTIONS)}"
            )
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if parts.netloc or not path:
            raise StoreConfigError("store", shown, "expected sqlite:///relative/path.db or sqlite:////absolute/path.db")
        lock_timeout = _seconds_option(options, "lock_timeout", shown, 0, 3600)
        return StoreURL(scheme="sqlite", redacted=shown, path=path, lock_timeout=lock_timeout)
    if scheme in ("postgresql", "postgres"):
        unknown = set(options) - _PG_OPTIONS
        if unknown:
            raise StoreConfigError("store", shown, f"unknown option(s) {sorted(unknown)}; known: {sorted(_PG_OPTIONS)}")
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname or "/" in dbname:
            raise StoreConfigError("store", shown, "expected postgresql://user[:password]@host:port/database")
        if not parts.username:
            raise StoreConfigError("store", shown, "names no user (postgresql://USER@host:port/database)")
        schema_name = options.get("schema", "public")
        if not IDENTIFIER.fullmatch(schema_name):
            raise StoreConfigError("store (schema)", schema_name, "must be a lower-case SQL identifier")
        return StoreURL(
            scheme="postgresql",
            redacted=shown,
            host=unquote(parts.hostname or "127.0.0.1"),
            port=port or 5432,
            user=unquote(parts.username),
            password=SecretStr(unquote(parts.password or "")),
            dbname=dbname,
            schema_name=schema_name,
            pool_size=_seconds_option(options, "pool_size", shown, 1, 100),
            max_overflow=_seconds_option(options, "max_overflow", shown, 0, 100),
            connect_timeout=_seconds_option(options, "connect_timeout", shown, 1, 600),
            spool=_spool_option(options.get("spool", ""), shown),
            lock_timeout=_seconds_option(options, "lock_timeout", shown, 0, 3600),
            statement_timeout=_seconds_option(options, "statement_timeout", shown, 0, 86400),
        )
    raise StoreConfigError("store", shown, "unknown scheme; use memory://, sqlite:///path.db or postgresql://...")
