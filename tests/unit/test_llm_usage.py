"""Reading Claude's usage as the API and the SDK give it: cache-write split, server tools, tier, unknown, streams."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from itertrack.domain import InvalidMetricError, LLMUsage

# A Messages API response's `usage`, as JSON (real shape: 1-hour cache write, web search, standard tier).
CLAUDE_USAGE: dict[str, Any] = {
    "input_tokens": 2095,
    "output_tokens": 503,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 12000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": None},
    "service_tier": "standard",
}


class SdkCacheCreation(BaseModel):
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int


class SdkServerToolUsage(BaseModel):
    web_search_requests: int
    web_fetch_requests: int | None = None


class SdkUsage(BaseModel):
    """The `anthropic` SDK's `Usage` (a pydantic model; optional fields None when absent)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: SdkCacheCreation | None = None
    server_tool_use: SdkServerToolUsage | None = None
    service_tier: str | None = None


def test_a_claude_usage_mapping_keeps_every_count_the_split_the_tools_and_the_tier() -> None:
    """Each count as given; the split by lifetime; server tool request counts (None left out); the tier."""
    usage = LLMUsage.of(CLAUDE_USAGE)
    assert (usage.input_tokens, usage.output_tokens) == (2095, 503)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (3000, 12000)
    assert (usage.cache_creation_5m_input_tokens, usage.cache_creation_1h_input_tokens) == (1000, 2000)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (1000, 2000)
    assert usage.server_tool_use == {"web_search_requests": 2}
    assert usage.service_tier == "standard"
    assert usage.total == 2095 + 503 + 3000 + 12000
    assert usage.prompt_tokens == 2095 + 3000 + 12000


def test_an_sdk_usage_object_reads_as_its_mapping_does() -> None:
    """The SDK's pydantic objects (nested ones too) give the same usage as the JSON."""
    sdk = SdkUsage(
        input_tokens=2095,
        output_tokens=503,
        cache_creation_input_tokens=3000,
        cache_read_input_tokens=12000,
        cache_creation=SdkCacheCreation(ephemeral_5m_input_tokens=1000, ephemeral_1h_input_tokens=2000),
        server_tool_use=SdkServerToolUsage(web_search_requests=2),
        service_tier="standard",
    )
    assert LLMUsage.of(sdk) == LLMUsage.of(CLAUDE_USAGE)
    plain = SimpleNamespace(input_tokens=5, output_tokens=6, cache_creation=None, server_tool_use=None)
    assert LLMUsage.of(plain) == LLMUsage(input_tokens=5, output_tokens=6)


def test_without_a_split_every_cache_write_is_a_5_minute_write() -> None:
    """No `cache_creation` in the response: the split stays unknown and all writes count at the 5-minute rate."""
    usage = LLMUsage.of({"input_tokens": 1, "cache_creation_input_tokens": 700})
    assert (usage.cache_creation_5m_input_tokens, usage.cache_creation_1h_input_tokens) == (None, None)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (700, 0)


def test_a_split_alone_gives_the_cache_writes_and_a_split_that_does_not_add_up_is_refused() -> None:
    """The split without the total sums to it; a split that disagrees with the total names the field."""
    usage = LLMUsage.of({"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 40}})
    assert (usage.cache_creation_input_tokens, usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (40, 0, 40)
    with pytest.raises(InvalidMetricError, match=r"usage\.cache_creation=.*splits 30 tokens.*is 31"):
        LLMUsage.of(
            {
                "cache_creation_input_tokens": 31,
                "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
            }
        )
    with pytest.raises(InvalidMetricError, match=r"usage\.cache_creation\.ephemeral_1h_input_tokens=-1"):
        LLMUsage.of({"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": -1}})
    with pytest.raises(InvalidMetricError, match=r"usage\.server_tool_use\.web_search_requests=1.5"):
        LLMUsage.of({"input_tokens": 1, "server_tool_use": {"web_search_requests": 1.5}})


def test_usage_that_is_missing_reads_as_unknown() -> None:
    """None and objects without any token count are usage unknown for `read` (and still an error for `of`)."""
    for missing in (None, SimpleNamespace(), SimpleNamespace(id="msg_1"), {}, {"service_tier": "standard"}):
        assert LLMUsage.read(missing) is None
    with pytest.raises(InvalidMetricError, match="usage="):
        LLMUsage.of(None)
    for bad in ("x", 5, b"x"):
        with pytest.raises(InvalidMetricError, match="usage="):
            LLMUsage.read(bad)


def test_adding_usages_keeps_the_split_tools_and_a_common_tier() -> None:
    """`+` adds every count; a split given by one side is completed from the other's 5-minute writes."""
    one = LLMUsage.of(CLAUDE_USAGE)
    two = LLMUsage(input_tokens=5, cache_creation_input_tokens=100, server_tool_use={"web_search_requests": 1})
    both = one + two
    assert both.total == one.total + two.total
    assert (both.cache_write_5m_tokens, both.cache_write_1h_tokens) == (1100, 2000)
    assert both.server_tool_use == {"web_search_requests": 3}
    assert both.service_tier is None  # one said standard, the other nothing


# A streamed response's events, as `client.messages.stream(...)` / `create(stream=True)` send them.
STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "usage": {
                "input_tokens": 472,
                "output_tokens": 2,
                "cache_creation_input_tokens": 1500,
                "cache_read_input_tokens": 9000,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1500},
                "service_tier": "standard",
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "ping"},
    # Each message_delta's usage is cumulative: output so far, not output since the last delta.
    {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 60}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 89, "server_tool_use": {"web_search_requests": 1}},
    },
    {"type": "message_stop"},
]


def test_a_stream_gives_its_final_usage_once_not_the_sum_of_its_deltas() -> None:
    """Input-side counts from message_start, output from the last cumulative message_delta (89, not 2+60+89)."""
    usage = LLMUsage.from_stream(STREAM)
    assert usage is not None
    assert usage.output_tokens == 89
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (472, 9000, 1500)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (0, 1500)
    assert usage.server_tool_use == {"web_search_requests": 1}
    assert usage.total == 472 + 89 + 1500 + 9000
    assert LLMUsage.from_stream([e for e in STREAM if e["type"] != "message_start"]) == LLMUsage(
        output_tokens=89, server_tool_use={"web_search_requests": 1}
    )
    assert LLMUsage.from_stream([{"type": "ping"}]) is None


def test_a_stream_of_sdk_event_objects_reads_the_same() -> None:
    """The SDK's event objects (attributes; None for counts a delta does not carry) give the same usage."""

    def obj(value: Any) -> Any:
        if isinstance(value, dict):
            return SimpleNamespace(**{k: obj(v) for k, v in value.items()})
        return value

    events = [obj(e) for e in STREAM]
    # The SDK's MessageDeltaUsage has every count, None where the delta says nothing: None never replaces a count.
    events[-2].usage = SimpleNamespace(
        input_tokens=None,
        output_tokens=89,
        cache_creation_input_tokens=None,
        cache_read_input_tokens=None,
        server_tool_use=SimpleNamespace(web_search_requests=1),
    )
    assert LLMUsage.from_stream(events) == LLMUsage.from_stream(STREAM)
