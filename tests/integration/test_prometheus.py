"""Prometheus metrics from the read models (issue 16): a store written by a real tracker, scraped over HTTP, parsed
with the client library's parser; every number equals what the read models say, and no label value is an id."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from fake_clock import FakeClock
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from itertrack.adapters.feed.log_consumer import LogConsumer
from itertrack.adapters.feed.runner import run_consumer
from itertrack.adapters.prometheus import TOKEN_KIND_COLUMNS, build_registry, metrics_server
from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain import PerformanceTracker

SONNET = {"input_tokens": 1_000, "output_tokens": 200, "cache_read_input_tokens": 3_000}
HAIKU = {"input_tokens": 50, "output_tokens": 7, "cache_creation_input_tokens": 400}
# Quotes, a backslash, braces, a comma, an equals sign and non-ASCII: everything the text format must escape
# in a label value that an agent id may hold (control characters, newlines among them, are refused as input).
HOSTILE_AGENT = 'ag"ent\\ {x="1"}, a=b é ✓ 漢字'
ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
UUID_LIKE = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def write_store(store: str) -> list[UUID]:
    """Three agents' iterations with timed phases and LLM calls (a FakeClock moves only as told):

    - alpha #1: initializing 2 s, scan_generation 40 s (a Sonnet and a Haiku call), then analysis 0.3 s,
      back to scan_generation 20 s (a second stay), completed;
    - alpha #2: initializing 1 s, scan_generation (a call of a model no price row knows, and one without usage),
      failed after 5 s;
    - the hostile agent #1: initializing 0.2 s, now in analysis (its open stay is no closed visit) with a call.
    """
    clock = FakeClock(step_ms=0)
    with PerformanceTracker(store, clock=clock, migrate=True) as tracker:
        a1 = tracker.start_iteration("alpha", 1)
        clock.advance(2_000)
        tracker.update_phase(a1, "scan_generation")
        tracker.record_llm_call(a1, "scan_generation", model="claude-sonnet-4-5", usage=SONNET)
        tracker.record_llm_call(a1, "scan_generation", model="claude-haiku-4-5", usage=HAIKU)
        clock.advance(40_000)
        tracker.update_phase(a1, "analysis")
        clock.advance(300)
        tracker.update_phase(a1, "scan_generation")
        clock.advance(20_000)
        tracker.update_phase(a1, "completed")
        a2 = tracker.start_iteration("alpha", 2)
        clock.advance(1_000)
        tracker.update_phase(a2, "scan_generation")
        tracker.record_llm_call(a2, "scan_generation", model="claude-opus-9", usage={"input_tokens": 600})
        tracker.record_llm_call(a2, "scan_generation", model="claude-haiku-4-5", usage=None)
        clock.advance(5_000)
        tracker.update_phase(a2, "failed", error="backtester crashed")
        h1 = tracker.start_iteration(HOSTILE_AGENT, 1)
        clock.advance(200)
        tracker.update_phase(h1, "analysis")
        tracker.record_llm_call(h1, "analysis", model="claude-sonnet-4-5", usage=SONNET)
        clock.advance(9_000)
    return [a1, a2, h1]


@contextmanager
def serving(store: str, *, catch_up: bool = True) -> Iterator[tuple[str, ReadModels]]:
    """`/metrics` of the store on a free port (a server thread), and the read models it reads."""
    with (
        PerformanceTracker(store, env={"ITERTRACK_FORWARD": "n"}) as tracker,
        ReadModels(tracker, background=False, catch_up_on_read=False) as views,
    ):
        server = metrics_server(build_registry(views, catch_up=catch_up), "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/metrics", views
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310  # our own server on 127.0.0.1
        assert response.status == 200
        text = response.read().decode("utf-8")
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def values(samples: list[Sample], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of one name, keyed by the given labels' values."""
    return {tuple(s.labels[label] for label in labels): s.value for s in samples if s.name == name}


