"""The filters every dashboard page takes: agent, status and a time range (on when iterations started)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from itertrack.domain.model.errors import InvalidInputError
from itertrack.domain.model.phases import Status
from itertrack.domain.model.text import check_filter_text


@dataclass(frozen=True)
class Filters:
    """`agent` (exact id), `status` (running, completed or failed), and [`since`, `until`) on the start time."""

    agent: str | None = None
    status: Status | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        """The filters of a query string (blank values mean no filter). Raises `InvalidInputError` naming the
        parameter and its value."""
        agent = (query.get("agent") or "").strip() or None
        check_filter_text("agent", agent)
        status_text = (query.get("status") or "").strip() or None
        status = None
        if status_text is not None:
            try:
                status = Status(status_text)
            except ValueError:
                raise InvalidInputError("status", status_text, "must be running, completed or failed") from None
        since = parse_instant(query.get("since"), "since")
        until = parse_instant(query.get("until"), "until")
        if since is not None and until is not None and until <= since:
            raise InvalidInputError("until", query.get("until"), "must be after since")
        return cls(agent, status, since, until)

    def admits(self, *, agent_id: str, status: str, started_at: datetime) -> bool:
        """Whether an iteration passes every filter."""
        return (
            (self.agent is None or agent_id == self.agent)
            and (self.status is None or status == self.status)
            and (self.since is None or started_at >= self.since)
            and (self.until is None or started_at < self.until)
        )

    def as_query(self) -> dict[str, str]:
        """The filters set, as query parameters (times in ISO 8601 UTC with `Z`)."""
        given = {
            "agent": self.agent,
            "status": None if self.status is None else str(self.status),
            "since": None if self.since is None else iso(self.since),
            "until": None if self.until is None else iso(self.until),
        }
        return {k: v for k, v in given.items() if v is not None}

    def query_string(self) -> str:
        """`?agent=...&...` for links that keep the filters ("" when none is set)."""
        query = self.as_query()
        return f"?{urlencode(query)}" if query else ""


def parse_instant(text: str | None, field: str) -> datetime | None:
    """An ISO 8601 time (UTC when it has no offset), None when blank; `InvalidInputError` naming `field`."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInputError(field, text, "is not an ISO 8601 time such as 2026-11-25T14:03:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with `Z`, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
