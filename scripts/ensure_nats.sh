#!/usr/bin/env bash
# Makes sure the NATS JetStream the relay's tests use answers: installs Debian's nats-server when it is
# missing and we may (root with apt-get), and starts it with JetStream on when it is installed but stopped.
# Never fails by itself: the tests decide (they fail when CI=true, skip locally).
set -u
url="${ITERTRACK_TEST_NATS:-nats://127.0.0.1:4222}"
hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$hostport" ] && port=4222
store_dir="${ITERTRACK_NATS_STORE_DIR:-/var/lib/nats-server}"
log_file="${ITERTRACK_NATS_LOG:-/var/log/nats-server.log}"

# A NATS server greets every connection with an INFO line; JetStream on shows as "jetstream":true.
greeting() { timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port && IFS= read -r line <&3 && printf '%s\n' \"\$line\"" 2>/dev/null; }
ready() { greeting | grep -q '^INFO '; }
jetstream() { greeting | grep -q '"jetstream":true'; }

if ready; then
  jetstream && echo "nats: $host:$port is accepting connections, JetStream on" \
    || echo "nats: $host:$port answers but JetStream is off; the relay's tests will fail"
  exit 0
fi
if ! command -v nats-server >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nats: installing Debian's nats-server (once per machine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq nats-server >/dev/null 2>&1 || echo "nats: apt-get install failed"
fi
if command -v nats-server >/dev/null 2>&1; then
  case "$host" in
    127.0.0.1|localhost)
      # The Debian unit runs without JetStream (and systemd may be absent): start our own, in the background.
      echo "nats: starting $(nats-server --version) on $host:$port with JetStream in $store_dir"
      mkdir -p "$store_dir" "$(dirname "$log_file")" 2>/dev/null || true
      nohup nats-server -a "$host" -p "$port" -js -sd "$store_dir" -l "$log_file" >/dev/null 2>&1 &
      for _ in $(seq 1 50); do
        ready && { echo "nats: $host:$port is accepting connections"; exit 0; }
        sleep 0.2
      done
      ;;
  esac
fi
echo "nats: $host:$port is not reachable; the relay's tests will skip (or fail when CI=true)"
exit 0
