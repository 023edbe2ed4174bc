#!/usr/bin/env bash
# The load-test smoke run CI does, so the load test never rots: a few
# hundred visitors for about 10 s against the debug server, failing on any
# error or unanswered invoke.
#   bash loadtest/smoke.sh            (after cargo build --workspace)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/loadtest/server.sh"
trap stop_server EXIT
start_server "$root/target/debug/presence-server"
"$root/target/debug/loadtest" --server "$SERVER_URL" \
  --visitors 300 --ramp-rate 300 --duration-secs 10 \
  --invoke-rate 100 --presence-every-secs 5 --check
"$root/target/debug/loadtest" --server "$SERVER_URL" \
  --visitors 100 --ramp-rate 200 --duration-secs 5 \
  --invoke-rate 50 --agent-socket --navigate-prob 0 --check
echo "smoke: ok"
