"""Exports of the event log to other observability tools (OpenTelemetry traces over OTLP/HTTP).

`otlp_consumer` is the feed factory of the consumer `otlp` (entry point group `itertrack.consumers`). It imports
the OpenTelemetry SDK only when called, so an install without the `otel` extra gets a typed error naming the
extra instead of an import traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from itertrack.domain.model.errors import InvalidInputError

if TYPE_CHECKING:
    from itertrack.adapters.export.otlp import OtlpExporter
    from itertrack.domain.service.tracker import PerformanceTracker

OTEL_EXTRA = "itertrack[otel]"


def otlp_consumer(tracker: PerformanceTracker, options: Mapping[str, str]) -> OtlpExporter:
    """The consumer `otlp` for the tracker's store (the feed's factory signature: tracker, options).

    Raises `InvalidInputError` naming the consumer when the OpenTelemetry packages are not installed (install
    `itertrack[otel]`), and naming the option for a bad one.
    """
    try:
        from itertrack.adapters.export.otlp import OtlpExporter  # noqa: PLC0415 - the SDK is an optional extra
    except ImportError as e:
        raise InvalidInputError(
            "consumer", "otlp", f"needs the OpenTelemetry packages: pip install '{OTEL_EXTRA}' ({e})"
        ) from None
    return OtlpExporter(tracker, options)
