"""The lone-change probe behind README "Performance" (scripts/probe_async_lone.py) still finds every stage it
stamps: it wraps private methods of the async tracker's machinery, which a refactoring could rename."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from scripts.probe_async_lone import ASYNC_STAGES, SYNC_STAGES

ROOT = Path(__file__).resolve().parents[2]


def test_the_probe_stamps_every_stage_of_both_paths_in_order(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'probe.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.probe_async_lone", "--store", store, "--changes", "5", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for path, stages in (("sync ", SYNC_STAGES), ("async", ASYNC_STAGES)):
        line = next(line for line in result.stdout.splitlines() if f"round 1  {path} " in line)
        found = [re.search(rf"{stage} ([0-9.]+)", line) for stage in stages]
        assert all(found), line
        times = [float(match.group(1)) for match in found if match is not None]
        assert times == sorted(times), line  # each stage after the one before
        assert times[0] > 0, line
