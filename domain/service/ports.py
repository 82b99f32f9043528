"""Ports of the learning flow: the LLM, the scanner and the backtester, outside this product."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict, JsonValue

from itertrack.domain.model.usage import LLMUsage


class LLMResponse(BaseModel):
    """What an LLM call produced, and the tokens it used.

    `usage` is None when the response reported none. `model` (as the response named it), `request_id` (the
    provider's id of the response) and `duration_ms` (the call's wall time) are None when unknown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: JsonValue
    usage: LLMUsage | None
    model: str | None = None
    request_id: str | None = None
    duration_ms: float | None = None


class ScanOutcome(BaseModel):
    """Signals a scan found, and whether the execution script must be regenerated before backtesting."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signals: list[JsonValue]
    needs_execution_regeneration: bool = False


class StrategyLLM(ABC):
    """The LLM (Claude) calls of one learning iteration."""

    @abstractmethod
    def generate_scan_strategy(self, agent_id: str, iteration_number: int, manual_guidance: str | None) -> LLMResponse:
        """Step 1: a scan strategy."""

    @abstractmethod
    def regenerate_execution(self, strategy: JsonValue, scan: ScanOutcome) -> LLMResponse:
        """Step 2.5: a new execution script for the strategy."""

    @abstractmethod
    def analyze_results(self, strategy: JsonValue, backtest_results: JsonValue) -> LLMResponse:
        """Step 4: analysis and knowledge extraction."""

    @abstractmethod
    def propose_refinements(self, strategy: JsonValue, analysis: JsonValue) -> LLMResponse:
        """Step 5: refinement proposals."""


class Scanner(ABC):
    """Runs a scan strategy over the market."""

    @abstractmethod
    def run_scan(self, strategy: JsonValue) -> ScanOutcome:
        """Step 2: run the scan."""


class Backtester(ABC):
    """Runs backtests of a strategy on the scan's signals."""

    @abstractmethod
    def run_backtests(self, strategy: JsonValue, scan: ScanOutcome) -> JsonValue:
        """Step 3: the backtest results."""


class AsyncStrategyLLM(ABC):
    """The LLM calls of one learning iteration, for an asyncio host (e.g. on `AsyncAnthropic`)."""

    @abstractmethod
    async def generate_scan_strategy(
        self, agent_id: str, iteration_number: int, manual_guidance: str | None
    ) -> LLMResponse:
        """Step 1: a scan strategy."""

    @abstractmethod
    async def regenerate_execution(self, strategy: JsonValue, scan: ScanOutcome) -> LLMResponse:
        """Step 2.5: a new execution script for the strategy."""

    @abstractmethod
    async def analyze_results(self, strategy: JsonValue, backtest_results: JsonValue) -> LLMResponse:
        """Step 4: analysis and knowledge extraction."""

    @abstractmethod
    async def propose_refinements(self, strategy: JsonValue, analysis: JsonValue) -> LLMResponse:
        """Step 5: refinement proposals."""


class AsyncScanner(ABC):
    """Runs a scan strategy over the market, for an asyncio host."""

    @abstractmethod
    async def run_scan(self, strategy: JsonValue) -> ScanOutcome:
        """Step 2: run the scan."""


class AsyncBacktester(ABC):
    """Runs backtests of a strategy on the scan's signals, for an asyncio host."""

    @abstractmethod
    async def run_backtests(self, strategy: JsonValue, scan: ScanOutcome) -> JsonValue:
        """Step 3: the backtest results."""
