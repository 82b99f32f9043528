"""Metric, phase and text rules: every bad input gets a typed error naming the field and the value."""

from __future__ import annotations

import math

import pytest

from itertrack.domain import InvalidInputError, InvalidMetricError, LLMUsage, PhaseCatalog, UnknownPhaseError
from itertrack.domain.model.metrics import add_metrics, check_metrics
from itertrack.domain.model.text import (
    MAX_AGENT_ID,
    MAX_ERROR_MESSAGE,
    check_agent_id,
    check_error_message,
    error_message_of,
)


@pytest.mark.parametrize(
    ("metrics", "fragment"),
    [
        ({"analysis_tokens": -1}, "metrics['analysis_tokens']=-1: must not be negative"),
        ({"analysis_tokens": math.nan}, "metrics['analysis_tokens']=nan: must be finite"),
        ({"analysis_tokens": math.inf}, "metrics['analysis_tokens']=inf: must be finite"),
        ({"analysis_tokens": -math.inf}, "must be finite"),
        ({"analysis_tokens": True}, "metrics['analysis_tokens']=True: must be an int or a float"),
        ({"analysis_tokens": "12"}, "metrics['analysis_tokens']='12': must be an int or a float"),
        ({"analysis_tokens": None}, "must be an int or a float"),
        ({"AnalysisTokens": 1}, "metrics (name)='AnalysisTokens': must be snake_case"),
        ({"analysis-tokens": 1}, "metrics (name)='analysis-tokens'"),
        ({"": 1}, "metrics (name)=''"),
        ({"x" * 101: 1}, "at most 100 characters"),
        ({1: 1}, "metrics (name)=1"),
        ({}, "metrics={}: must name at least one metric"),
        ({"analysis_tokens": 2**63}, "must be at most"),
    ],
)
def test_bad_metrics_are_refused_naming_field_and_value(metrics: object, fragment: str) -> None:
    """Negative, non-finite, boolean, non-numeric amounts and non-snake_case names are refused."""
    with pytest.raises(InvalidMetricError) as caught:
        check_metrics(metrics)
    assert fragment in str(caught.value)


def test_metrics_must_be_a_mapping() -> None:
    """A list of pairs is not a metrics mapping."""
    with pytest.raises(InvalidMetricError, match="must be a mapping"):
        check_metrics([("analysis_tokens", 1)])


def test_good_metrics_pass_unchanged() -> None:
    """Zero, ints and finite floats are accepted as given."""
    assert check_metrics({"a_time_ms": 0, "b_tokens": 12, "c_time_ms": 1.25}) == {
        "a_time_ms": 0,
        "b_tokens": 12,
        "c_time_ms": 1.25,
    }


def test_add_metrics_sums_per_name() -> None:
    """Adding an update to totals sums each metric and keeps the others."""
    assert add_metrics({"a": 1, "b": 2}, {"b": 3, "c": 4}) == {"a": 1, "b": 5, "c": 4}


@pytest.mark.parametrize("bad", [None, 5, "abc"])
def test_registered_phases_must_be_a_list_of_names(bad: object) -> None:
    """`phases=` is a list of names: None, a number or a bare string is refused, not misread."""
    with pytest.raises(InvalidInputError, match="phases="):
        PhaseCatalog(bad)  # type: ignore[arg-type]


def test_catalog_accepts_builtin_and_registered_phases() -> None:
    """A host-registered phase is accepted next to the built-in ones."""
    catalog = PhaseCatalog(["risk_review"])
    assert catalog.check("risk_review") == "risk_review"
    assert catalog.check("backtest_execution") == "backtest_execution"
    assert catalog.names[-1] == "risk_review"


def test_catalog_refuses_unknown_phase_listing_known_ones() -> None:
    """An unknown phase names itself and the known phases."""
    with pytest.raises(UnknownPhaseError, match="phase='teleport': unknown phase; known: initializing"):
        PhaseCatalog().check("teleport")


