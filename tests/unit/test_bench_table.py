"""The README's Performance table from several bench runs (scripts/bench_table.py)."""

from __future__ import annotations

from typing import Any

from scripts.bench_table import ratio_spread, table, verdict


def row(path: str, measured: str, ratio: float | None, met: bool | None, target: str = "<= 1.5x") -> dict[str, Any]:
    return {"path": path, "measured": measured, "floor": "one insert", "ratio": ratio, "target": target, "met": met}


def test_the_verdict_counts_the_runs_that_met_the_target() -> None:
    assert verdict([True, True, True]) == "met"
    assert verdict([True, False, True]) == "met in 2 of 3 runs"
    assert verdict([False, False, False]) == "**missed**"
    assert verdict([None, None, None]) == "-"


def test_the_ratio_spread_runs_from_the_lowest_to_the_highest() -> None:
    assert ratio_spread([1.54, 1.19, 1.3]) == "1.19-1.54x"
    assert ratio_spread([0.041, 0.044]) == "0.04x"
    assert ratio_spread([None, None]) == ""


def test_rows_are_matched_by_path_and_a_row_missing_from_a_run_counts_as_not_met() -> None:
    runs = [
        {"rows": [row("change, SQLite", "0.4 ms", 1.2, True), row("lag", "p99 1 ms", None, True, "p99 <= 2 ms")]},
        {"rows": [row("lag", "p99 3 ms", None, False, "p99 <= 2 ms"), row("change, SQLite", "0.5 ms", 1.6, False)]},
        {"rows": [row("change, SQLite", "0.45 ms", 1.4, True)]},
    ]
    lines = table(runs).splitlines()
    assert lines[0].startswith("| path | run 1: measured | run 1: floor | runs 2-3: measured | ratio, runs 1-3 |")
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == (
        "| change, SQLite | 0.4 ms | one insert | 0.5 ms / 0.45 ms | 1.20-1.60x | <= 1.5x | met in 2 of 3 runs |"
    )
    assert lines[3] == "| lag | p99 1 ms | one insert | p99 3 ms / - |  | p99 <= 2 ms | met in 1 of 3 runs |"


def test_a_pipe_in_a_cell_does_not_split_it() -> None:
    runs = [{"rows": [row("a | b", "1 / 2", 1.0, None, "state it")]}]
    assert table(runs).splitlines()[2] == "| a \\| b | 1 / 2 | one insert |  | 1.00x | state it | - |"


def test_only_keeps_the_rows_whose_path_contains_one_of_the_texts() -> None:
    runs = [{"rows": [row("async tracker: lag", "1 ms", None, True), row("tracked change", "2 ms", 1.1, True)]}]
    lines = table(runs, only=["async tracker"]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| async tracker: lag"]


def test_a_run_without_a_verdict_does_not_hide_the_others_misses() -> None:
    runs = [
        {"rows": [row("read", "1 ms", 1.0, None, "state it")]},
        {"rows": [row("read", "3 ms", 3.0, False)]},
        {"rows": [row("read", "3 ms", 3.0, False)]},
    ]
    assert table(runs).splitlines()[2].endswith("| state it / <= 1.5x (the runs' targets differ) | **missed** |")


def test_a_row_missing_from_run_1_is_shown_from_the_runs_that_have_it() -> None:
    runs: list[dict[str, Any]] = [
        {"rows": []},
        {"rows": [row("new", "2 ms", 1.1, True)]},
        {"rows": [row("new", "2 ms", 1.3, True)]},
    ]
    assert table(runs).splitlines()[2] == "| new | - | - | 2 ms / 2 ms | 1.10-1.30x | <= 1.5x | met in 2 of 3 runs |"
