"""Exports of the event log to other observability tools (OpenTelemetry traces over OTLP/HTTP)."""
