"""`itertrack prices list|check` as a user runs them: real processes, a real SQLite file, a user's price file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from documents_support import payload

from itertrack.domain import PerformanceTracker

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def run(*args: str, prices: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ITERTRACK_PRICES"}
    if prices is not None:
        env["ITERTRACK_PRICES"] = str(prices)
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_list_shows_the_shipped_table_its_version_and_multipliers() -> None:
    result = run("prices", "list")
    assert result.returncode == 0, result.stderr
    assert "(source: shipped); USD per million tokens" in result.stdout
    assert "claude-sonnet-4-5-20??????" in result.stdout
    assert "prompt > 100,000" in result.stdout
    assert "anthropic: batch x0.5; inference_geo: global x1, us x1.1" in result.stdout


def test_list_json_is_a_table_a_user_can_load_back(tmp_path: Path) -> None:
    """`table` of `list --json`, saved as .json and named by ITERTRACK_PRICES, is the same table (same version)."""
    shipped = payload(run("prices", "list", "--json").stdout, "prices.list")
    assert shipped["source"] == "shipped"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(shipped["table"]))
    mine = payload(run("prices", "list", "--json", prices=path).stdout, "prices.list")
    assert (mine["source"], mine["version"]) == (str(path), shipped["version"])


def test_a_bad_user_file_is_one_line_naming_the_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    table = payload(run("prices", "list", "--json").stdout, "prices.list")["table"]
    table["prices"][3]["cache_write_1h"] = "-2"
    path.write_text(json.dumps(table))
    for args in (("prices", "list"), ("prices", "check", "--store", f"sqlite:///{tmp_path / 'x.db'}")):
        result = run(*args, prices=path)
        assert result.returncode == 2  # a bad input file is a usage error
        assert result.stdout == ""
        model = table["prices"][3]["models"][0]
        assert result.stderr == (
            f"itertrack: error: price table {path}, row prices[3] (model {model!r}): cache_write_1h='-2': "
            "Input should be greater than or equal to 0\n"
        )


def test_check_on_the_demo_store_finds_every_model_priced(tmp_path: Path) -> None:
    """The demo's fake LLM names models the shipped table prices: exit 0, each (provider, model, day) checked."""
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    assert run("demo", "--iterations", "2", "--store", store).returncode == 0
    result = run("prices", "check", "--store", store)
    assert result.returncode == 0, result.stderr
    assert "every model has a price" in result.stdout
    as_json = payload(run("prices", "check", "--store", store, "--json").stdout, "prices.check")
    assert as_json["checked"]
    assert (as_json["unpriced"], as_json["source"]) == ([], "shipped")


def test_check_names_a_model_without_a_price_and_exits_3(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'new.db'}"
    with PerformanceTracker(store, migrate=True) as tracker:
        iid = tracker.start_iteration("agent-1", 1)
        tracker.record_llm_call(iid, "analysis", model="claude-opus-9", usage={"input_tokens": 3})
    result = run("prices", "check", "--store", store)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "unpriced: anthropic claude-opus-9" in result.stdout


def test_check_on_a_store_without_llm_call_events_finds_nothing_to_price(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'old.db'}"
    with PerformanceTracker(store, migrate=True) as tracker:
        iid = tracker.start_iteration("agent-1", 1)
        tracker.update_metrics(iid, {"analysis_tokens": 30})
    result = run("prices", "check", "--store", store)
    assert result.returncode == 0, result.stderr
    assert "no LLM call events in the store: nothing to price" in result.stdout
