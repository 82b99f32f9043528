#!/usr/bin/env bash
# Installs Debian's chromium for the HTML report's browser test when it is missing and we may
# (root with apt-get). Never fails by itself: the test decides (it fails when CI=true, skips locally).
set -u
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing Debian's package (once per machine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq chromium >/dev/null 2>&1 || echo "chromium: apt-get install failed"
fi
command -v chromium >/dev/null 2>&1 && echo "chromium: $(chromium --version 2>/dev/null | head -1)" \
  || echo "chromium: not available; the HTML report's browser test will skip (or fail when CI=true)"
exit 0
