"""Cost where users read it (issue 14): `ReadModels.cost`, `itertrack show` and `itertrack report`, each call priced
at its own date's rates, unpriced and unknown usage counted apart, and history re-priced by a new table.
Dollars in the comments are computed by hand (USD per million tokens from projections/prices.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from documents_support import payload
from fake_clock import FakeClock

from itertrack.adapters.views.keeper import ReadModels
from itertrack.domain import InvalidInputError, PerformanceTracker
from itertrack.projections.pricing import parse_price_table

EVE_OF_THE_CUT = datetime(2026, 10, 6, 12, 0, tzinfo=UTC)  # Sonnet 5.5 cache reads $0.20 until 2026-10-06
DAY_MS = 24 * 3600 * 1000
SONNET_USAGE = {"input_tokens": 1_000, "output_tokens": 100, "cache_read_input_tokens": 10_000}
# 2026-10-06: 1,000 x $2 + 100 x $10 + 10,000 x $0.20 = $0.005; 2026-10-07 (cache read $0.10): $0.004
ON_THE_EVE = Decimal("0.005")
AFTER_THE_CUT = Decimal("0.004")


def track_calls(store: str) -> UUID:
    """One iteration: a Sonnet 5.5 call on each side of the cut (analysis), a call of a model no row prices
    (500 tokens), a call without usage, and 7 tokens added with update_metrics (no call, no model)."""
    clock = FakeClock(EVE_OF_THE_CUT)
    with PerformanceTracker(store, clock=clock, migrate=True) as tracker:
        iid = tracker.start_iteration("agent-1", 1)
        tracker.record_llm_call(iid, "analysis", model="claude-sonnet-5-5", usage=SONNET_USAGE)
        clock.at(DAY_MS)  # 2026-10-07 12:00 UTC
        tracker.record_llm_call(iid, "analysis", model="claude-sonnet-5-5", usage=SONNET_USAGE)
        tracker.record_llm_call(
            iid, "scan_generation", model="claude-opus-9", usage={"input_tokens": 400, "output_tokens": 100}
        )
        tracker.record_llm_call(iid, "scan_generation", model="claude-haiku-4-5", usage=None)
        tracker.update_metrics(iid, {"analysis_tokens": 7})
    return iid


def test_read_models_price_each_call_at_its_date_and_count_the_rest_apart(durable_store: str) -> None:
    iid = track_calls(durable_store)
    with PerformanceTracker(durable_store) as tracker, ReadModels(tracker, background=False) as views:
        cost = views.cost(iid)
        by_model = views.cost(agent="agent-1", by=("model",))
    lines = {(line.group["phase"], line.group["model"]): line for line in cost.lines}
    sonnet = lines[("analysis", "claude-sonnet-5-5")]
    assert sonnet.usd == ON_THE_EVE + AFTER_THE_CUT  # $0.009, not 2 x either day's price
    assert sonnet.complete
    opus = lines[("scan_generation", "claude-opus-9")]
    assert opus.usd is None  # never $0
    assert (opus.unpriced_calls, opus.unpriced_tokens, opus.unpriced_models) == (1, 500, ["claude-opus-9"])
    assert lines[("scan_generation", "claude-haiku-4-5")].unknown_usage_calls == 1
    total = cost.total
    assert total.usd == Decimal("0.009")
    assert (total.calls, total.unpriced_tokens, total.unknown_usage_calls) == (4, 500, 1)
    assert not total.complete
    assert cost.unattributed_tokens == 7
    assert cost.table_version.startswith("2026-11-29+")
    assert by_model.total.usd == Decimal("0.009")
    assert by_model.unattributed_tokens == 7


def test_a_new_price_table_re_prices_history_without_touching_events(sqlite_store: str) -> None:
    """The same stored calls, priced by a table where Sonnet 5.5 costs $1 per million of everything from 2023:
    (1,000 + 100 + 10,000) x 2 calls = 22,200 tokens -> $0.0222; the events are unchanged."""
    iid = track_calls(sqlite_store)
    flat = parse_price_table(
        'version = "flat"\n[[prices]]\nprovider = "anthropic"\nmodels = ["claude-sonnet-5-5"]\n'
        'effective_from = 2023-01-01\ninput = "1"\noutput = "1"\ncache_read = "1"\ncache_write_5m = "1"\n'
        'cache_write_1h = "1"\n',
        fmt="toml",
        source="test",
    )
    with PerformanceTracker(sqlite_store) as tracker, ReadModels(tracker, background=False) as views:
        before = len(tracker.history(iid))
        shipped = views.cost(iid)
        repriced = views.cost(iid, prices=flat)
        assert len(tracker.history(iid)) == before
    assert shipped.total.usd == Decimal("0.009")
    assert repriced.total.usd == Decimal("0.0222")
    assert repriced.table_version != shipped.table_version
    assert repriced.table_version.startswith("flat+")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "itertrack.adapters.cli.app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_show_and_report_give_the_cost_in_dollars(sqlite_store: str, tmp_path: Path) -> None:
    """`show --json` and `report --json` carry the exact figures; the terminal tables show the dollars and say
    the total is a lower bound; a user's price file (ITERTRACK_PRICES) re-prices both."""
    iid = track_calls(sqlite_store)
    shown = run_cli("show", str(iid), "--store", sqlite_store, "--json")
    assert shown.returncode == 0, shown.stderr
    cost = payload(shown.stdout, "show")["cost"]
    assert Decimal(cost["total"]["usd"]) == Decimal("0.009")
    assert cost["unattributed_tokens"] == 7
    reported = run_cli("report", "--store", sqlite_store, "--json")
    assert reported.returncode == 0, reported.stderr
    sections = payload(reported.stdout, "report")["cost"]
    assert set(sections) == {"by_phase", "by_agent", "by_model", "by_iteration"}
    agent_line = sections["by_agent"]["lines"][0]
    assert agent_line["group"] == {"agent": "agent-1"}
    assert Decimal(agent_line["usd"]) == Decimal("0.009")
    table = run_cli("show", str(iid), "--store", sqlite_store)
    assert "$0.009000" in table.stdout
    assert "lower bound" in table.stdout
    user_file = tmp_path / "prices.toml"
    user_file.write_text(
        'version = "mine"\n[[prices]]\nprovider = "anthropic"\nmodels = ["claude-sonnet-5-5"]\n'
        'effective_from = 2023-01-01\ninput = "1"\noutput = "1"\ncache_read = "1"\ncache_write_5m = "1"\n'
        'cache_write_1h = "1"\n'
    )
    mine = run_cli("show", str(iid), "--store", sqlite_store, "--json", env={"ITERTRACK_PRICES": str(user_file)})
    assert mine.returncode == 0, mine.stderr
    assert Decimal(payload(mine.stdout, "show")["cost"]["total"]["usd"]) == Decimal("0.0222")


def test_an_unknown_grouping_is_a_typed_error(sqlite_store: str) -> None:
    track_calls(sqlite_store)
    with (
        PerformanceTracker(sqlite_store) as tracker,
        ReadModels(tracker, background=False) as views,
        pytest.raises(InvalidInputError, match="nonsense"),
    ):
        views.cost(by=("nonsense",))
