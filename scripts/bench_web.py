"""The dashboard at scale: time to first render of each page on a store of 100,000 iterations, and the server's
memory while 20 browsers follow the live board.

    python -m scripts.bench_web [--iterations 100000] [--followers 20] [--folder DIR]

Builds a SQLite store (iterations of 20 agents: about 89% completed, 10% failed, 200 running; each with three
phases, metrics and one LLM call) through the tracker's bulk path (`app.save` of many iterations), catches
the views up, then starts `itertrack serve` and drives Debian's chromium with Playwright.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright

from itertrack.adapters.bootstrap import store_of
from itertrack.adapters.views.keeper import view_for
from itertrack.adapters.views.runner import catch_up
from itertrack.domain import Iteration, PerformanceTracker
from itertrack.domain.model.usage import LLMUsage

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
AGENTS = 20
RUNNING = 200
PHASES = ("scan_generation", "backtest_execution", "analysis")


def build_store(url: str, iterations: int, per_save: int = 500) -> float:
    """Write `iterations` iterations in bulk and catch the views up; returns the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(17)
    with PerformanceTracker(store=url, migrate=True) as tracker:
        clock = tracker.clock
        app = store_of(tracker).app
        for first in range(0, iterations, per_save):
            batch = []
            for n in range(first, min(first + per_save, iterations)):
                agent, number = f"agent-{n % AGENTS:02d}", n // AGENTS + 1
                it = Iteration.start(clock.new_id(), agent, number, clock.now())
                for phase in PHASES:
                    it.change_phase(phase, None, clock.now())
                it.record_metrics({f"{PHASES[0]}_time_ms": 800.0 + rng.random() * 400}, clock.now())
                usage = LLMUsage(input_tokens=rng.randint(500, 3000), output_tokens=rng.randint(100, 900))
                it.record_llm_call({"phase": PHASES[2], "model": "claude-sonnet-4-5", "usage": usage}, clock.now())
                if n >= iterations - RUNNING:
                    pass  # still running
                elif rng.random() < 0.1:
                    error = rng.choice(["backtest timed out", "scanner crashed", "rate limited"])
                    it.change_phase("failed", error, clock.now())
                else:
                    it.change_phase("completed", None, clock.now())
                batch.append(it)
            app.save(*batch)
        catch_up(tracker, view_for(store_of(tracker).factory), batch_size=2000)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"itertrack serve exited {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("itertrack serve did not answer /healthz")
        time.sleep(0.1)


def first_renders(browser: Browser, base: str) -> list[tuple[str, float, float]]:
    """Per page: seconds from navigation to the page with every chart drawn, and its JSON twin's seconds."""
    some = httpx.get(f"{base}/api/failures", timeout=300).json()["data"]["groups"][0]["iterations"][0]["iteration_id"]
    pages = [
        ("/", "/api/board", 0),
        ("/agents", "/api/agents", 4),
        ("/agents?agent=agent-03", "/api/agents?agent=agent-03", 4),
        ("/failures", "/api/failures", 1),
        (f"/iterations/{some}", f"/api/iterations/{some}", 1),
    ]
    results = []
    for path, api, charts in pages:
        started = time.perf_counter()
        httpx.get(base + api, timeout=300).raise_for_status()
        api_s = time.perf_counter() - started
        context = browser.new_context()
        page = context.new_page()
        started = time.perf_counter()
        page.goto(base + path, timeout=300_000)
        if charts:
            page.wait_for_function(f"document.querySelectorAll('.chart svg').length >= {charts}", timeout=300_000)
        results.append((path, time.perf_counter() - started, api_s))
        context.close()
    return results


def followers(browser: Browser, base: str, url: str, count: int, pid: int) -> tuple[float, float, int]:
    """RSS (MiB) of the server with `count` browsers on the live board, seconds for a write to reach them all,
    and how many live streams the server counted."""
    contexts = []
    for _ in range(count):
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/", timeout=300_000)
        contexts.append((context, page))
    for _, page in contexts:
        page.wait_for_function("document.getElementById('live-status').textContent === 'live'")
    with PerformanceTracker(store=url) as tracker:
        written = []
        for n in range(20):
            iid = tracker.start_iteration("bench-live", n + 1)
            tracker.update_phase(iid, "analysis")
            written.append(iid)
        started = time.perf_counter()
        for _, page in contexts:
            page.wait_for_selector(f"#it-{written[-1]}", timeout=30_000)
        seen_s = time.perf_counter() - started
    rss = rss_mib(pid)
    clients = int(httpx.get(f"{base}/healthz", timeout=30).json()["data"]["live_clients"])
    for context, _ in contexts:
        context.close()
    return rss, seen_s, clients


def fan_out(base: str, url: str, count: int) -> list[float]:
    """Seconds from a write to its arrival on each of `count` plain SSE clients (no browser): the server's part."""
    arrived: dict[int, float] = {}
    wanted: dict[str, str] = {}
    ready = threading.Barrier(count + 1)

    def client(i: int) -> None:
        with httpx.stream("GET", f"{base}/events", timeout=60) as r:
            ready.wait()
            for line in r.iter_lines():
                if "id" in wanted and wanted["id"] in line:
                    arrived[i] = time.perf_counter()
                    return

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(1)  # every stream past its first messages
    with PerformanceTracker(store=url) as tracker:
        iid = tracker.start_iteration("bench-fan-out", 1)
        written = time.perf_counter()
        wanted["id"] = str(iid)
    for t in threads:
        t.join(timeout=30)
    return sorted(at - written for at in arrived.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--followers", type=int, default=20)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-web-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'web.db'}"
    if not (folder / "web.db").exists():
        print(f"building {args.iterations:,} iterations in {folder} ...", flush=True)
        print(f"  built in {build_store(url, args.iterations):.0f} s", flush=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([ITERTRACK, "serve", "--store", url, "--port", str(port)])
    chromium = shutil.which("chromium")
    assert chromium is not None, "make chromium installs Debian's chromium"
    try:
        wait_healthy(base, server)
        started_rss = rss_mib(server.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            renders = first_renders(browser, base)
            idle = rss_mib(server.pid)
            following, seen_s, clients = followers(browser, base, url, args.followers, server.pid)
            browser.close()
        latencies = fan_out(base, url, args.followers)
    finally:
        server.terminate()
        server.wait(timeout=30)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    print(f"\nmachine: {machine}; store: SQLite, {args.iterations:,} iterations")
    print("| page | first render in chromium, charts drawn (s) | its JSON twin (s) |")
    print("|---|---|---|")
    for path, render_s, api_s in renders:
        print(f"| `{path}` | {render_s:.2f} | {api_s:.2f} |")
    print(
        f"\nserver RSS: {started_rss:.0f} MiB at start, {idle:.0f} MiB after the pages, {following:.0f} MiB with "
        f"{args.followers} browsers following the board ({clients} live streams); the last of 40 writes reached "
        f"all of them {seen_s:.2f} s after it was written (chromium's 20 renderers share the 2 cores)"
    )
    print(
        f"server fan-out to {args.followers} plain SSE clients: a write arrived on the first after "
        f"{latencies[0] * 1000:.0f} ms, on the last after {latencies[-1] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
