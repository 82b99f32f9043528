"""The OTLP exporter as a named consumer (`itertrack consume otlp`), killed with SIGKILL while the receiver refuses and
restarted: the receiver ends with every iteration's trace, every span once by id (issue 16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

from support import wait_for

from itertrack.adapters.export.trace_model import iteration_trace
from itertrack.domain import PerformanceTracker
from scripts.otlp_receiver import running_receiver

ITERTRACK = str(Path(sys.executable).with_name("itertrack"))
ITERATIONS = 40


def write_finished(tracker: PerformanceTracker) -> list[str]:
    """Finished iterations, with a phase and an LLM call each; their trace ids (hex)."""
    ids = []
    for n in range(ITERATIONS):
        iid = tracker.start_iteration(f"agent-{n % 3}", n)
        tracker.update_phase(iid, "analysis")
        tracker.record_llm_call(iid, "analysis", model="claude-sonnet-4-5", usage={"input_tokens": 10 + n})
        tracker.update_phase(iid, "completed" if n % 4 else "failed", error=None if n % 4 else "boom")
        ids.append(iid.hex)
    return ids


def test_an_exporter_killed_mid_stream_and_restarted_delivers_every_span_once(sqlite_store: str) -> None:
    with PerformanceTracker(sqlite_store, migrate=True) as tracker:
        trace_ids = write_finished(tracker)
        models = [iteration_trace(tracker.history(UUID(t))) for t in trace_ids]
    expected = {(f"{m.trace_id:032x}", f"{span.span_id:016x}") for m in models for span in m.spans}
    with running_receiver() as receiver:
        command = [ITERTRACK, "consume", "otlp", "-o", f"endpoint={receiver.endpoint}", "--store", sqlite_store]
        env = {**os.environ, "OTEL_BSP_EXPORT_TIMEOUT": "1000"}
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            wait_for(lambda: len({s.trace_id for s in receiver.snapshot()}) >= 5, 60, "a few traces to arrive")
            receiver.refuse_next(1_000_000)  # mid-stream: the receiver stops accepting
            wait_for(lambda: receiver.refused > 0, 60, "the exporter to meet a refusal and retry")
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        finally:
            if first.poll() is None:
                first.kill()
        got_before = {s.trace_id for s in receiver.snapshot()}
        assert len(got_before) < ITERATIONS  # it really was stopped mid-stream
        receiver.refuse_next(0)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)
        assert second.returncode == 0, second.stderr
        spans = receiver.snapshot()
    assert {s.trace_id for s in spans} == set(trace_ids)
    distinct = receiver.distinct_span_ids()
    roots = {(s.trace_id, s.span_id) for s in spans if not s.parent_span_id}
    assert len(roots) == ITERATIONS  # one root per iteration, however often it was sent
    assert distinct == expected  # every span of every iteration, by its stable id
