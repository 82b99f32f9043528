"""Which PostgreSQL failures waiting can fix (an outage: spool, retry later) and which it cannot (a configuration
error: raise at once with the server's reason). The one place that decides it.

A failure is classified by its SQLSTATE (the server's error code) when it has one. A connection that
failed before a session existed has none (libpq only gives the message text), so a refusal at connect
time is classified by the server's message; a failure without any server answer (refused, timed out,
reset, name not resolved) is an outage.
"""

from __future__ import annotations

from enum import Enum

import psycopg
import psycopg_pool


class Failure(Enum):
    """What a store failure means for the call that met it."""

    OUTAGE = "outage"  # waiting can fix it: with a spool the change waits, else `StoreUnavailableError`
    CONFIG = "config"  # waiting cannot fix it: `StoreConfigError` at once, nothing spooled
    PERMISSION = "permission"  # the role lacks a privilege: `StorePermissionError` (a `StoreConfigError`)


# SQLSTATE (a full code, or a two-character class) -> what it means. The longest match wins; codes not
# listed are not store failures at all (a constraint violation, a bug) and are left to the caller.
SQLSTATES: dict[str, tuple[Failure, str]] = {
    "08": (Failure.OUTAGE, "connection exception: the network or the server went away"),
    "40": (Failure.OUTAGE, "transaction rollback (serialization failure, deadlock): worth trying again"),
    "53": (Failure.OUTAGE, "insufficient resources (too many connections, disk full, out of memory)"),
    "55P03": (Failure.OUTAGE, "lock not available: the lock_timeout passed while another session held a lock"),
    "57014": (Failure.OUTAGE, "query canceled: the statement_timeout passed"),
    "57P01": (Failure.OUTAGE, "admin shutdown: the server is stopping"),
    "57P02": (Failure.OUTAGE, "crash shutdown: the server is restarting"),
    "57P03": (Failure.OUTAGE, "cannot connect now: the server is starting up or shutting down"),
    "57P04": (Failure.OUTAGE, "database dropped while connected"),
    "57P05": (Failure.OUTAGE, "idle session timeout"),
    "58": (Failure.OUTAGE, "system error outside PostgreSQL (an I/O error)"),
    # A standby (read-only) answered, as during a failover before the new primary is reachable.
    "25006": (Failure.OUTAGE, "read-only transaction: the server is a standby or read-only for now"),
    "28": (Failure.CONFIG, "invalid authorization (no such role, wrong password, no pg_hba.conf entry)"),
    "3D000": (Failure.CONFIG, "invalid catalog name: the database does not exist"),
    "3F000": (Failure.CONFIG, "invalid schema name: the schema does not exist"),
    "42501": (Failure.PERMISSION, "insufficient privilege: the role may not do this"),
    "42": (Failure.CONFIG, "the store's objects are missing or not what this version expects"),
}

# A connection refused by the server before a session existed carries no SQLSTATE (libpq keeps only
# the text). These parts of the server's (English) refusals say waiting cannot fix it; any other
# refusal, and every failure the server did not answer, counts as an outage.
CONNECT_REFUSALS: tuple[str, ...] = (
    "does not exist",  # database or role (3D000, 28000)
    "authentication failed",  # password, md5, scram, ident, peer, ldap ... (28P01, 28000)
    "no pg_hba.conf entry",  # 28000
    "is not permitted to log in",  # a NOLOGIN role (28000)
    "permission denied for database",  # no CONNECT privilege (42501)
    "no password supplied",  # libpq: the server asked for one (28P01 follows)
    "server does not support ssl",  # sslmode=require against a server without TLS
    "sslmode",  # an sslmode the client or server cannot honour
    "certificate",  # a server or client certificate refused
    "invalid connection option",
)


def sqlstate_failure(sqlstate: str | None) -> Failure | None:
    """What a SQLSTATE means (None: not a store failure, or no code)."""
    if not sqlstate:
        return None
    for key in (sqlstate, sqlstate[:2]):
        if key in SQLSTATES:
            return SQLSTATES[key][0]
    return None


def connect_failure(message: str) -> Failure:
    """What a failed connection attempt means, from libpq's message (it carries no SQLSTATE)."""
    text = message.lower()
    return Failure.CONFIG if any(part in text for part in CONNECT_REFUSALS) else Failure.OUTAGE


def driver_error(error: BaseException) -> psycopg.Error | None:
    """The psycopg error behind `error` (itself, or the first one down its chain of causes)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, psycopg.Error):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def failure_of(error: BaseException) -> Failure | None:
    """What a store failure means: by the psycopg error behind it, its SQLSTATE or its connect message.

    None when no psycopg error is behind it, or its SQLSTATE is not a store failure (see `SQLSTATES`).
    """
    cause = driver_error(error)
    if cause is None:
        return None
    if isinstance(cause, psycopg_pool.PoolTimeout | psycopg_pool.TooManyRequests):
        return Failure.OUTAGE  # no connection could be had in time: the reason stays with the pool
    if cause.sqlstate:
        return sqlstate_failure(cause.sqlstate)
    if isinstance(cause, psycopg.OperationalError):
        return connect_failure(str(cause))
    if isinstance(cause, psycopg.InterfaceError):
        return Failure.OUTAGE  # the connection is closed or broken
    return None


def server_reason(error: BaseException) -> str:
    """The server's (or libpq's) message for a store failure, on one line, with its SQLSTATE when it has one."""
    cause = driver_error(error) or error
    text = " ".join(str(cause).split()) or type(cause).__name__
    sqlstate = getattr(cause, "sqlstate", None)
    return f"{text} (SQLSTATE {sqlstate})" if sqlstate else text
