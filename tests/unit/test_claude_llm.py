"""The Claude adapter reads the SDK's response shape and its usage counts (with a fake client, no network)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from itertrack.adapters.llm.claude import ClaudeStrategyLLM
from itertrack.domain.service.ports import ScanOutcome


class FakeMessages:
    """Answers like `anthropic.Anthropic().messages.create`: content blocks and an SDK-like usage object."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.requests: list[dict[str, Any]] = []

    def create(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        usage = SimpleNamespace(
            input_tokens=120, output_tokens=80, cache_creation_input_tokens=None, cache_read_input_tokens=30
        )
        return SimpleNamespace(content=[SimpleNamespace(type="text", text=self.text)], usage=usage)


def llm(text: str) -> tuple[ClaudeStrategyLLM, FakeMessages]:
    messages = FakeMessages(text)
    return ClaudeStrategyLLM(SimpleNamespace(messages=messages), model="test-model"), messages


def test_json_answers_are_parsed_and_usage_is_counted() -> None:
    """A JSON answer (even fenced) becomes content; usage sums input, output and cache reads (None counts 0)."""
    adapter, messages = llm('```json\n{"name": "momentum", "lookback_days": 20}\n```')
    response = adapter.generate_scan_strategy("agent-1", 3, "prefer large caps")
    assert response.content == {"name": "momentum", "lookback_days": 20}
    assert response.usage is not None
    assert response.usage.total == 120 + 80 + 30
    assert response.usage.cache_creation_input_tokens == 0
    (request,) = messages.requests
    assert request["model"] == "test-model"
    assert '"iteration_number": 3' in request["messages"][0]["content"]


def test_text_answers_stay_text() -> None:
    """A script is not JSON and is returned as text."""
    adapter, _ = llm("def execute(signal):\n    return signal")
    response = adapter.regenerate_execution({"name": "x"}, ScanOutcome(signals=[]))
    assert response.content == "def execute(signal):\n    return signal"
