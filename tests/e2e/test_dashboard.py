"""`itertrack serve` in a real browser (Playwright driving Debian's chromium) against a store built for it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from dashboard_support import ITERTRACK, Server, chromium_path, serving
from documents_support import payload, vocabulary_problems
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright
from playwright.sync_api import Request as PlaywrightRequest
from prometheus_client.parser import text_string_to_metric_families
from support import wait_for

from itertrack.adapters.documents.dashboard import BoardRow
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain import PerformanceTracker

pytestmark = pytest.mark.slow

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "\u05e9\u05dc\u05d5\u05dd-{{7*7}}-\U0001f916",  # Hebrew (right to left), a template, an emoji
]
# Errors may hold what agent ids may not: a right-to-left override that would flip the text after it.
HOSTILE_ERRORS = [*HOSTILE[:2], "\u202eevil\u202c </td><td>x"]
USAGE = {"input_tokens": 1200, "output_tokens": 300}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[str, PerformanceTracker]]:
    """A SQLite store with finished, failed and running iterations of two agents, and a tracker writing to it."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    with PerformanceTracker(store=url) as tracker:
        for n in range(1, 9):
            agent = "alpha" if n % 2 else "beta"
            iid = tracker.start_iteration(agent, n)
            tracker.update_phase(iid, "scan_generation")
            tracker.record_llm_call(iid, "scan_generation", model="claude-sonnet-4-5", usage=USAGE)
            if n % 4 == 0:
                tracker.update_phase(iid, "failed", error=f"backtest timed out #{n % 3}")
            elif n < 7:
                tracker.update_phase(iid, "completed")
        yield url, tracker


@pytest.fixture
def server(store: tuple[str, PerformanceTracker], tmp_path: Path) -> Iterator[Server]:
    with serving(store[0], tmp_path / "serve.log", "--stale-after", "10m") as s:
        yield s


class Watched:
    """A page whose console errors, uncaught exceptions, dialogs and requests are collected."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.outside: list[str] = []

        def console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                self.problems.append(f"{message.type}: {message.text}")

        def dialog(d: Dialog) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        def request(r: PlaywrightRequest) -> None:
            if not r.url.startswith((base, "data:")):
                self.outside.append(r.url)

        page.on("console", console)
        page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        page.on("dialog", dialog)
        page.on("request", request)


@pytest.fixture
def watched(browser: Browser, server: Server) -> Iterator[Watched]:
    context = browser.new_context(base_url=server.url)
    w = Watched(context.new_page(), server.url)
    yield w
    context.close()


def _live(page: Page) -> None:
    page.wait_for_function("document.getElementById('live-status').textContent === 'live'", timeout=10_000)


def test_board_shows_a_write_within_one_second(
    watched: Watched, store: tuple[str, PerformanceTracker], server: Server
) -> None:
    """A change written after the page loaded is on the board within a second, and so is the next one."""
    page, tracker = watched.page, store[1]
    page.goto("/")
    _live(page)
    iid = tracker.start_iteration("gamma", 1)
    page.wait_for_selector(f'tbody[data-status="running"] #it-{iid}', timeout=1000)
    tracker.update_phase(iid, "backtest_execution")
    page.wait_for_function(
        f"document.querySelector('#it-{iid} .phase').textContent === 'backtest_execution'", timeout=1000
    )
    tracker.update_phase(iid, "completed")
    page.wait_for_selector(f'tbody[data-status="completed"] #it-{iid}', timeout=1000)
    assert page.locator(f'tbody[data-status="running"] #it-{iid}').count() == 0
    assert watched.problems == []


def test_time_in_phase_ticks_and_cost_shows(watched: Watched, store: tuple[str, PerformanceTracker]) -> None:
    """A running iteration's time in phase counts up in the browser; tokens and dollars so far are shown."""
    page, tracker = watched.page, store[1]
    iid = tracker.start_iteration("gamma", 2)
    tracker.record_llm_call(iid, "initializing", model="claude-sonnet-4-5", usage=USAGE)
    page.goto("/")
    first = page.locator(f"#it-{iid} .tick").text_content()
    page.wait_for_function(f"document.querySelector('#it-{iid} .tick').textContent !== {first!r}", timeout=3000)
    assert page.locator(f"#it-{iid} .tokens").text_content() == "1,500"
    assert (page.locator(f"#it-{iid} .usd").text_content() or "").startswith("$0.0")


