"""`make drills` keeps working: its command line, and the drills that leave PostgreSQL running, end in a verdict.

The outage drill stops and starts the local PostgreSQL cluster, so it never runs beside the test suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.drills import DRILLS, parse_args  # noqa: E402  # scripts/ is not installed: after the sys.path insert


def test_without_names_every_drill_runs() -> None:
    """`make drills` passes no names: all of them run (argparse once refused its own default here)."""
    every = ["outage", "kill", "contention", "spooled-contention", "load", "follow-through-outage"]
    assert parse_args(["--seconds", "120"]).drills == every == list(DRILLS)
    assert parse_args(["kill", "load"]).drills == ["kill", "load"]


def test_an_unknown_drill_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["outage", "flood"])
    assert exited.value.code == 2
    assert "unknown drill(s) flood" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_contention_load_and_follow_reach_their_verdicts(postgres_url: str) -> None:  # and contention in an outage
    """A few seconds of each: every one ends in 'nothing lost, nothing doubled' with its counts."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "scripts.drills", "kill", "contention", "spooled-contention", "load"),
            "follow-through-outage",
            *("--seconds", "4", "--rate", "200", "--postgres", postgres_url),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    for drill in ("kill", "contention", "spooled-contention", "load"):
        assert f"[{drill}] nothing lost, nothing doubled: " in out, out[-3000:]
    assert "[follow-through-outage] the follower rode out both outages and its views equal a fold" in out, out[-3000:]
    assert out.rstrip().endswith("all drills passed")
