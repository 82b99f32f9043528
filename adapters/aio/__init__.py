"""asyncio hosts: `AsyncPerformanceTracker` (the tracker's operations as coroutines, store I/O off the event loop)
and `AsyncLearningIterationService` (the learning flow on asyncio)."""

from itertrack.adapters.aio.learning_flow import AsyncLearningIterationService
from itertrack.adapters.aio.tracker import AsyncPerformanceTracker

__all__ = ["AsyncLearningIterationService", "AsyncPerformanceTracker"]
