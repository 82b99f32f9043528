"""The README's Performance table from several `make bench` runs: run 1's measurement and floor, the other runs'
measurements, the ratio's spread across all runs, the target, and how many runs met it.

Usage: .venv/bin/python -m scripts.bench_table run1.json run2.json run3.json [--only TEXT ...]
(prints a Markdown table; `--only` keeps the rows whose path contains one of the texts)

Each file is what `python -m scripts.bench --json FILE` wrote. Rows are matched by their path; a path missing
from a run shows as "-" there and counts as not met, as does a run that gave the row no verdict while another
run did. The verdict: "met" when every run met the target, "met in K of N runs", "**missed**" when none did,
"-" for a row no run gave a verdict (a target to state, not meet). The ratio's spread is over the runs that
have the row.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HEADER = "| path | run 1: measured | run 1: floor | {later}: measured | ratio, {all} | target | |\n" + "|---" * 7 + "|"


def ratio_spread(ratios: Sequence[float | None]) -> str:
    """ "a-bx" from the lowest to the highest ratio (one figure when they agree to 2 decimals); "" without ratios."""
    known = [r for r in ratios if r is not None]
    if not known:
        return ""
    low, high = f"{min(known):.2f}", f"{max(known):.2f}"
    return f"{low}x" if low == high else f"{low}-{high}x"


def verdict(mets: Sequence[bool | None]) -> str:
    """How many runs met the target (a row missing from a run is None there and counts as not met)."""
    if all(m is None for m in mets):
        return "-"
    met = sum(1 for m in mets if m)
    if met == len(mets):
        return "met"
    if met == 0:
        return "**missed**"
    return f"met in {met} of {len(mets)} runs"


def table(runs: Sequence[dict[str, Any]], only: Sequence[str] = ()) -> str:
    """The Markdown table of `runs` (each a parsed bench JSON), in run 1's row order, then rows only later runs have;
    with `only`, just the rows whose path contains one of those texts."""
    by_path = [{row["path"]: row for row in run["rows"]} for run in runs]
    paths = list(by_path[0])
    for run_rows in by_path[1:]:
        paths += [p for p in run_rows if p not in paths]
    if only:
        paths = [p for p in paths if any(text in p for text in only)]
    n = len(runs)
    later_runs = f"runs 2-{n}" if n > 2 else ("run 2" if n == 2 else "later runs")
    lines = [HEADER.format(later=later_runs, all=f"runs 1-{n}" if n > 1 else "run 1")]
    for path in paths:
        rows: list[dict[str, Any] | None] = [r.get(path) for r in by_path]
        first = rows[0]
        later = " / ".join("-" if r is None else r["measured"] for r in rows[1:])
        ratios = [None if r is None else r["ratio"] for r in rows]
        present = [r for r in rows if r is not None]
        targets = list(dict.fromkeys(r["target"] for r in present))
        target = " / ".join(targets) + (" (the runs' targets differ)" if len(targets) > 1 else "")
        mets: list[bool | None] = [None] * len(rows)
        if any(r["met"] is not None for r in present):  # else nothing to meet (the target says "state it")
            mets = [r is not None and r["met"] is True for r in rows]
        cells = [
            path,
            "-" if first is None else first["measured"],
            "-" if first is None else first["floor"],
            later,
            ratio_spread(ratios),
            target,
            verdict(mets),
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="bench JSON files, run 1 first")
    parser.add_argument("--only", nargs="+", default=[], metavar="TEXT", help="keep rows whose path contains one")
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.runs]
    for path, run in zip(args.runs, runs, strict=True):
        if run.get("quick"):
            parser.error(f"{path} is a --quick run: it measures nothing")
    print(table(runs, args.only))


if __name__ == "__main__":
    main()
