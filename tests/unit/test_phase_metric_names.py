"""Phase names whose metric names overlap another phase's are refused when the catalog is built (issue 12, item 7)."""

from __future__ import annotations

import pytest

from itertrack.domain import LLMUsage, PerformanceTracker, Phase, PhaseCatalog, PhaseNameCollisionError
from itertrack.domain.model.metrics import time_metric
from itertrack.domain.model.usage import USAGE_FIELDS, phase_metric_names


def test_the_metric_names_of_a_phase_are_every_name_the_tracker_writes_for_it() -> None:
    """Time and usage metrics, as the tracker's own calls name them: the collision check sees them all."""
    written = {time_metric("analysis"), *LLMUsage(input_tokens=1).as_metrics("analysis")}
    assert set(phase_metric_names("analysis")) == written
    assert "analysis_cache_read_input_tokens" in written


def test_a_phase_feeding_a_built_in_phases_cache_read_metric_is_refused() -> None:
    """`analysis_cache_read_input_tokens` is both this phase's token sum and `analysis`'s cache reads."""
    with pytest.raises(PhaseNameCollisionError) as caught:
        PhaseCatalog(["analysis_cache_read_input"])
    error = caught.value
    assert (error.phase, error.other, error.metric) == (
        "analysis_cache_read_input",
        "analysis",
        "analysis_cache_read_input_tokens",
    )
    assert error.field == "phases"
    assert "'analysis'" in str(error)
    assert "analysis_cache_read_input_tokens" in str(error)


@pytest.mark.parametrize("builtin", [p.value for p in Phase])
@pytest.mark.parametrize("kind", USAGE_FIELDS)
def test_no_phase_may_be_named_after_a_built_in_phases_token_kind(builtin: str, kind: str) -> None:
    """`<builtin>_input`, `<builtin>_cache_creation_input`, ...: each one's `_tokens` is a built-in kind metric."""
    name = f"{builtin}_{kind.removesuffix('_tokens')}"
    with pytest.raises(PhaseNameCollisionError, match=builtin):
        PhaseCatalog([name])


@pytest.mark.parametrize("kind", ["input", "output", "cache_creation_input", "cache_read_input", "cache_read"])
@pytest.mark.parametrize("order", ["base first", "longer first"])
def test_two_registered_phases_that_overlap_are_refused_whichever_comes_first(kind: str, order: str) -> None:
    names = ["review", f"review_{kind}"]
    if order == "longer first":
        names.reverse()
    with pytest.raises(PhaseNameCollisionError) as caught:
        PhaseCatalog(names)
    assert {caught.value.phase, caught.value.other} == set(names)


@pytest.mark.parametrize(
    "name", ["analysis_summary", "analysis_time", "analysis_tokens", "review", "cache_read_input", "scan"]
)
def test_names_that_only_look_alike_are_accepted(name: str) -> None:
    """Sharing a prefix is not a collision; only a metric name two phases would both write is."""
    catalog = PhaseCatalog([name])
    assert name in catalog.names


def test_an_accepted_catalogs_phases_write_disjoint_metric_names() -> None:
    catalog = PhaseCatalog(["review", "deploy", "review_summary", "analysis_summary"])
    written = [metric for phase in catalog.names for metric in phase_metric_names(phase)]
    assert len(written) == len(set(written))


def test_a_tracker_with_colliding_phases_is_refused_before_anything_is_written() -> None:
    with pytest.raises(PhaseNameCollisionError, match="analysis_cache_read_input"):
        PerformanceTracker(store="memory://", phases=["analysis_cache_read_input"])
