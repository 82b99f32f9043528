"""The HTML report is one self-contained page that a real browser (Debian's chromium) renders cleanly."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    store = f"sqlite:///{folder / 'demo.db'}"
    demo = subprocess.run(
        [ITERTRACK, "demo", "--iterations", "15", "--store", store], capture_output=True, text=True, check=False
    )
    assert demo.returncode == 0, demo.stderr
    page = folder / "report.html"
    made = subprocess.run(
        [ITERTRACK, "report", "--store", store, "--html", str(page)], capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr
    return page


def test_page_is_self_contained(report_page: Path) -> None:
    """No scripts, no stylesheets or images from elsewhere: it opens offline."""
    html = report_page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    for outside in ("http://", "https://", "<script", "<link", " src=", "@import", "url("):
        assert outside not in html, outside
    assert html.count("<svg") >= 5  # time and tokens per phase, timeline, two trends


def test_page_renders_in_headless_chromium_without_console_errors(report_page: Path, tmp_path: Path) -> None:
    """Chromium renders the page to a PNG of the expected size and logs no console message."""
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is not installed (make test installs Debian's package)")
        pytest.skip("chromium is not installed")
    png = tmp_path / "report.png"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=920,2600",
            f"--screenshot={png}",
            report_page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (920, 2600)
    assert png.stat().st_size > 50_000  # charts drawn, not a blank page
