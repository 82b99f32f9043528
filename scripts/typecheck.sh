#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping (domain/ -> itertrack.domain), so it
# checks a view of the three code folders laid out as the installed namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
view=.typecheck/itertrack
mkdir -p "$view"
for pkg in domain projections adapters; do
  ln -sfn "../../$pkg" "$view/$pkg"
done
exec "${MYPY:-.venv/bin/mypy}" "$@"