def test_scraped_metrics_equal_the_read_models(durable_store: str) -> None:
    ids = write_store(durable_store)
    with serving(durable_store) as (url, _):
        samples = scrape(url)
    with PerformanceTracker(durable_store) as tracker, ReadModels(tracker, background=False) as views:
        current = views.iterations(limit=100)
        calls = views.llm_calls()
        durations = {i: views.phase_durations(i) for i in ids}
        cost = views.cost(by=("agent", "provider", "model"))

    assert values(samples, "itertrack_read_models_up") == {(): 1.0}
    assert values(samples, "itertrack_read_model_lag_events") == {(): 0.0}

    # Iterations by agent and status: every status of a known agent, 0 included.
    expected_counts: dict[tuple[str, str], float] = defaultdict(float)
    for agent in {c.agent_id for c in current}:
        for status in ("running", "completed", "failed"):
            expected_counts[(agent, status)] = 0.0
    for c in current:
        expected_counts[(c.agent_id, c.status.value)] += 1
    assert values(samples, "itertrack_iterations", "agent", "status") == expected_counts
    assert expected_counts[("alpha", "completed")] == expected_counts[("alpha", "failed")] == 1
    assert expected_counts[(HOSTILE_AGENT, "running")] == 1

    # Tokens and calls per (agent, phase, provider, model[, kind]) equal the calls' rows summed.
    tokens: dict[tuple[str, ...], float] = defaultdict(float)
    call_counts: dict[tuple[str, ...], float] = defaultdict(float)
    no_usage: dict[tuple[str, ...], float] = defaultdict(float)
    for row in calls:
        key = (row.agent_id, row.phase, row.provider, row.model or "")
        call_counts[key] += 1
        no_usage[key] += 0 if row.usage_known else 1
        for kind, column in TOKEN_KIND_COLUMNS.items():
            tokens[(*key, kind)] += getattr(row, column)
    labels = ("agent", "phase", "provider", "model")
    assert values(samples, "itertrack_llm_tokens_total", *labels, "kind") == tokens
    assert values(samples, "itertrack_llm_calls_total", *labels) == call_counts
    assert values(samples, "itertrack_llm_calls_without_usage_total", *labels) == no_usage
    assert tokens[("alpha", "scan_generation", "anthropic", "claude-sonnet-4-5", "cache_read")] == 3_000
    assert tokens[("alpha", "scan_generation", "anthropic", "claude-haiku-4-5", "cache_write_5m")] == 400
    assert sum(call_counts.values()) == 5

    # Cost equals `ReadModels.cost`, line by line and in total; unpriced tokens counted apart, never as $0.
    scraped_cost = values(samples, "itertrack_llm_cost_usd_total", "agent", "provider", "model")
    priced = {
        (line.group["agent"], line.group["provider"], line.group["model"]): line.usd
        for line in cost.lines
        if line.usd is not None
    }
    assert scraped_cost == {key: float(usd) for key, usd in priced.items()}
    assert sum(priced.values(), Decimal(0)) == cost.total.usd
    assert ("alpha", "anthropic", "claude-opus-9") not in scraped_cost
    unpriced = values(samples, "itertrack_llm_unpriced_tokens_total", "agent", "provider", "model")
    assert unpriced[("alpha", "anthropic", "claude-opus-9")] == 600 == cost.total.unpriced_tokens
    assert values(samples, "itertrack_price_table_info", "version") == {(cost.table_version,): 1.0}

    # Phase durations: the histogram counts every closed stay, sums their seconds; the open stay is left out.
    closed: dict[tuple[str, str], int] = defaultdict(int)
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    agent_of = {c.id: c for c in current}
    for iid, rows in durations.items():
        for d in rows:
            open_stay = 1 if agent_of[iid].phase == d.phase else 0
            if d.visits - open_stay:
                closed[(agent_of[iid].agent_id, d.phase)] += d.visits - open_stay
                seconds[(agent_of[iid].agent_id, d.phase)] += d.duration_ms / 1000
    counts = values(samples, "itertrack_phase_duration_seconds_count", "agent", "phase")
    assert counts == {key: float(n) for key, n in closed.items()}
    assert sum(counts.values()) == 7  # alpha: 2 + 3 (two stays in scan_generation) + 2; hostile: 1
    assert (HOSTILE_AGENT, "analysis") not in counts
    sums = values(samples, "itertrack_phase_duration_seconds_sum", "agent", "phase")
    assert sums == pytest.approx(seconds)
    assert sums[("alpha", "scan_generation")] == pytest.approx(65.0)  # 40 + 20 + 5
    buckets = values(samples, "itertrack_phase_duration_seconds_bucket", "agent", "phase", "le")
    assert buckets[("alpha", "initializing", "1.0")] == 1  # alpha #2's 1 s; #1's 2 s is above
    assert buckets[("alpha", "initializing", "2.5")] == 2
    # Two stays of alpha #1 (60 s over 2: mean 30 s) and alpha #2's 5 s stay.
    assert buckets[("alpha", "scan_generation", "5.0")] == 1
    assert buckets[("alpha", "scan_generation", "30.0")] == 3
    assert buckets[("alpha", "scan_generation", "+Inf")] == counts[("alpha", "scan_generation")]


def test_label_values_are_bounded_and_hostile_ones_round_trip(durable_store: str) -> None:
    """No label value looks like a UUID (no iteration id is ever a label), and an agent id with quotes, a
    backslash, braces and non-ASCII comes back from the parser exactly as stored."""
    ids = write_store(durable_store)
    with serving(durable_store) as (url, _):
        samples = scrape(url)
    label_values = {value for s in samples for value in s.labels.values()}
    assert not [value for value in label_values if UUID_LIKE.search(value)]
    assert not {str(i) for i in ids} & label_values
    assert HOSTILE_AGENT in {s.labels.get("agent") for s in samples}
    names = {s.name for s in samples}
    assert all(re.fullmatch(r"itertrack_[a-z0-9_]+", name) for name in names)


