"""Cost reports as terminal tables: dollars to the micro-dollar, unpriced calls and tokens named, never shown as $0."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from itertrack.adapters.cli.common import out
from itertrack.adapters.cli.terminal import shown
from itertrack.projections.costing import CostReport, format_usd, unpriced_text


def print_cost(report: CostReport, title: str, *, notes: bool = True, most: int | None = None) -> None:
    """One table: a row per group (the `most` costliest only, when given), then the total; with `notes`, what is
    unpriced below it. The title names the price table's version."""
    table = Table(title=f"{title} (prices {report.table_version})")
    lines = report.lines
    if most is not None and len(lines) > most:
        lines = sorted(lines, key=lambda line: line.usd or 0, reverse=True)[:most]
        table.title = f"{title}, the {most} costliest of {len(report.lines):,} (prices {report.table_version})"
    for name in report.by:
        table.add_column(name)
    for column in ("calls", "tokens", "cost", "unpriced"):
        table.add_column(column, justify="left" if column == "unpriced" else "right")
    for line in lines:
        table.add_row(
            *(shown(line.group.get(name) or "(none)") for name in report.by),
            f"{line.calls:,}",
            f"{line.tokens:,}",
            format_usd(line.usd),
            shown(unpriced_text(line)),
        )
    t = report.total
    table.add_row(
        *(Text("total", style="bold") if i == 0 else "" for i in range(len(report.by))),
        f"{t.calls:,}",
        f"{t.tokens:,}",
        format_usd(t.usd),
        shown(unpriced_text(t)),
    )
    out.print(table)
    if not notes:
        return
    if report.unattributed_tokens:
        out.print(
            f"{report.unattributed_tokens:,} tokens in the token metrics have no recorded call (no model: unpriced; "
            "recorded before calls were events, or added with update_metrics)"
        )
    if not t.complete:
        out.print("cost is a lower bound: some calls or tokens have no price (see `itertrack prices check`)")
