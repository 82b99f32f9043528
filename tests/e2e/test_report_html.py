"""`itertrack report --html` is one self-contained page drawn with the dashboard's templates and Vega-Lite charts:
opened from a file in a real browser (Playwright on Debian's chromium) it draws every chart, fetches nothing,
logs nothing, keeps hostile text as text, states each trend with its interval and shows failures."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import ITERTRACK, chromium_path
from fake_clock import FakeClock
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from itertrack.domain import PerformanceTracker

pytestmark = pytest.mark.slow

HOSTILE_AGENT = "<img src=x onerror=alert(1)>"
HOSTILE_ERROR = "</script><script>alert(2)</script> \u202eevil"
USAGE = {"input_tokens": 1200, "output_tokens": 300}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Agent `slower` takes 10 s more each iteration (with some noise: a clear rising trend); `steady` takes about
    20 s each time (no clear trend); the hostile agent fails twice with a hostile error; one iteration runs.
    A fake clock makes the times exact."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'report.db'}"
    clock = FakeClock()
    noise = [0.0, 3.0, -2.0, 1.0, -3.0, 2.0, 0.0, -1.0]
    with PerformanceTracker(store=url, clock=clock) as tracker:
        running = tracker.start_iteration("steady", 9)  # the first started: not among the latest on the timeline
        tracker.update_phase(running, "scan_generation")
        for n in range(1, 9):
            for agent, seconds in (("slower", 10.0 * n + noise[n - 1]), ("steady", 20.0 + noise[n - 1])):
                iid = tracker.start_iteration(agent, n)
                tracker.update_phase(iid, "scan_generation")
                clock.advance(seconds * 500)
                tracker.record_llm_call(iid, "scan_generation", model="claude-sonnet-4-5", usage=USAGE)
                tracker.update_phase(iid, "analysis")
                clock.advance(seconds * 500)
                tracker.update_phase(iid, "completed")
        for n in (1, 2):
            iid = tracker.start_iteration(HOSTILE_AGENT, n)
            tracker.update_phase(iid, "backtest_execution")
            clock.advance(4000)
            tracker.update_phase(iid, "failed", error=HOSTILE_ERROR)
    return url


def make_report(store: str, page: Path, *args: str) -> str:
    made = subprocess.run(
        [ITERTRACK, "report", "--store", store, "--html", str(page), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("html") / "report.html"
    make_report(store, page)
    return page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def specs(html: str) -> dict[str, Any]:
    """The page's Vega-Lite specifications by chart id."""
    found = re.findall(r'<script type="application/json" data-chart="([^"]+)">(.*?)</script>', html, re.S)
    return {chart_id: json.loads(text) for chart_id, text in found}


class Opened:
    """The report opened from its file, with every console message, page error, dialog and request seen."""

    def __init__(self, browser: Browser, page_file: Path) -> None:
        self.context = browser.new_context()
        self.page: Page = self.context.new_page()
        self.console: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(page_file.as_uri())
        charts = self.page.locator("[data-chart]").count()
        self.page.wait_for_function(
            "document.querySelectorAll('.chart svg, .chart canvas').length >= " + str(charts), timeout=30_000
        )

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture(scope="module")
def opened(browser: Browser, report: Path) -> Iterator[Opened]:
    o = Opened(browser, report)
    yield o
    o.context.close()


def test_the_page_carries_its_scripts_licences_and_policy(report: Path) -> None:
    """Everything is inside the one file: no element loads a file or address (no src=, no stylesheet link); the
    vendored Vega scripts are inline with their licences, under a policy that fetches from nowhere."""
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # the page less the inline scripts' code
    assert re.findall(r"<(?:img|iframe|object|embed|audio|video|source|base)\b", markup) == []
    assert re.findall(r"<script[^>]*\ssrc=", markup) == []
    assert re.findall(r"<link[^>]*>", markup) == ['<link rel="icon" href="data:,">']
    versions = (Path(__file__).parents[2] / "adapters/web/static/vendor/VERSIONS").read_text().split()
    for package in ("vega@", "vega-lite@", "vega-embed@"):
        spec = next(v for v in versions if v.startswith(package))
        assert f"<h4>{spec}</h4>" in html
    assert html.count("Redistribution and use in source and binary forms") == 3
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert policy is not None
    assert "default-src &#39;none&#39;" in policy.group(1)
    assert "unsafe-inline" not in policy.group(1).split("style-src")[0]  # scripts run only by their hash


def test_every_chart_draws_with_no_console_message_and_no_request(opened: Opened, report: Path) -> None:
    """Opened from file:// the page draws each chart (vega-embed put an SVG in every chart's box), logs nothing,
    and requests nothing but itself."""
    page = opened.page
    boxes = page.locator("[data-chart]").count()
    assert boxes >= 12  # phase time and tokens, timeline, failures, 4 overview, 4 per agent at least
    drawn = page.evaluate(
        "Array.from(document.querySelectorAll('[data-chart]'))"
        ".filter(s => document.getElementById(s.dataset.chart).querySelector('svg, canvas')).length"
    )
    assert drawn == boxes
    assert opened.console == []
    assert [u for u in opened.requests if u != report.as_uri() and not u.startswith("data:")] == []


def test_hostile_agent_ids_and_errors_stay_text(opened: Opened) -> None:
    """An agent id and an error that look like markup are shown as the very text stored; no script of theirs
    runs and no element of theirs exists."""
    page = opened.page
    agents = set(page.locator("bdi.agent").all_text_contents())
    assert HOSTILE_AGENT in agents
    errors = page.locator(".error-text").all_text_contents()
    assert errors
    assert set(errors) == {HOSTILE_ERROR}
    assert page.locator("img[src=x]").count() == 0
    assert opened.dialogs == []
    assert page.evaluate("document.querySelectorAll('script:not([type])').length") == 4  # vega x3 and app.js


