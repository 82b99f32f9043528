"""Imports every module that registers documents, so `DOCUMENTS` holds them all."""

from __future__ import annotations

from itertrack.adapters.documents import analytics, dashboard, iterations, operations

MODULES = (iterations, analytics, dashboard, operations)
