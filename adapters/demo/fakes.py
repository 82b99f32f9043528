"""Deterministic stand-ins for the LLM, the scanner and the backtester (outside this product).

Each iteration's durations, token counts, results and failure are drawn from a generator seeded
by (seed, agent, iteration), so a run is reproducible. Durations advance a `SimulatedClock`
instead of sleeping, so a demo of hundreds of iterations takes seconds.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import JsonValue

from itertrack.domain.model.phases import Phase
from itertrack.domain.model.usage import LLMUsage
from itertrack.domain.service.ports import Backtester, LLMResponse, Scanner, ScanOutcome, StrategyLLM

# Mean simulated milliseconds per step; each draw is uniform in [0.5, 1.5] x mean.
MEAN_MS = {
    "scan_generation": 9_000,
    "scan_execution": 4_000,
    "execution_generation": 7_000,
    "backtest_execution": 15_000,
    "analysis": 6_000,
    "refinements": 5_000,
}
# The models the fake LLM says answered (API ids the shipped price table prices, so the demo shows dollars).
STRATEGY_MODEL = "claude-sonnet-4-5-20250929"
CODE_MODEL = "claude-haiku-4-5-20251001"
FAILING_STEPS = (Phase.SCAN_EXECUTION, Phase.BACKTEST_EXECUTION, Phase.ANALYSIS)
FAILURE_MESSAGES = {
    Phase.SCAN_EXECUTION: ["scanner: market data feed returned 503", "scanner: universe is empty"],
    Phase.BACKTEST_EXECUTION: ["backtester: timeout after 120000 ms", "backtester: missing OHLC bars for AAPL"],
    Phase.ANALYSIS: ["claude: overloaded_error (529)", "claude: response was not valid JSON"],
}


class SimulatedError(RuntimeError):
    """A failure the scenario planned for a fake collaborator."""


class SimulatedClock:
    """Wall time and monotonic time that only move when a fake collaborator says so."""

    def __init__(self, start: datetime, new_id: Callable[[], UUID]) -> None:
        self._start = start
        self._elapsed = 0.0
        self._new_id = new_id

    def advance(self, ms: float) -> None:
        """Let `ms` simulated milliseconds pass."""
        self._elapsed += ms / 1000.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    def new_id(self) -> UUID:
        return self._new_id()


class Scenario:
    """The seeded plan of one simulated run: draws per (agent, iteration) and where failures happen."""

    def __init__(self, clock: SimulatedClock, seed: int = 0, failure_rate: float = 0.0) -> None:
        self.clock = clock
        self.seed = seed
        self.failure_rate = failure_rate
        self._rng = random.Random(seed)
        self._failing: Phase | None = None

    def begin(self, agent_id: str, iteration_number: int) -> None:
        """Reseed for one iteration and decide whether, and in which step, it fails."""
        digest = hashlib.sha256(f"{self.seed}/{agent_id}/{iteration_number}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        fails = self._rng.random() < self.failure_rate
        self._failing = self._rng.choice(FAILING_STEPS) if fails else None

    def spend(self, step: str) -> None:
        """Advance the clock by a draw around the step's mean duration."""
        self.clock.advance(round(MEAN_MS[step] * self._rng.uniform(0.5, 1.5)))

    def tokens(self, mean_in: int, mean_out: int) -> LLMUsage:
        """A Claude-like usage with some prompt caching."""
        cached = self._rng.random() < 0.5
        return LLMUsage(
            input_tokens=int(mean_in * self._rng.uniform(0.6, 1.4)),
            output_tokens=int(mean_out * self._rng.uniform(0.6, 1.4)),
            cache_creation_input_tokens=0 if cached else int(mean_in * 0.3),
            cache_read_input_tokens=int(mean_in * 0.3) if cached else 0,
        )

    def maybe_fail(self, step: Phase) -> None:
        """Raise this iteration's planned failure if it is planned for `step`."""
        if self._failing == step:
            raise SimulatedError(self._rng.choice(FAILURE_MESSAGES[step]))

    def chance(self, p: float) -> bool:
        """A seeded coin flip."""
        return self._rng.random() < p

    def number(self, low: float, high: float) -> float:
        """A seeded number in [low, high], rounded to 4 places."""
        return round(self._rng.uniform(low, high), 4)


class FakeLLM(StrategyLLM):
    """Claude's stand-in: canned JSON content and seeded token usage."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario

    def generate_scan_strategy(self, agent_id: str, iteration_number: int, manual_guidance: str | None) -> LLMResponse:
        self.s.begin(agent_id, iteration_number)
        self.s.spend("scan_generation")
        content: JsonValue = {
            "name": f"{agent_id}-momentum-v{iteration_number}",
            "lookback_days": int(self.s.number(5, 60)),
            "threshold": self.s.number(0.5, 3.0),
            "guidance": manual_guidance,
        }
        return LLMResponse(content=content, usage=self.s.tokens(3_000, 1_200), model=STRATEGY_MODEL)

    def regenerate_execution(self, strategy: JsonValue, scan: ScanOutcome) -> LLMResponse:
        self.s.spend("execution_generation")
        return LLMResponse(
            content="def execute(signal):\n    return signal", usage=self.s.tokens(2_500, 1_800), model=CODE_MODEL
        )

    def analyze_results(self, strategy: JsonValue, backtest_results: JsonValue) -> LLMResponse:
        self.s.spend("analysis")
        self.s.maybe_fail(Phase.ANALYSIS)
        return LLMResponse(
            content={"summary": "edge decays after 3 days", "insights": ["tighten stops"]},
            usage=self.s.tokens(4_000, 900),
            model=STRATEGY_MODEL,
        )

    def propose_refinements(self, strategy: JsonValue, analysis: JsonValue) -> LLMResponse:
        self.s.spend("refinements")
        return LLMResponse(
            content=[{"parameter": "threshold", "change": self.s.number(-0.5, 0.5)}],
            usage=self.s.tokens(2_000, 600),
            model=CODE_MODEL,
        )


class FakeScanner(Scanner):
    """Finds a seeded number of signals; one scan in three asks for a new execution script."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario

    def run_scan(self, strategy: JsonValue) -> ScanOutcome:
        self.s.spend("scan_execution")
        self.s.maybe_fail(Phase.SCAN_EXECUTION)
        count = int(self.s.number(1, 8))
        signals: list[JsonValue] = [{"ticker": f"T{i:03d}", "score": self.s.number(0, 1)} for i in range(count)]
        return ScanOutcome(signals=signals, needs_execution_regeneration=self.s.chance(1 / 3))


class FakeBacktester(Backtester):
    """Seeded win rate and Sharpe ratio."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario

    def run_backtests(self, strategy: JsonValue, scan: ScanOutcome) -> JsonValue:
        self.s.spend("backtest_execution")
        self.s.maybe_fail(Phase.BACKTEST_EXECUTION)
        return {
            "trades": len(scan.signals) * 3,
            "win_rate": self.s.number(0.3, 0.7),
            "sharpe": self.s.number(-0.5, 2.5),
        }