@pytest.mark.parametrize("bad", ["Risk Review", "", "x" * 65, "drop table;", 7])
def test_catalog_refuses_malformed_registered_names(bad: object) -> None:
    """Registered phase names must be snake_case strings."""
    with pytest.raises(InvalidInputError, match="phases="):
        PhaseCatalog([bad])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("agent_id", "fragment"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("a" * (MAX_AGENT_ID + 1), f"at most {MAX_AGENT_ID}"),
        ("agent\x00", "NUL"),
        ("agent\n1", "control characters"),
        ("\ud800", "UTF-8"),
        (42, "must be a string"),
    ],
)
def test_bad_agent_ids_are_refused(agent_id: object, fragment: str) -> None:
    """Agent ids are 1-200 printable, storable characters."""
    with pytest.raises(InvalidInputError, match="agent_id=") as caught:
        check_agent_id(agent_id)
    assert fragment in str(caught.value)


def test_hostile_but_printable_agent_id_is_kept_verbatim() -> None:
    """SQL metacharacters and unicode confusables are data, kept as given."""
    hostile = "agent'); DROP TABLE agent_iterations;-- аgent"
    assert check_agent_id(hostile) == hostile


def test_error_messages_are_made_storable_within_the_limit() -> None:
    """Error messages are stored as 1-4000 characters of storable text; only a non-string is refused."""
    with pytest.raises(InvalidInputError, match="error="):
        check_error_message(None)
    assert len(check_error_message("x" * (MAX_ERROR_MESSAGE + 1))) == MAX_ERROR_MESSAGE
    assert check_error_message("x" * MAX_ERROR_MESSAGE) == "x" * MAX_ERROR_MESSAGE
    assert check_error_message("line 1\nline 2") == "line 1\nline 2"


def test_error_message_of_an_exception_is_always_storable() -> None:
    """A long, empty or NUL-bearing exception message becomes a storable one."""
    assert error_message_of(ValueError()) == "ValueError"
    assert len(error_message_of(RuntimeError("x" * 10_000))) == MAX_ERROR_MESSAGE
    assert "\x00" not in error_message_of(RuntimeError("a\x00b"))
    check_error_message(error_message_of(RuntimeError("\ud800 lone surrogate")))


def test_usage_adds_all_four_counts_to_the_phase_tokens() -> None:
    """`<phase>_tokens` is input + output + both cache counts, and each count is kept on its own."""
    usage = LLMUsage(input_tokens=100, output_tokens=50, cache_creation_input_tokens=20, cache_read_input_tokens=7)
    assert usage.as_metrics("analysis") == {
        "analysis_tokens": 177,
        "analysis_input_tokens": 100,
        "analysis_output_tokens": 50,
        "analysis_cache_creation_input_tokens": 20,
        "analysis_cache_read_input_tokens": 7,
    }


def test_usage_reads_sdk_like_objects_and_mappings() -> None:
    """A Claude SDK usage object (attributes, None for absent cache counts) and a mapping both read."""

    class SdkUsage:
        input_tokens = 10
        output_tokens = 5
        cache_creation_input_tokens = None
        cache_read_input_tokens = 3

    assert LLMUsage.of(SdkUsage()).total == 18
    assert LLMUsage.of({"input_tokens": 1, "output_tokens": 2}).total == 3
    with pytest.raises(InvalidMetricError, match=r"usage\.output_tokens=-2"):
        LLMUsage.of({"input_tokens": 1, "output_tokens": -2})
    sdk_dump = {"input_tokens": 3, "output_tokens": 4, "service_tier": "standard", "server_tool_use": None}
    assert LLMUsage.of(sdk_dump).total == 7  # the SDK's other fields are not token counts
    for nothing in (None, "x", 5, {"tokens": 2}):
        with pytest.raises(InvalidMetricError, match="usage="):
            LLMUsage.of(nothing)
