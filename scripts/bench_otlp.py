"""The OTLP exporter's row of `make bench`: finished iterations exported per second to a loopback OTLP/HTTP receiver.

Measured: `OtlpExporter.export_iteration` per iteration (read its history from a SQLite file, map, price, encode,
POST, wait for the receiver's 200). Floor: the SDK's `OTLPSpanExporter.export` of the same spans built beforehand
(encode, POST, 200 only): what is left is ours (history read, mapping, pricing).
"""

from __future__ import annotations

import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from itertrack.adapters.export.otlp import OtlpExporter, TraceSender, readable_spans
from itertrack.adapters.export.trace_model import iteration_trace
from itertrack.adapters.prices import load_price_table
from itertrack.domain import PerformanceTracker
from scripts.bench_support import Row
from scripts.otlp_receiver import running_receiver

PHASES = ("scan_generation", "scan_execution", "execution_generation", "backtest_execution", "analysis")
CALLS_PER_PHASE = 2
TARGET_PER_S = 100.0
USAGE = {
    "input_tokens": 1200,
    "output_tokens": 800,
    "cache_read_input_tokens": 30_000,
    "cache_creation_input_tokens": 900,
}


def _fill(tracker: PerformanceTracker, iterations: int) -> list[str]:
    ids = []
    for n in range(iterations):
        iid = tracker.start_iteration("bench-agent", n)
        for phase in PHASES:
            tracker.update_phase(iid, phase)
            for _ in range(CALLS_PER_PHASE):
                tracker.record_llm_call(iid, phase, model="claude-sonnet-4-5", usage=USAGE, duration_ms=850.0)
        tracker.update_phase(iid, "completed")
        ids.append(str(iid))
    return ids


def otlp_rows(folder: Path, quick: bool) -> list[Row]:
    """One row: iterations/s through the exporter vs the SDK exporter alone."""
    iterations = 20 if quick else 400
    with PerformanceTracker(store=f"sqlite:///{folder / 'otlp.db'}", migrate=True) as tracker, running_receiver() as r:
        ids = _fill(tracker, iterations)
        sender = TraceSender(endpoint=r.endpoint, base_delay=0.01)
        consumer = OtlpExporter(tracker, sender=sender, prices=load_price_table())
        started = time.perf_counter()
        for iid in ids:
            consumer.export_iteration(iid)
        ours = iterations / (time.perf_counter() - started)

        table = load_price_table()
        prebuilt = [
            readable_spans(iteration_trace(tracker.history(iid), table), sender.resource, sender.scope) for iid in ids
        ]
        raw = OTLPSpanExporter(endpoint=r.endpoint)
        started = time.perf_counter()
        for spans in prebuilt:
            raw.export(spans)
        floor = iterations / (time.perf_counter() - started)
        raw.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        consumer.close()
        per_trace = len(r.distinct_span_ids()) // iterations
    ratio = ours / floor
    return [
        Row(
            path=f"OTLP export of finished iterations ({per_trace} spans each) to a loopback receiver, SQLite file",
            measured=f"{ours:,.0f} iterations/s",
            floor=f"{floor:,.0f} iterations/s, the SDK's OTLP/HTTP exporter alone on prebuilt spans",
            ratio=round(ratio, 2),
            target=f">= {TARGET_PER_S:.0f} iterations/s",
            met=ours >= TARGET_PER_S,
            note=f"{iterations} iterations, one POST each, sequential; ours includes the history read and mapping",
        )
    ]