def test_board_survives_a_server_restart_without_missing_a_change(
    watched: Watched, store: tuple[str, PerformanceTracker], server: Server
) -> None:
    """Killed, written to while down, restarted: the browser reconnects with Last-Event-ID and shows the change
    (which neither the page it loaded nor the new server's live feed, started after it, contains)."""
    page, tracker = watched.page, store[1]
    page.goto("/")
    _live(page)
    server.stop()
    page.wait_for_function("document.getElementById('live-status').textContent !== 'live'", timeout=10_000)
    while_down = tracker.start_iteration("delta", 1)
    tracker.update_phase(while_down, "analysis")
    server.start()
    page.wait_for_function(
        f"(document.querySelector('#it-{while_down} .phase') || {{}}).textContent === 'analysis'", timeout=15_000
    )
    after = tracker.start_iteration("delta", 2)
    page.wait_for_selector(f"#it-{after}", timeout=1000)
    # The killed stream and the refused reconnects while it was down are logged as network errors; nothing else.
    killed = ("ERR_CONNECTION_REFUSED", "ERR_INCOMPLETE_CHUNKED_ENCODING")
    assert [p for p in watched.problems if not any(k in p for k in killed)] == []


def test_pages_render_with_charts_and_no_console_errors(
    watched: Watched, store: tuple[str, PerformanceTracker], server: Server
) -> None:
    """Every page renders, its charts draw (SVG from the vendored Vega), nothing is fetched from elsewhere and
    the console stays clean; every page has its JSON twin."""
    page = watched.page
    board = payload(server.get("/api/board").text, "board")
    failed = board["failed"][0]["iteration_id"]
    done = board["completed"][0]["iteration_id"]
    for path, charts in [
        ("/", 0),
        ("/agents", 4),
        ("/agents?agent=alpha", 4),
        ("/failures", 1),
        (f"/iterations/{failed}", 1),
        (f"/iterations/{done}?version=2", 1),
    ]:
        page.goto(path)
        if charts:
            page.wait_for_function(f"document.querySelectorAll('.chart svg').length >= {charts}", timeout=10_000)
        assert page.locator("h1").count() == 1
    api = {p: server.get(p) for p in ("/api/agents", "/api/failures", f"/api/iterations/{failed}", "/healthz")}
    assert all(r.status_code == 200 for r in api.values())
    assert (
        payload(api[f"/api/iterations/{failed}"].text, "iteration")["iteration"]["error"] == board["failed"][0]["error"]
    )
    assert payload(api["/api/failures"].text, "failures")["failed"] == 2
    assert payload(api["/api/agents"].text, "agents")["agents"]
    assert payload(api["/healthz"].text, "health")["ok"] is True
    assert watched.problems == []
    assert watched.outside == []


def test_replay_shows_the_state_as_of_an_event(
    watched: Watched, store: tuple[str, PerformanceTracker], server: Server
) -> None:
    """The iteration page's replay link shows the state as of that event: a failed iteration was running then."""
    page, tracker = watched.page, store[1]
    iid = tracker.start_iteration("eps", 1)
    tracker.update_phase(iid, "analysis")
    tracker.update_phase(iid, "failed", error="boom")
    page.goto(f"/iterations/{iid}")
    assert page.locator("#iteration-error").text_content() == "boom"
    page.click("a[href$='?version=2']")
    page.wait_for_selector(".replay")
    assert "version 2 of 3" in (page.locator(".replay").text_content() or "")
    assert page.locator("#iteration-error").count() == 0
    second = tracker.history(iid)[1].timestamp.isoformat()
    as_of = payload(
        httpx.get(f"{server.url}/api/iterations/{iid}", params={"at": second}, timeout=10).text, "iteration"
    )
    assert (as_of["version"], as_of["iteration"]["phase"], as_of["iteration"]["status"]) == (2, "analysis", "running")
    bad = httpx.get(f"{server.url}/api/iterations/{iid}", params={"at": "noon"}, timeout=10)
    assert bad.status_code == 400
    assert payload(bad.text, "error")["error"].startswith("at=")


def test_a_running_iteration_without_changes_is_flagged_stale(browser: Browser, tmp_path: Path) -> None:
    """With --stale-after 2s, a running iteration is flagged once it has had no change for 2 s, and the flag
    goes when a change comes."""
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    with PerformanceTracker(store=url) as tracker, serving(url, tmp_path / "serve.log", "--stale-after", "2s") as s:
        iid = tracker.start_iteration("idle", 1)
        context = browser.new_context(base_url=s.url)
        page = context.new_page()
        page.goto("/")
        _live(page)
        flag = f"#it-{iid} .stale"
        page.wait_for_selector(flag, state="visible", timeout=5000)
        tracker.update_phase(iid, "analysis")
        page.wait_for_selector(flag, state="hidden", timeout=1000)
        context.close()


