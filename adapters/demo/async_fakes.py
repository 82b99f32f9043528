"""The demo's fake LLM, scanner and backtester for asyncio hosts: the same seeded draws, and real (scaled) waits.

One `AsyncFakes` serves one iteration at a time (its scenario is reseeded per iteration), so concurrent
iterations each take their own. Each call awaits `asyncio.sleep` for the step's simulated duration times
`time_scale` (0.001: a 9 s LLM call waits 9 ms), so many iterations overlap as they would against Claude.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

from pydantic import JsonValue

from itertrack.adapters.demo.fakes import FakeBacktester, FakeLLM, FakeScanner, Scenario, SimulatedClock
from itertrack.domain.service.ports import (
    AsyncBacktester,
    AsyncScanner,
    AsyncStrategyLLM,
    LLMResponse,
    ScanOutcome,
)


class AsyncFakes(AsyncStrategyLLM, AsyncScanner, AsyncBacktester):
    """LLM, scanner and backtester of one iteration at a time, seeded by (seed, agent, iteration)."""

    def __init__(self, seed: int = 0, failure_rate: float = 0.0, time_scale: float = 0.001) -> None:
        self._clock = SimulatedClock(datetime.now(UTC), uuid4)  # measures each step's simulated duration
        scenario = Scenario(self._clock, seed=seed, failure_rate=failure_rate)
        self._llm, self._scanner, self._backtester = FakeLLM(scenario), FakeScanner(scenario), FakeBacktester(scenario)
        self.time_scale = time_scale

    async def _wait_since(self, before: float) -> None:
        await asyncio.sleep((self._clock.monotonic() - before) * self.time_scale)

    async def generate_scan_strategy(
        self, agent_id: str, iteration_number: int, manual_guidance: str | None
    ) -> LLMResponse:
        before = self._clock.monotonic()
        response = self._llm.generate_scan_strategy(agent_id, iteration_number, manual_guidance)
        await self._wait_since(before)
        return response

    async def regenerate_execution(self, strategy: JsonValue, scan: ScanOutcome) -> LLMResponse:
        before = self._clock.monotonic()
        response = self._llm.regenerate_execution(strategy, scan)
        await self._wait_since(before)
        return response

    async def analyze_results(self, strategy: JsonValue, backtest_results: JsonValue) -> LLMResponse:
        before = self._clock.monotonic()
        try:
            return self._llm.analyze_results(strategy, backtest_results)
        finally:
            await self._wait_since(before)

    async def propose_refinements(self, strategy: JsonValue, analysis: JsonValue) -> LLMResponse:
        before = self._clock.monotonic()
        response = self._llm.propose_refinements(strategy, analysis)
        await self._wait_since(before)
        return response

    async def run_scan(self, strategy: JsonValue) -> ScanOutcome:
        before = self._clock.monotonic()
        try:
            return self._scanner.run_scan(strategy)
        finally:
            await self._wait_since(before)

    async def run_backtests(self, strategy: JsonValue, scan: ScanOutcome) -> JsonValue:
        before = self._clock.monotonic()
        try:
            return self._backtester.run_backtests(strategy, scan)
        finally:
            await self._wait_since(before)
