"""`itertrack prices list|check`: the price table in force, and which models in a store it has no price for."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from itertrack.adapters.cli.common import JsonOption, StoreOption, app, cli_errors, open_tracker, out, print_json
from itertrack.adapters.cli.terminal import escape_controls
from itertrack.adapters.prices import load_price_table, models_in_store
from itertrack.adapters.store.url import DEFAULT_STORE
from itertrack.projections.pricing import TOKEN_KINDS, PriceTable, table_rows, unpriced_models

# `prices check` exit codes: 0 every model in the store has a price (or the store holds no LLM call),
# EXIT_UNPRICED some have none; 1 a typed error (such as a bad ITERTRACK_PRICES file), 70 an unexpected one.
EXIT_UNPRICED = 3

prices_app = typer.Typer(help="The price table that turns recorded tokens into dollars.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")

_HEADINGS = {
    "input": "input",
    "output": "output",
    "cache_read": "cache read",
    "cache_write_5m": "cache write 5m",
    "cache_write_1h": "cache write 1h",
}


def _table_header(table: PriceTable) -> dict[str, Any]:
    return {"source": table.source, "version": table.version}


@prices_app.command("list")
def prices_list(as_json: JsonOption = False) -> None:
    """The table in force (shipped, or the file ITERTRACK_PRICES names), its version; USD per million tokens.

    --json prints {source, version, table}: `table` is a valid ITERTRACK_PRICES file (save it as .json).
    """
    with cli_errors(DEFAULT_STORE):
        table = load_price_table()
    if as_json:
        print_json(
            "prices.list", {**_table_header(table), "table": table.data.model_dump(mode="json", exclude_none=True)}
        )
        return
    out.print(
        escape_controls(f"Price table {table.version} (source: {table.source}); USD per million tokens"),
        markup=False,
        highlight=False,
    )
    grid = Table("provider", "name", "models", "from", *_HEADINGS.values(), "tiers")
    widest = max((len(m) for row in table.data.prices for m in row.models), default=6)
    grid.columns[2].min_width = min(widest, 40)  # model ids whole (longer ones fold), never cut short
    grid.columns[2].overflow = "fold"
    for row in table_rows(table):
        tiers = "; ".join(
            f"prompt > {t['above_prompt_tokens']:,}: " + " / ".join(str(t[k]) for k in TOKEN_KINDS)
            for t in row.get("tiers", ())
        )
        # Host-editable text: control characters escaped, one model id per line, never read as markup.
        cells = [escape_controls(str(v)) for v in (row["provider"], row.get("name", ""))]
        cells.append("\n".join(escape_controls(m) for m in row["models"]))
        cells += [escape_controls(str(v)) for v in (row["effective_from"], *(row[k] for k in TOKEN_KINDS))]
        cells.append(escape_controls(tiers) or "-")
        grid.add_row(*(Text(c) for c in cells))
    out.print(grid)
    for m in table.data.multipliers:
        geo = ", ".join(f"{g} x{v}" for g, v in sorted(m.inference_geo.items()))
        batch = f"batch x{m.batch}" if m.batch is not None else "no batch rate"
        out.print(
            escape_controls(f"{m.provider}: {batch}; inference_geo: {geo or 'none'} (every rate, cache rates too)"),
            markup=False,
            highlight=False,
        )


@prices_app.command("check", epilog=f"Exit codes: 0 every model has a price; {EXIT_UNPRICED} some have none.")
def prices_check(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Which (provider, model) of the LLM calls recorded in the store the table has no price for, on their dates.

    Exit 0 when every one has a price (or the store holds no LLM call event), 3 when some have none.
    """
    with cli_errors(store):
        table = load_price_table()
        with open_tracker(store, migrate=False) as tracker:
            calls = models_in_store(tracker)
        missing = unpriced_models(table, calls)
    if as_json:
        print_json(
            "prices.check",
            {
                **_table_header(table),
                "checked": [{"provider": p, "model": m, "day": d} for p, m, d in calls],
                "unpriced": [
                    {
                        "provider": u.provider,
                        "model": u.model,
                        "first_day": u.first,
                        "last_day": u.last,
                        "days": u.calls,
                        "reason": u.reason,
                    }
                    for u in missing
                ],
            },
        )
    else:
        _print_check(table, len(calls), missing)
    if missing:
        raise typer.Exit(EXIT_UNPRICED)


def _print_check(table: PriceTable, checked: int, missing: list[Any]) -> None:
    def line(text: str) -> None:
        out.print(escape_controls(text), markup=False, highlight=False)

    line(f"Price table {table.version} (source: {table.source})")
    if checked == 0:
        line("no LLM call events in the store: nothing to price")
        return
    if not missing:
        line(f"every model has a price ({checked} (provider, model, day) checked)")
        return
    for u in missing:
        line(f"unpriced: {u.provider} {u.model or '(no model named)'} from {u.first} to {u.last}: {u.reason}")
