"""Hypothesis profiles for the fuzz suite: `dev` (default), `ci` (when CI is set) and `quick`.

Pick one with HYPOTHESIS_PROFILE=quick (or dev, ci). No deadline anywhere: these examples open files and
run the CLI, and a loaded machine must not turn slowness into a failure.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", max_examples=150, deadline=None)
# Reproducible in CI: the same examples each run, and a failure prints the blob to replay it.
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("quick", max_examples=20, deadline=None)

_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if _IN_CI else "dev"))
