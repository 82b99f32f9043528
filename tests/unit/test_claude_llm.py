"""The Claude adapter reads the SDK's response shape and its usage counts (with a fake client, no network)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from itertrack.adapters.llm.claude import ClaudeStrategyLLM
from itertrack.domain.service.ports import ScanOutcome


class FakeMessages:
    """Answers like `anthropic.Anthropic().messages.create`: content blocks and an SDK-like usage object."""

    def __init__(self, text: str, usage: Any = "default") -> None:
        self.text = text
        self.usage = usage
        self.requests: list[dict[str, Any]] = []

    def create(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        usage = self.usage
        if usage == "default":
            usage = SimpleNamespace(
                input_tokens=120, output_tokens=80, cache_creation_input_tokens=None, cache_read_input_tokens=30
            )
        return SimpleNamespace(
            id="msg_01XFDUDYJgAACzvnptvVoYEL",
            model="claude-sonnet-4-5-20250929",
            content=[SimpleNamespace(type="text", text=self.text)],
            usage=usage,
        )


def llm(text: str, usage: Any = "default") -> tuple[ClaudeStrategyLLM, FakeMessages]:
    messages = FakeMessages(text, usage)
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


def test_the_response_model_id_and_duration_are_passed_on() -> None:
    """The model as the response named it (not as asked), its id as the request id, and the call's wall time."""
    adapter, _ = llm("{}")
    response = adapter.analyze_results({"name": "x"}, {"sharpe": 1.0})
    assert (response.model, response.request_id) == ("claude-sonnet-4-5-20250929", "msg_01XFDUDYJgAACzvnptvVoYEL")
    assert response.duration_ms is not None
    assert response.duration_ms >= 0


def test_a_response_without_usage_or_with_an_unreadable_one_gives_usage_unknown() -> None:
    """usage None (a gateway) or a negative count: the step still returns its content, with usage None."""
    for usage in (None, {"input_tokens": -5}):
        adapter, _ = llm('{"ok": true}', usage)
        response = adapter.propose_refinements({"name": "x"}, {"summary": "fine"})
        assert (response.content, response.usage) == ({"ok": True}, None)