def test_hostile_strings_stay_text(browser: Browser, tmp_path: Path) -> None:
    """Agent ids and errors that look like markup or flip text direction are shown as the very text stored,
    on every page and through the live stream; no script of theirs runs."""
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    with PerformanceTracker(store=url) as tracker, serving(url, tmp_path / "serve.log") as server:
        ids = {}
        errors = dict(zip(HOSTILE, HOSTILE_ERRORS, strict=True))
        for n, text in enumerate(HOSTILE, start=1):
            iid = tracker.start_iteration(text, n)
            tracker.update_phase(iid, "failed", error=errors[text])
            ids[text] = iid
        context = browser.new_context(base_url=server.url)
        w = Watched(context.new_page(), server.url)
        page = w.page
        page.goto("/")
        _live(page)
        live = {}
        for n, text in enumerate(HOSTILE, start=10):
            live[text] = tracker.start_iteration(text, n)
        for text in HOSTILE:
            page.wait_for_selector(f"#it-{live[text]}", timeout=2000)
            for iid in (ids[text], live[text]):
                assert page.locator(f"#it-{iid} .agent").text_content() == text
            assert page.locator(f"#it-{ids[text]} .error-text").text_content() == errors[text]
        for path in ["/failures", "/agents", *(f"/iterations/{iid}" for iid in ids.values())]:
            page.goto(path)
            page.wait_for_load_state("load")
        for text, iid in ids.items():
            page.goto(f"/iterations/{iid}")
            assert page.locator(".facts .agent").text_content() == text
            assert page.locator("#iteration-error").text_content() == errors[text]
        page.goto("/failures")
        assert sorted(page.locator(".failures .error-text").all_text_contents()) == sorted(HOSTILE_ERRORS)
        page.goto("/agents?agent=" + quote(HOSTILE[0]))
        page.wait_for_load_state("load")
        assert w.dialogs == []
        assert page.locator("img[src=x]").count() == 0
        assert w.problems == []
        context.close()


def test_filters_change_what_is_shown(watched: Watched, store: tuple[str, PerformanceTracker], server: Server) -> None:
    """Agent, status and time filters narrow the board (live updates too), the failures and the agents."""
    page, tracker = watched.page, store[1]
    page.goto("/?agent=alpha")
    _live(page)
    agents = {a.strip() for a in page.locator("#board .agent").all_text_contents()}
    assert agents == {"alpha"}
    other = tracker.start_iteration("beta", 100)
    mine = tracker.start_iteration("alpha", 100)
    page.wait_for_selector(f"#it-{mine}", timeout=1000)
    assert page.locator(f"#it-{other}").count() == 0
    page.goto("/?status=failed")
    assert page.locator('tbody[data-status="running"] tr').count() == 0
    assert page.locator('tbody[data-status="failed"] tr').count() == 2
    page.goto("/failures?agent=alpha")
    assert page.locator(".failures tbody tr").count() == 0
    page.goto("/failures?agent=beta")
    assert page.locator(".failures tbody tr").count() == 2
    future = "2999-01-01T00:00:00Z"
    board = payload(server.get("/api/board", params={"since": future}).text, "board")
    assert board["running"] == board["completed"] == board["failed"] == []
    assert payload(server.get("/api/agents", params={"until": "2000-01-01T00:00:00Z"}).text, "agents")["agents"] == []
    beta = payload(server.get("/api/agents", params={"agent": "beta"}).text, "agents")
    assert [a["agent_id"] for a in beta["agents"]] == ["beta"]
    bad = server.get("/api/board", params={"status": "sideways"})
    assert bad.status_code == 400
    assert "status" in payload(bad.text, "error")["error"]
    page.goto("/?since=yesterday")
    assert "since" in (page.locator(".error-message").text_content() or "")
    assert [p for p in watched.problems if "400" not in p] == []


def _everything(response: Any) -> str:
    return str(response.text) + "".join(f"{k}: {v}\n" for k, v in response.headers.items())