def test_trends_are_stated_with_their_interval(opened: Opened, report: Path) -> None:
    """Each agent's time, tokens, cost and success trend is a sentence with its 95% interval: the agent that
    slows down is "rising ... s per iteration (95% CI ...)", the steady one has "no clear trend"; no yes/no."""
    verdicts = opened.page.locator(".verdict").all_text_contents()
    assert verdicts
    assert all("95% CI" in v or "too few iterations" in v for v in verdicts)
    html = report.read_text(encoding="utf-8")
    slower = html.split('id="agent-2"')[1].split("</section>")[0]
    steady = html.split('id="agent-3"')[1].split("</section>")[0]
    assert re.search(r"<b>time</b>: rising [\d.]+ s per iteration \(95% CI [\d.]+ to [\d.]+ s per iteration", slower)
    assert "<b>time</b>: no clear trend (95% CI -" in steady
    assert "faster?" not in html
    assert "cheaper?" not in html


def test_axes_carry_units(report: Path) -> None:
    """Every quantitative axis of every chart is titled with its unit."""
    charts = specs(report.read_text(encoding="utf-8"))
    assert charts["chart-agent-2-time"]["encoding"]["y"]["title"] == "wall time (s)"
    assert charts["chart-agent-2-cost"]["encoding"]["y"]["title"] == "cost (USD)"
    assert charts["chart-agent-2-success"]["encoding"]["y"]["title"] == "success rate (%)"
    assert charts["chart-agent-2-tokens"]["encoding"]["y"]["title"] == "tokens"
    assert charts["chart-phase-time"]["encoding"]["x"]["title"] == "time per iteration in the phase (s)"
    assert charts["chart-timeline"]["layer"][0]["encoding"]["x"]["title"] == "time since the iteration started (s)"
    assert charts["chart-failures"]["encoding"]["x"]["title"] == "failed iterations"
    for chart_id, spec in charts.items():
        encodings = [spec.get("encoding", {}), *(layer.get("encoding", {}) for layer in spec.get("layer", []))]
        for enc in encodings:
            for channel in ("x", "y"):
                if enc.get(channel, {}).get("type") == "quantitative":
                    assert enc[channel].get("title"), (chart_id, channel)


def test_the_timeline_shows_failures_and_iteration_ids(opened: Opened, report: Path) -> None:
    """A failed iteration's row names its id, the phase it failed in and its error, and its chart has a red cross
    where it failed (with the error) on a bar outlined in red; bars are labelled with the iteration's id."""
    html = report.read_text(encoding="utf-8")
    timeline = specs(html)["chart-timeline"]
    bars, crosses = timeline["layer"][0]["data"]["values"], timeline["layer"][1]["data"]["values"]
    assert {c["error"] for c in crosses} == {HOSTILE_ERROR}
    assert all(c["phase"] == "failed" for c in crosses)
    failing = [b for b in bars if b["failed_in"]]
    assert {b["phase"] for b in failing} == {"backtest_execution"}
    assert all(re.search(r" #\d+ · [0-9a-f]{8}$", b["iteration"]) for b in bars)
    rows = opened.page.locator("table.timeline tr.failed")
    assert rows.count() == 2
    assert rows.first.locator(".error-text").text_content() == HOSTILE_ERROR
    assert rows.first.locator("td").nth(4).text_content() == "backtest_execution"
    assert re.fullmatch(r"[0-9a-f-]{36}", rows.first.locator("code").text_content() or "")


def test_durations_read_in_human_units(opened: Opened) -> None:
    """Totals and phase times read as "2 min 5 s", never as a raw count of seconds."""
    cards = dict(
        zip(
            opened.page.locator(".card").evaluate_all("cs => cs.map(c => c.firstChild.textContent)"),
            opened.page.locator(".card b").all_text_contents(),
            strict=True,
        )
    )
    assert re.fullmatch(r"(\d+ h )?\d+ min( \d+ s)?", cards["time in phases"])
    assert cards["failed"] == "2"
    assert cards["LLM cost"].startswith("$")


def test_filters_and_the_chosen_timeline_are_kept(store: str, tmp_path: Path) -> None:
    """--agent narrows every section to that agent (its own points and trend only); --timeline draws the
    iterations given."""
    html = make_report(store, tmp_path / "one.html", "--agent", "slower", "--timeline-count", "3")
    charts = specs(html)
    assert not any(k.startswith("chart-agents-") for k in charts)  # one agent: no overview
    assert {k for k in charts if k.startswith("chart-agent-")} == {
        f"chart-agent-1-{m}" for m in ("time", "tokens", "cost", "success")
    }
    assert "steady" not in html
    assert "alert(1)" not in html
    labels = {b["iteration"].split(" · ")[0] for b in charts["chart-timeline"]["layer"][0]["data"]["values"]}
    assert labels == {"slower #6", "slower #7", "slower #8"}
    assert "No failures." in html


def test_agent_dollars_agree_with_the_cost_section(opened: Opened) -> None:
    """Each agent's dollars in the agents table (the dashboard's data, fed with the report's per-iteration
    dollars) are those of its line in the report's cost by agent."""
    page = opened.page
    agents = {
        (row.locator("td").nth(0).text_content() or ""): (row.locator("td").nth(4).text_content() or "")
        for row in page.locator("table.agents tbody tr").all()
    }
    by_agent = page.locator("table.cost").nth(1)
    costs = {
        (row.locator("td").nth(0).text_content() or ""): (row.locator("td").nth(3).text_content() or "")
        for row in by_agent.locator("tbody tr").all()
    }
    assert agents["slower"] == costs["slower"]
    assert agents["steady"] == costs["steady"]
    assert agents["slower"].startswith("$0.0")
