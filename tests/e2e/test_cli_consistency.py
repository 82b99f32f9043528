"""CLI consistency (issue 17): `--version`, short id prefixes, exit codes, `--phase` checks, output paths and
output on a terminal that cannot show every character; each through the `itertrack` process."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ITERTRACK, *args], capture_output=True, text=True, timeout=120, check=False, env=env)


def test_version_prints_the_installed_version() -> None:
    """`itertrack --version` prints `itertrack <version>` (the installed distribution's) and exits 0."""
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"itertrack {version('itertrack')}\n"
    assert result.stderr == ""