def test_token_is_required_off_loopback(store: tuple[str, PerformanceTracker], tmp_path: Path) -> None:
    """Bound to every address, the dashboard answers 401 without the token and 200 with it (header, or the
    cookie a ?token= link sets), and the token appears in no response and no log line; without a token it
    refuses to start."""

    url = store[0]
    refused = subprocess.run(
        [ITERTRACK, "serve", "--store", url, "--host", "0.0.0.0", "--port", "0"],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert refused.returncode == 2
    assert "ITERTRACK_SERVE_TOKEN" in refused.stderr
    secret = "s3cret-Token-" + str(time.time_ns())
    log = tmp_path / "serve.log"
    server = Server(url, log, host="0.0.0.0", env={"ITERTRACK_SERVE_TOKEN": secret})  # noqa: S104
    server.headers = {"Authorization": f"Bearer {secret}"}
    server.start()
    try:
        seen = []
        for path in ("/", "/api/board", "/healthz", "/agents", "/events", "/static/app.js"):
            plain = httpx.get(server.url + path, timeout=10)
            assert plain.status_code == 401, path
            seen.append(_everything(plain))
        wrong = httpx.get(server.url + "/", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        ok = server.get("/api/board")
        assert ok.status_code == 200
        seen.append(_everything(ok))
        link = httpx.get(server.url + "/agents", params={"token": secret, "agent": "alpha"}, timeout=10)
        assert link.status_code == 303
        assert link.headers["location"] == "/agents?agent=alpha"
        assert "HttpOnly" in link.headers["set-cookie"]
        seen.append(_everything(link))
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.cookies = link.cookies
            page = client.get("/agents?agent=alpha")
            assert page.status_code == 200
            seen.append(_everything(page))
        assert all(secret not in text for text in seen)
    finally:
        server.stop()
    assert secret not in log.read_text()


def _iterations_sent(server: Server, headers: dict[str, str], after: int, count: int) -> list[tuple[int, str]]:
    """The (id, iteration_id) of the first `count` iteration messages /events sends."""
    sent: list[tuple[int, str]] = []
    event_id = 0
    with httpx.stream("GET", f"{server.url}/events", params={"after": after}, headers=headers, timeout=10) as r:
        for line in r.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: {"):
                row = json.loads(line[6:])
                assert vocabulary_problems(row) == []
                sent.append((event_id, BoardRow.model_validate(row).model_dump(mode="json")["iteration_id"]))
                if len(sent) == count:
                    break
    return sent


def test_last_event_id_resumes_after_that_position(store: tuple[str, PerformanceTracker], server: Server) -> None:
    """A reconnect's Last-Event-ID wins over the page's ?after=: every iteration changed after that position is
    sent again (from the server's memory while it holds the range), in log order, ids being log positions."""
    tracker = store[1]
    before = payload(server.get("/healthz").text, "health")["log_position"]
    written = [tracker.start_iteration("resume", n) for n in range(1, 4)]
    wait_for(
        lambda: payload(server.get("/healthz").text, "health")["live_position"] > before + 2,
        5,
        "the feed to see the writes",
    )
    latest = payload(server.get("/healthz").text, "health")["log_position"]
    sent = _iterations_sent(server, {"Last-Event-ID": str(before)}, latest, 3)
    assert [iid for _, iid in sent] == [str(i) for i in written]
    assert [pos for pos, _ in sent] == sorted(pos for pos, _ in sent)
    assert all(before < pos <= latest for pos, _ in sent)
    bad = httpx.get(f"{server.url}/events", headers={"Last-Event-ID": "x"}, timeout=10)
    assert bad.status_code == 400


def test_serve_refuses_bad_options_in_one_line(server: Server) -> None:
    """A bad --stale-after, or a port already taken, is one line naming the option, exit 2, no traceback."""
    for args, named in (
        (["--stale-after", "soon"], "--stale-after='soon'"),
        (["--port", str(server.port)], "--host/--port='127.0.0.1:"),
    ):
        done = subprocess.run(
            [ITERTRACK, "serve", "--store", server.store, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"itertrack: error: {named}"), done.stderr
        assert "Traceback" not in done.stderr


def test_a_stopping_server_ends_its_live_streams(server: Server) -> None:
    """SIGTERM with a browser's stream open: the stream ends and the server exits at once (uvicorn would wait for
    the stream forever)."""
    assert server.process is not None
    with httpx.stream("GET", f"{server.url}/events", timeout=10) as events:
        lines = events.iter_lines()
        assert next(lines).startswith("retry:")
        server.process.terminate()
        started = time.monotonic()
        server.process.wait(timeout=10)
        assert time.monotonic() - started < 2
        rest = list(lines)  # ends: the server closed the stream properly
    assert all(not line.startswith("event: iteration") for line in rest)


def test_on_loopback_it_answers_only_to_its_own_names(server: Server) -> None:
    """A page on another site that rebinds its DNS name to 127.0.0.1 cannot read the board: its Host is refused."""
    assert server.get("/api/board", headers={"Host": "evil.example"}).status_code == 400
    assert server.get("/api/board", headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_metrics_serves_the_read_models_for_prometheus(store: tuple[str, PerformanceTracker], server: Server) -> None:
    """`/metrics` on the dashboard is the same collector as `itertrack metrics-server`: it parses, and its iteration
    counts are the read models' (every iteration of the store, by status)."""
    tracker = store[1]
    answer = server.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    counts = {
        (s.labels["agent"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(answer.text)
        if family.name == "itertrack_iterations"
        for s in family.samples
    }
    with ReadModels(tracker, background=False) as views:
        rows = views.iterations(limit=1_000_000)
    expected: dict[tuple[str, str], float] = {}
    for row in rows:
        expected[(row.agent_id, row.status.value)] = expected.get((row.agent_id, row.status.value), 0) + 1
    assert {k: v for k, v in counts.items() if v} == expected
