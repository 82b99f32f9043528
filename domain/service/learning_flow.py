"""The seed's LearningIterationService in Python: one instrumented learning iteration."""

from __future__ import annotations

import logging
from uuid import UUID

from pydantic import BaseModel, ConfigDict, JsonValue

from itertrack.domain.model.phases import Phase, Status
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.interruptions import failure_message
from itertrack.domain.service.ports import Backtester, LLMResponse, Scanner, StrategyLLM
from itertrack.domain.service.tracker import PerformanceTracker

log = logging.getLogger("itertrack")


class IterationOutcome(BaseModel):
    """What one learning iteration produced (the record the saving step stored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration_id: UUID
    record: IterationRecord


class LearningIterationService:
    """Runs one iteration through every phase, telling the tracker at each step."""

    def __init__(self, tracker: PerformanceTracker, llm: StrategyLLM, scanner: Scanner, backtester: Backtester) -> None:
        self.tracker = tracker
        self.llm = llm
        self.scanner = scanner
        self.backtester = backtester

    def run_iteration(
        self,
        agent_id: str,
        iteration_number: int,
        manual_guidance: str | None = None,
        iteration_id: UUID | None = None,
    ) -> IterationOutcome:
        """Generate, scan, maybe regenerate, backtest, analyse, save, complete.

        Any exception or interruption (`KeyboardInterrupt`, `SystemExit`, ...) marks the iteration `failed`
        (see `failure_message`) and is re-raised unchanged.
        """
        tracker = self.tracker
        iid = tracker.start_iteration(agent_id, iteration_number, iteration_id=iteration_id)
        try:
            # Step 1: scan strategy from the LLM.
            with tracker.track_phase(iid, Phase.SCAN_GENERATION):
                generated = self.llm.generate_scan_strategy(agent_id, iteration_number, manual_guidance)
                _record_call(tracker, iid, Phase.SCAN_GENERATION, generated)
            strategy = generated.content

            # Step 2: run the scan.
            with tracker.track_phase(iid, Phase.SCAN_EXECUTION):
                scan = self.scanner.run_scan(strategy)

            # Step 2.5: regenerate the execution script when the scan says it is stale.
            if scan.needs_execution_regeneration:
                with tracker.track_phase(iid, Phase.EXECUTION_GENERATION):
                    regenerated = self.llm.regenerate_execution(strategy, scan)
                    _record_call(tracker, iid, Phase.EXECUTION_GENERATION, regenerated)
                strategy = {"strategy": strategy, "execution": regenerated.content}

            # Step 3: backtests.
            with tracker.track_phase(iid, Phase.BACKTEST_EXECUTION):
                backtest_results = self.backtester.run_backtests(strategy, scan)

            # Steps 4-5: analysis, knowledge extraction, refinements; tokens of both calls add up.
            with tracker.track_phase(iid, Phase.ANALYSIS):
                analysed = self.llm.analyze_results(strategy, backtest_results)
                _record_call(tracker, iid, Phase.ANALYSIS, analysed)
                refined = self.llm.propose_refinements(strategy, analysed.content)
                _record_call(tracker, iid, Phase.ANALYSIS, refined)

            # Step 6: the saving step reuses the tracked id.
            record = IterationRecord(
                id=iid,
                agent_id=agent_id,
                iteration_number=iteration_number,
                strategy=strategy,
                scan_results=_as_json(scan.signals),
                backtest_results=backtest_results,
                analysis=analysed.content,
                refinements=refined.content,
                manual_guidance=manual_guidance,
                iteration_status=Status.COMPLETED.value,
                created_at=tracker.clock.now(),
            )
            tracker.save_iteration(record)
            tracker.update_phase(iid, Phase.COMPLETED)
        except BaseException as exc:
            # track_phase has already marked a failure inside a phase; this covers the rest, interruptions
            # (KeyboardInterrupt, SystemExit, ...) included: they would otherwise leave it running for good.
            # Marking it must never replace the host's own error (an interruption while marking propagates).
            try:
                if tracker.get_iteration(iid).status is Status.RUNNING:
                    tracker.update_phase(iid, Phase.FAILED, error=failure_message(exc))
            except Exception:
                log.warning("could not mark iteration %s failed", iid, exc_info=True)
            raise
        return IterationOutcome(iteration_id=iid, record=record)


def _as_json(signals: list[JsonValue]) -> JsonValue:
    return list(signals)


def _record_call(tracker: PerformanceTracker, iid: UUID, phase: str, response: LLMResponse) -> None:
    """The LLM call behind `response`, with its model, usage (None: unknown), request id and duration."""
    tracker.record_llm_call(
        iid,
        phase,
        model=response.model,
        usage=response.usage,
        request_id=response.request_id,
        duration_ms=response.duration_ms,
    )
