#!/usr/bin/env bash
# Re-fetches the dashboard's charting JavaScript (Vega-Lite through vega-embed) from the npm registry at the
# pinned versions, checks each tarball's SHA-256 against adapters/web/static/vendor/VERSIONS, and copies the
# minified UMD bundles and their licences there, so pages need no network. To move to a new version: change
# it below, run with UPDATE=1 (records the new checksums), read the diff, commit.
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=adapters/web/static/vendor
PACKAGES=("vega@6.4.0" "vega-lite@6.5.0" "vega-embed@7.3.0")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${PACKAGES[@]}" >/dev/null)
versions="$work/VERSIONS"
echo "# Vendored by scripts/vendor_js.sh from the npm registry: package@version sha256-of-tarball" >"$versions"
for spec in "${PACKAGES[@]}"; do
  name=${spec%@*}
  version=${spec#*@}
  tarball="$work/$name-$version.tgz"
  sum=$(sha256sum "$tarball" | cut -d' ' -f1)
  if [ "${UPDATE:-0}" != "1" ] && [ -f "$VENDOR/VERSIONS" ]; then
    expected=$(awk -v s="$spec" '$1 == s {print $2}' "$VENDOR/VERSIONS")
    if [ "$expected" != "$sum" ]; then
      echo "vendor_js: $spec tarball has sha256 $sum, VERSIONS says ${expected:-nothing}" >&2
      exit 1
    fi
  fi
  echo "$spec $sum" >>"$versions"
  mkdir -p "$work/$name"
  tar xzf "$tarball" -C "$work/$name"
  cp "$work/$name/package/build/$name.min.js" "$VENDOR/$name.min.js"
  cp "$work/$name/package/LICENSE" "$VENDOR/$name.LICENSE"
done
cp "$versions" "$VENDOR/VERSIONS"
echo "vendor_js: $(grep -vc '^#' "$VENDOR/VERSIONS") packages in $VENDOR"
