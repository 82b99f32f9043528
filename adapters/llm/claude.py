"""The LLM port on Anthropic's Messages API (Claude); install the `claude` extra for the SDK client."""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import JsonValue

from itertrack.domain.model.usage import LLMUsage
from itertrack.domain.service.ports import LLMResponse, ScanOutcome, StrategyLLM

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
    """Asks Claude for each LLM step and returns its content with the response's `usage` counts."""

    def __init__(self, client: ClaudeClient, model: str, max_tokens: int = 4096) -> None:
        self.client = client
        self.model = model
        self.max_tokens = max_tokens

    def _ask(self, step: str, payload: JsonValue) -> LLMResponse:
        response = self.client.messages.create(
            model=self.model,
            max_tokens=self.max_tokens,
            system=SYSTEM[step],
            messages=[{"role": "user", "content": json.dumps(payload)}],
        )
        text = "".join(getattr(block, "text", "") for block in response.content)
        return LLMResponse(content=_json_or_text(text), usage=LLMUsage.of(response.usage))

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
