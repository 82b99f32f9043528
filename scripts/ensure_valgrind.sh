#!/usr/bin/env bash
# Installs Debian's valgrind for the benchmark's instruction counts (scripts/bench_callgrind.py) when it is
# missing and we may (root with apt-get). Never fails by itself: without it those rows say "not measured".
set -u
if command -v valgrind >/dev/null 2>&1; then
  echo "valgrind: $(valgrind --version 2>/dev/null | head -1)"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "valgrind: installing Debian's package (once per machine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq valgrind >/dev/null 2>&1 || echo "valgrind: apt-get install failed"
fi
command -v valgrind >/dev/null 2>&1 && echo "valgrind: $(valgrind --version 2>/dev/null | head -1)" \
  || echo "valgrind: not available; the instruction-count rows of make bench say \"not measured\""
exit 0
