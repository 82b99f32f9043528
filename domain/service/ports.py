"""Ports: what the domain needs from the outside, as small abstract classes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, JsonValue

from itertrack.domain.model.usage import LLMUsage


class IterationRecordStore(ABC):
    """The iteration-record side of a store's recorder: its tables, and reading records back.

    Writing happens inside the recorder's event insert (the `iteration_record` keyword of
    `save()`), so a record never exists without the event that marks it saved.
    """

    @abstractmethod
    def migrate(self) -> None:
        """Create the events and records tables if they do not exist."""

    @abstractmethod
    def select_iteration_record(self, iteration_id: UUID) -> dict[str, Any] | None:
        """The stored record's fields, or None."""

    @abstractmethod
    def select_record_ids(self) -> list[UUID]:
        """The ids of every stored record (for integrity checks)."""

    def drop_broken_connections(self) -> None:
        """After a failed call: discard pooled connections the store has closed (a restart), so the next call
        opens a fresh one instead of failing on each dead connection in turn. Stores without a pool do nothing.
        """
        return

    @contextmanager
    def serialised(self, iteration_id: UUID) -> Iterator[None]:
        """Hold off other processes' retries on this iteration (used after a lost version race).

        Stores whose writers cannot starve each other need nothing here.
        """
        yield


class LLMResponse(BaseModel):
    """What an LLM call produced, and the tokens it used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: JsonValue
    usage: LLMUsage


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
