"""An asyncio host: many agents' learning iterations run concurrently on one event loop, tracked by
`AsyncPerformanceTracker`, with fakes for the LLM, the scanner and the backtester (adapters/demo/async_fakes.py).

    .venv/bin/python -m scripts.async_host --store sqlite:///async-demo.db --agents 20 --iterations 5

Prints one line per finished round of iterations and a summary; exits 0 when every iteration was tracked
(failed iterations are part of the scenario: `--failure-rate`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from itertrack.adapters.aio import AsyncLearningIterationService, AsyncPerformanceTracker
from itertrack.adapters.demo.async_fakes import AsyncFakes
from itertrack.adapters.demo.fakes import SimulatedError
from itertrack.domain import Status


async def run_agent(tracker: AsyncPerformanceTracker, agent_id: str, iterations: int, args: argparse.Namespace) -> int:
    """One agent's iterations, one after another (each builds on the last); returns how many failed."""
    fakes = AsyncFakes(seed=args.seed, failure_rate=args.failure_rate, time_scale=args.time_scale)
    service = AsyncLearningIterationService(tracker, fakes, fakes, fakes)
    failed = 0
    for n in range(1, iterations + 1):
        try:
            await service.run_iteration(agent_id, n)
        except SimulatedError:
            failed += 1  # tracked as failed by the flow; the agent goes on with its next iteration
    return failed


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    async with AsyncPerformanceTracker(args.store, migrate=True) as tracker:
        agents = [f"agent-{a + 1}" for a in range(args.agents)]
        failures = await asyncio.gather(*(run_agent(tracker, agent, args.iterations, args) for agent in agents))
    elapsed = time.perf_counter() - started
    total = args.agents * args.iterations
    print(
        f"{total} iterations of {args.agents} agents tracked in {elapsed:.2f} s: "
        f"{total - sum(failures)} {Status.COMPLETED.value}, {sum(failures)} {Status.FAILED.value}"
    )
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", default="sqlite:///async-demo.db", help="store URL (default: %(default)s)")
    parser.add_argument("--agents", type=int, default=20, help="agents running side by side")
    parser.add_argument("--iterations", type=int, default=5, help="iterations per agent")
    parser.add_argument("--failure-rate", type=float, default=0.1, help="share of iterations that fail")
    parser.add_argument("--time-scale", type=float, default=0.001, help="real seconds per simulated second")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
