"""`itertrack similar ID`: the finished iterations whose digests are nearest to ID's (the embeddings consumer's).

The embedding modules (numpy, the model) come with `itertrack[embed]`; they are imported when the command runs, so
the rest of the CLI works without the extra.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from itertrack.adapters.cli.common import (
    IdArgument,
    JsonOption,
    StoreOption,
    app,
    cli_errors,
    fail,
    open_tracker,
    out,
    print_json,
)
from itertrack.adapters.cli.ids import resolve_iteration_id
from itertrack.adapters.cli.terminal import shown
from itertrack.adapters.store.url import DEFAULT_STORE

LimitOption = Annotated[int, typer.Option("--limit", "-k", min=1, max=1000, help="How many neighbours to list.")]


@app.command()
def similar(
    iteration_id: IdArgument,
    limit: LimitOption = 5,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """The finished iterations nearest to ID by cosine similarity of their digests (run `itertrack consume
    embeddings` first to embed them)."""
    try:
        from itertrack.adapters.feed.similar import similar_iterations  # noqa: PLC0415 - needs itertrack[embed]
    except ImportError as e:
        fail(f"`itertrack similar` needs the embedding extra ({e}): pip install 'itertrack[embed]'")
    with cli_errors(store), open_tracker(store, migrate=False) as tracker:
        found = similar_iterations(tracker, resolve_iteration_id(tracker, iteration_id), limit=limit)
    if as_json:
        print_json("similar", found.model_dump(mode="python"))
        return
    table = Table(
        title=f"Nearest to {found.target.iteration_id} ({found.model_name} {found.model_version})",
        caption=shown(found.target.digest.replace("\n", " | ")),
    )
    for column in ("similarity", "iteration", "agent", "number", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("digest", overflow="fold")
    for n in found.neighbours:
        table.add_row(
            f"{n.similarity:.3f}",
            str(n.iteration_id),
            shown(n.agent_id),
            str(n.iteration_number),
            n.status.value,
            shown(n.digest.replace("\n", " | ")),
        )
    out.print(table)
    if not found.neighbours:
        out.print("no other iteration is embedded yet")
