"""The LLM port on Anthropic's Messages API (Claude); install the `claude` extra for the SDK client."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from pydantic import JsonValue

from itertrack.domain.model.errors import InvalidMetricError
from itertrack.domain.model.llm_calls import MAX_MODEL
from itertrack.domain.model.usage import LLMUsage
from itertrack.domain.service.ports import LLMResponse, ScanOutcome, StrategyLLM

log = logging.getLogger("itertrack")

SYSTEM = {
    "scan": "You design stock scan strategies. Answer with one JSON object describing the strategy.",
    "execution": "You write the Python execution script for a scan strategy. Answer with the script only.",
    "analysis": "You analyse backtest results and extract knowledge. Answer with one JSON object.",
    "refinements": "You propose refinements to a strategy given an analysis. Answer with a JSON array.",
}


class MessagesAPI(Protocol):
    """The part of `anthropic.Anthropic().messages` this adapter uses."""

    def create(self, **kwargs: Any) -> Any:
        """Send one request; the response has `.content` (blocks with `.text`) and `.usage`."""
        ...


class ClaudeClient(Protocol):
    """An `anthropic.Anthropic()` client, or anything with the same `messages.create`."""

    @property
    def messages(self) -> MessagesAPI: ...


class ClaudeStrategyLLM(StrategyLLM):
    """Asks Claude for each LLM step and returns its content with the response's usage, model, id and duration."""

    def __init__(self, client: ClaudeClient, model: str, max_tokens: int = 4096) -> None:
        self.client = client
        self.model = model
        self.max_tokens = max_tokens

    def _ask(self, step: str, payload: JsonValue) -> LLMResponse:
        started = time.perf_counter()
        response = self.client.messages.create(
            model=self.model,
            max_tokens=self.max_tokens,
            system=SYSTEM[step],
            messages=[{"role": "user", "content": json.dumps(payload)}],
        )
        duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
        text = "".join(getattr(block, "text", "") for block in response.content)
        return LLMResponse(
            content=_json_or_text(text),
            usage=_usage(response),
            model=_text(getattr(response, "model", None)),
            request_id=_text(getattr(response, "id", None)),
            duration_ms=duration_ms,
        )

    def generate_scan_strategy(self, agent_id: str, iteration_number: int, manual_guidance: str | None) -> LLMResponse:
        return self._ask(
            "scan", {"agent_id": agent_id, "iteration_number": iteration_number, "guidance": manual_guidance}
        )

    def regenerate_execution(self, strategy: JsonValue, scan: ScanOutcome) -> LLMResponse:
        return self._ask("execution", {"strategy": strategy, "signals": scan.signals})

    def analyze_results(self, strategy: JsonValue, backtest_results: JsonValue) -> LLMResponse:
        return self._ask("analysis", {"strategy": strategy, "backtest_results": backtest_results})

    def propose_refinements(self, strategy: JsonValue, analysis: JsonValue) -> LLMResponse:
        return self._ask("refinements", {"strategy": strategy, "analysis": analysis})


def _usage(response: object) -> LLMUsage | None:
    """The response's usage; None when it has none (a gateway's, say) or an unreadable one (logged): the call is
    then recorded with usage unknown, never failing the step."""
    try:
        return LLMUsage.read(getattr(response, "usage", None))
    except InvalidMetricError:
        log.warning("Claude response with an unreadable usage; recorded as unknown", exc_info=True)
        return None


def _text(value: object) -> str | None:
    """A response's model name or id as the tracker keeps it: a printable str of at most 200 characters, else None."""
    if isinstance(value, str) and value and len(value) <= MAX_MODEL and value.isprintable():
        return value
    return None


def _json_or_text(text: str) -> JsonValue:
    """Claude's answer parsed as JSON when it is JSON (fences allowed), else the text itself."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        parsed: JsonValue = json.loads(stripped)
    except ValueError:
        return text
    return parsed
