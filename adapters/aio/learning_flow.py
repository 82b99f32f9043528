"""The seed's LearningIterationService on asyncio: one instrumented learning iteration whose steps are awaited."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from itertrack.adapters.aio.tracker import AsyncPerformanceTracker
from itertrack.domain.model.phases import Phase, Status
from itertrack.domain.model.records import IterationRecord
from itertrack.domain.service.interruptions import failure_message
from itertrack.domain.service.learning_flow import IterationOutcome
from itertrack.domain.service.ports import AsyncBacktester, AsyncScanner, AsyncStrategyLLM, LLMResponse

log = logging.getLogger("itertrack")


class AsyncLearningIterationService:
    """Runs one iteration through every phase, awaiting the LLM, the scanner and the backtester, and telling the
    async tracker at each step (the same steps, phases and metrics as `LearningIterationService`)."""

    def __init__(
        self,
        tracker: AsyncPerformanceTracker,
        llm: AsyncStrategyLLM,
        scanner: AsyncScanner,
        backtester: AsyncBacktester,
    ) -> None:
        self.tracker = tracker
        self.llm = llm
        self.scanner = scanner
        self.backtester = backtester

    async def run_iteration(
        self,
        agent_id: str,
        iteration_number: int,
        manual_guidance: str | None = None,
        iteration_id: UUID | None = None,
    ) -> IterationOutcome:
        """Generate, scan, maybe regenerate, backtest, analyse, save, complete.

        Any exception, and the task's cancellation (`CancelledError`, a timeout), marks the iteration `failed`
        (see `failure_message`) and is re-raised unchanged.
        """
        tracker = self.tracker
        iid = await tracker.start_iteration(agent_id, iteration_number, iteration_id=iteration_id)
        try:
            async with tracker.track_phase(iid, Phase.SCAN_GENERATION):
                generated = await self.llm.generate_scan_strategy(agent_id, iteration_number, manual_guidance)
                await _record_call(tracker, iid, Phase.SCAN_GENERATION, generated)
            strategy = generated.content

            async with tracker.track_phase(iid, Phase.SCAN_EXECUTION):
                scan = await self.scanner.run_scan(strategy)

            if scan.needs_execution_regeneration:
                async with tracker.track_phase(iid, Phase.EXECUTION_GENERATION):
                    regenerated = await self.llm.regenerate_execution(strategy, scan)
                    await _record_call(tracker, iid, Phase.EXECUTION_GENERATION, regenerated)
                strategy = {"strategy": strategy, "execution": regenerated.content}

            async with tracker.track_phase(iid, Phase.BACKTEST_EXECUTION):
                backtest_results = await self.backtester.run_backtests(strategy, scan)

            async with tracker.track_phase(iid, Phase.ANALYSIS):
                analysed = await self.llm.analyze_results(strategy, backtest_results)
                await _record_call(tracker, iid, Phase.ANALYSIS, analysed)
                refined = await self.llm.propose_refinements(strategy, analysed.content)
                await _record_call(tracker, iid, Phase.ANALYSIS, refined)

            record = IterationRecord(
                id=iid,
                agent_id=agent_id,
                iteration_number=iteration_number,
                strategy=strategy,
                scan_results=list(scan.signals),
                backtest_results=backtest_results,
                analysis=analysed.content,
                refinements=refined.content,
                manual_guidance=manual_guidance,
                iteration_status=Status.COMPLETED.value,
                created_at=tracker.sync.clock.now(),
            )
            await tracker.save_iteration(record)
            await tracker.update_phase(iid, Phase.COMPLETED)
        except BaseException as exc:
            # track_phase has marked a failure inside a phase; this covers the rest (between phases, the saving
            # step), cancellation included. Marking it never replaces the host's own error.
            try:
                if (await tracker.get_iteration(iid)).status is Status.RUNNING:
                    await tracker.update_phase(
                        iid, Phase.FAILED, error=failure_message(exc, cancelled=isinstance(exc, asyncio.CancelledError))
                    )
            except Exception:
                log.warning("could not mark iteration %s failed", iid, exc_info=True)
            raise
        return IterationOutcome(iteration_id=iid, record=record)


async def _record_call(tracker: AsyncPerformanceTracker, iid: UUID, phase: str, response: LLMResponse) -> None:
    """The LLM call behind `response`, with its model, usage (None: unknown), request id and duration."""
    await tracker.record_llm_call(
        iid,
        phase,
        model=response.model,
        usage=response.usage,
        request_id=response.request_id,
        duration_ms=response.duration_ms,
    )
