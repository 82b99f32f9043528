"""What every drill shares: reporting, verdicts, and the store check each ends with."""

from __future__ import annotations

import sys
from pathlib import Path

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import view_for
from itertrack.adapters.views.runner import catch_up
from itertrack.adapters.views.verify import verify_store
from itertrack.domain import PerformanceTracker
from itertrack.projections.verification import VerifyReport

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


class DrillFailedError(AssertionError):
    """A drill found something lost, doubled or partial."""


def say(drill: str, message: str) -> None:
    print(f"[{drill}] {message}", flush=True)


def check(condition: bool, drill: str, message: str) -> None:
    if not condition:
        raise DrillFailedError(f"[{drill}] FAILED: {message}")


def verified(drill: str, tracker: PerformanceTracker) -> VerifyReport:
    """Catch the read models up, then verify versions, records and every read-model row."""
    catch_up(tracker, view_for(store_of(tracker).factory), batch_size=500)
    report = verify_store(tracker)
    for problem in report.problems[:10]:
        say(drill, f"problem: {problem.check} {problem.iteration_id}: {problem.detail}")
    check(report.ok, drill, f"verify found {len(report.problems)} problem(s)")
    say(
        drill,
        f"verify: {report.events:,} events of {report.iterations:,} iterations gapless, in time order and with "
        "unique event ids, "
        f"{report.records:,} records under their iteration ids, {report.read_model_rows:,} read-model rows "
        "equal to a fresh fold",
    )
    return report