def test_no_catch_up_reads_the_views_as_they_are_and_shows_the_lag(sqlite_store: str) -> None:
    """A read-only role's server never writes the views: new events show as lag until someone applies them;
    a catching-up server applies them once per scrape."""
    write_store(sqlite_store)
    with serving(sqlite_store) as (url, _):
        scrape(url)  # the views now hold every event so far
    with PerformanceTracker(sqlite_store, clock=FakeClock(step_ms=0, seed=2)) as tracker:
        tracker.start_iteration("beta", 1)
    with serving(sqlite_store, catch_up=False) as (url, _):
        behind = scrape(url)
    assert values(behind, "itertrack_read_model_lag_events") == {(): 1.0}
    assert ("beta", "running") not in values(behind, "itertrack_iterations", "agent", "status")
    with serving(sqlite_store) as (url, _):
        current = scrape(url)
    assert values(current, "itertrack_read_model_lag_events") == {(): 0.0}
    assert values(current, "itertrack_iterations", "agent", "status")[("beta", "running")] == 1


@pytest.mark.postgres
def test_a_postgresql_store_shows_this_hosts_spool(pg_store: str) -> None:
    write_store(pg_store)
    with serving(pg_store) as (url, _):
        samples = scrape(url)
    assert values(samples, "itertrack_spooled_changes", "state") == {("waiting",): 0.0, ("stuck",): 0.0}


def test_a_sqlite_store_has_no_spool_and_no_consumer_lags_before_a_consumer_ran(sqlite_store: str) -> None:
    write_store(sqlite_store)
    with serving(sqlite_store) as (url, _):
        samples = scrape(url)
    names = {s.name for s in samples}
    assert "itertrack_spooled_changes" not in names
    assert "itertrack_consumer_lag_events" not in names  # no consumer ran: no lag to tell (not "lag 0")


def test_consumer_lag_is_the_events_a_named_consumer_is_behind(durable_store: str) -> None:
    """A consumer that caught up, then 2 more events: lag 2 for it, from its checkpoint."""
    write_store(durable_store)
    with PerformanceTracker(durable_store) as tracker:
        run_consumer(tracker, LogConsumer(tracker, {}, out=io.StringIO()))
        iid = tracker.start_iteration("agent-late", 1)
        tracker.update_phase(iid, "analysis")
    with serving(durable_store) as (url, _):
        samples = scrape(url)
    assert values(samples, "itertrack_consumer_lag_events", "consumer") == {("log",): 2.0}


def test_a_store_that_cannot_be_read_answers_up_0_not_an_error_page(sqlite_store: str, tmp_path: Path) -> None:
    write_store(sqlite_store)
    with serving(sqlite_store) as (url, views):
        views.view.statements.select_iteration_counts = "SELECT agent_id FROM no_such_table"
        samples = scrape(url)
    assert values(samples, "itertrack_read_models_up") == {(): 0.0}
    assert {s.name for s in samples} == {"itertrack_read_models_up"}


def test_other_paths_are_not_found(sqlite_store: str) -> None:
    write_store(sqlite_store)
    with serving(sqlite_store) as (url, _), pytest.raises(urllib.error.HTTPError) as refused:
        scrape(url.removesuffix("/metrics") + "/iterations")
    assert refused.value.code == 404


@pytest.mark.slow
def test_metrics_server_command_serves_and_stops_on_sigterm(sqlite_store: str) -> None:
    write_store(sqlite_store)
    process = subprocess.Popen(
        [ITERTRACK, "metrics-server", "--store", sqlite_store, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # written once the server listens: the wait is on that line
        assert first.startswith("serving http://127.0.0.1:"), first + (process.stderr.read() if process.stderr else "")
        samples = scrape(first.split()[1])
        assert values(samples, "itertrack_iterations", "agent", "status")[("alpha", "completed")] == 1
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.strip() == "stopped"
    assert not err


def test_metrics_server_command_names_a_port_it_cannot_bind(sqlite_store: str) -> None:
    write_store(sqlite_store)
    with serving(sqlite_store) as (url, _):
        port = url.split(":")[2].split("/")[0]
        result = subprocess.run(
            [ITERTRACK, "metrics-server", "--store", sqlite_store, "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.startswith(f"itertrack: error: port={port}: cannot be bound on 127.0.0.1")
    assert "Traceback" not in result.stderr


def test_concurrent_scrapes_while_a_host_writes_all_answer(durable_store: str) -> None:
    """Scrapes racing each other and a writing host each answer in full (one catches up, the others read the
    views as they are); once the host is done, a scrape counts every iteration it wrote."""
    write_store(durable_store)
    written = 20
    failures: list[BaseException] = []
    with serving(durable_store) as (url, _):

        def host() -> None:
            with PerformanceTracker(durable_store, clock=FakeClock(step_ms=1, seed=3)) as tracker:
                for n in range(written):
                    iid = tracker.start_iteration("gamma", n + 1)
                    tracker.update_phase(iid, "completed")

        def scraper() -> None:
            try:
                for _ in range(5):
                    assert values(scrape(url), "itertrack_read_models_up") == {(): 1.0}
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=host), *(threading.Thread(target=scraper) for _ in range(3))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures
        final = scrape(url)
    assert values(final, "itertrack_iterations", "agent", "status")[("gamma", "completed")] == written
    assert values(final, "itertrack_read_model_lag_events") == {(): 0.0}
