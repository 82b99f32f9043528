"""The dashboard's pure pieces: trends with their confidence, human-readable numbers, filters, the token gate."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import random
from collections.abc import MutableMapping
from decimal import Decimal
from typing import Any

import pytest

from itertrack.adapters.cli.serve import is_loopback
from itertrack.adapters.web.filters import Filters
from itertrack.adapters.web.guard import Guard, cookie_value, host_of
from itertrack.adapters.web.pages import verdict
from itertrack.adapters.web.templating import _script, inline_assets
from itertrack.adapters.web.units import human_duration, human_usd, seconds_unit
from itertrack.domain.model.errors import InvalidInputError
from itertrack.projections.trend import fit_trend, median_window, rolling_median, t95


def test_fit_trend_recovers_a_line_and_its_interval() -> None:
    """Least squares finds slope and intercept; the 95% interval is the textbook one (t with n - 2 df)."""
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    ys = [2.0, 4.1, 5.9, 8.2, 9.9]
    trend = fit_trend(xs, ys)
    assert trend is not None
    assert trend.slope == pytest.approx(1.99)
    assert trend.intercept == pytest.approx(0.05)
    # residual SE of the slope: sqrt(SSE / 3 / 10) with SSE = 0.067, times t(3) = 3.182
    half = 3.182 * math.sqrt(0.067 / 3 / 10)
    assert trend.low == pytest.approx(1.99 - half, rel=1e-3)
    assert trend.high == pytest.approx(1.99 + half, rel=1e-3)
    assert trend.clear


def test_noise_has_no_clear_trend_and_says_so() -> None:
    """Flat noise gives an interval spanning 0: the verdict says "no clear trend" with the interval, not a sign."""
    rng = random.Random(7)
    xs = [float(n) for n in range(200)]
    ys = [100 + rng.gauss(0, 10) for _ in xs]
    trend = fit_trend(xs, ys)
    assert trend is not None
    assert not trend.clear
    assert verdict(trend, "s").startswith("no clear trend (95% CI ")
    falling = fit_trend(xs, [100 - 0.5 * x + rng.gauss(0, 10) for x in xs])
    assert verdict(falling, "s").startswith("falling 0.")
    assert "per iteration" in verdict(falling, "s")


def test_trend_edge_cases() -> None:
    assert fit_trend([], []) is None
    assert fit_trend([3.0, 3.0], [1.0, 2.0]) is None
    two = fit_trend([1.0, 2.0], [1.0, 3.0])
    assert two is not None
    assert two.low is None
    assert verdict(two, "s") == "too few iterations for a trend"
    assert t95(1) == 12.706
    assert t95(1000) == pytest.approx(1.962, abs=0.001)
    with pytest.raises(ValueError, match="differ"):
        fit_trend([1.0], [1.0, 2.0])


def test_rolling_median_is_trailing() -> None:
    assert rolling_median([1, 9, 2, 8, 3], 3) == [1, 5, 2, 8, 3]
    assert median_window(10) == 5
    assert median_window(10_000) == 101
    assert median_window(600) % 2 == 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.85, "850 ms"),
        (12.34, "12.3 s"),
        (252, "4 min 12 s"),
        (3725, "1 h 2 min"),
        (117_532.6, "1 d 8 h 38 min"),
        (-5, "0 ms"),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_usd() -> None:
    assert human_usd(None) == "-"
    assert human_usd(Decimal("1234.567")) == "$1,234.57"
    assert human_usd(Decimal("0.012345")) == "$0.0123"


def test_filters_parse_and_refuse_naming_the_field() -> None:
    f = Filters.parse({"agent": "a", "status": "failed", "since": "2026-01-01T00:00:00Z", "until": ""})
    assert f.as_query() == {"agent": "a", "status": "failed", "since": "2026-01-01T00:00:00.000Z"}
    for query, field in [
        ({"status": "sideways"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ({"agent": "a\x00b"}, "agent"),
    ]:
        with pytest.raises(InvalidInputError, match=field):
            Filters.parse(query)


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "example.org"))  # noqa: S104


def _call(guard: Guard, headers: list[tuple[bytes, bytes]], query: bytes = b"") -> tuple[int, dict[bytes, bytes]]:
    sent: list[MutableMapping[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    guard.app = app
    scope = {"type": "http", "path": "/agents", "query_string": query, "headers": headers, "root_path": ""}
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"])


def test_guard_checks_the_token_on_every_request() -> None:
    """401 without it; 200 with the bearer header or the cookie; ?token= redirects away from itself."""
    guard = Guard(lambda *a: None, "t0ken")  # type: ignore[arg-type]
    assert _call(guard, [])[0] == 401
    assert _call(guard, [(b"authorization", b"Bearer wrong")])[0] == 401
    status, headers = _call(guard, [(b"authorization", b"Bearer t0ken")])
    assert status == 200
    assert b"content-security-policy" in headers
    status, headers = _call(guard, [], b"agent=a&token=t0ken")
    assert status == 303
    assert headers[b"location"] == b"/agents?agent=a"
    assert b"t0ken" not in headers[b"set-cookie"]
    assert b"HttpOnly" in headers[b"set-cookie"]
    cookie = f"other=1; itertrack_session={cookie_value('t0ken')}".encode()
    assert _call(guard, [(b"cookie", cookie)])[0] == 200
    assert _call(guard, [(b"cookie", b"itertrack_session=t0ken")])[0] == 401
    assert _call(Guard(lambda *a: None, None), [])[0] == 200  # type: ignore[arg-type]


def test_guard_on_loopback_answers_only_to_loopback_names() -> None:
    """Bound to loopback, a request naming another host (DNS rebinding) is refused; its own names pass."""
    guard = Guard(lambda *a: None, None, frozenset({"127.0.0.1", "localhost", "::1"}))  # type: ignore[arg-type]
    for host in (b"127.0.0.1:8765", b"localhost:8765", b"[::1]:8765", b"LOCALHOST"):
        assert _call(guard, [(b"host", host)])[0] == 200, host
    for host in (b"evil.example:8765", b"127.0.0.1.evil.example", b""):
        assert _call(guard, [(b"host", host)])[0] == 400, host
    assert host_of("[::1]:80") == "::1"
    assert host_of("::1") == "::1"


def test_token_link_never_redirects_off_the_server() -> None:
    """A `?token=` link whose path starts with `//` still redirects to a path on this server."""
    guard = Guard(lambda *a: None, "t0ken")  # type: ignore[arg-type]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    guard.app = app
    scope = {"type": "http", "path": "//evil.example/x", "query_string": b"token=t0ken", "headers": [], "root_path": ""}
    asyncio.run(guard(scope, receive, send))
    assert dict(sent[0]["headers"])[b"location"] == b"/evil.example/x"


def test_seconds_unit_follows_the_median() -> None:
    """A chart's time unit comes from the median duration: ms under a second, min from 2 min, h from 2 h."""
    assert seconds_unit([]) == ("s", 1.0)
    assert seconds_unit([0.2, 0.5, 40.0]) == ("ms", 0.001)
    assert seconds_unit([3.0, 50.0, 70.0]) == ("s", 1.0)
    assert seconds_unit([200.0]) == ("min", 60.0)
    assert seconds_unit([3 * 3600.0]) == ("h", 3600.0)


def test_inline_assets_name_each_script_by_its_hash() -> None:
    """The self-contained page's policy lets exactly its four inline scripts run (each by its SHA-256) and
    fetches from nowhere; a script that would end its <script> element early is refused."""
    assets = inline_assets()
    for code in (*assets.chart_scripts, assets.app_script):
        digest = base64.b64encode(hashlib.sha256(str(code).encode()).digest()).decode()
        assert f"'sha256-{digest}'" in assets.csp
    assert assets.csp.startswith("default-src 'none'; ")
    assert [name.split("@")[0] for name, _ in assets.licences] == ["vega", "vega-lite", "vega-embed"]
    for bad in ("x = '</SCRIPT>'", "<!-- y"):
        with pytest.raises(ValueError, match="cannot be inlined"):
            _script(bad, "bad.js")
