"""`itertrack report --html` at scale: generation time and file size on a store of 100,000 iterations, against
`itertrack report --json` on the same store (the same reads and statistics, no page) as the floor, and the time
chromium takes to draw every chart of the page opened from its file.

    python -m scripts.bench_report [--iterations 100000] [--runs 3] [--folder DIR]

Builds the store as `scripts.bench_web` does (20 agents, about 10% failed, 200 running, one LLM call each), or
reuses `DIR/web.db`. Runs alternate (json, html, json, html, ...) so both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from scripts.bench_web import build_store

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))


def timed(*args: str) -> tuple[float, float]:
    """Wall seconds `itertrack args...` took (it must succeed), and its CPU seconds (user + system: what a busy
    shared machine changes least)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([ITERTRACK, *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def drawn_in(page_file: Path) -> tuple[float, int]:
    """Seconds from opening the page in chromium to every chart drawn, and how many charts it has."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "make chromium installs Debian's chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        started = time.perf_counter()
        page.goto(page_file.as_uri(), timeout=600_000)
        charts = page.locator("[data-chart]").count()
        page.wait_for_function(f"document.querySelectorAll('.chart svg').length >= {charts}", timeout=600_000)
        seconds = time.perf_counter() - started
        browser.close()
    return seconds, charts


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'web.db'}"
    if not (folder / "web.db").exists():
        print(f"building {args.iterations:,} iterations in {folder} ...", flush=True)
        print(f"  built in {build_store(url, args.iterations):.0f} s", flush=True)
    page = folder / "report.html"
    json_s: list[float] = []
    html_s: list[float] = []
    json_cpu: list[float] = []
    html_cpu: list[float] = []
    for _ in range(args.runs):
        for wall, cpu, command in (
            (json_s, json_cpu, ("report", "--json", "--store", url)),
            (html_s, html_cpu, ("report", "--html", str(page), "--store", url)),
        ):
            w, c = timed(*command)
            wall.append(w)
            cpu.append(c)
        print(
            f"  json {json_s[-1]:.1f} s ({json_cpu[-1]:.1f} s CPU), html {html_s[-1]:.1f} s ({html_cpu[-1]:.1f} s "
            f"CPU), load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    draw_s, charts = drawn_in(page)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    print(f"\nmachine: {machine}; store: SQLite, {args.iterations:,} iterations; load {os.getloadavg()}")
    print(
        f"report --html: median {statistics.median(html_s):.1f} s (runs {', '.join(f'{s:.1f}' for s in html_s)}); "
        f"report --json (floor): median {statistics.median(json_s):.1f} s "
        f"(runs {', '.join(f'{s:.1f}' for s in json_s)}); "
        f"ratio {statistics.median(html_s) / statistics.median(json_s):.2f}"
    )
    print(
        f"CPU: report --html median {statistics.median(html_cpu):.1f} s, "
        f"report --json {statistics.median(json_cpu):.1f} s; "
        f"ratio {statistics.median(html_cpu) / statistics.median(json_cpu):.2f}"
    )
    print(f"file: {page.stat().st_size:,} bytes; {charts} charts drawn in chromium {draw_s:.1f} s after opening it")


if __name__ == "__main__":
    main()
