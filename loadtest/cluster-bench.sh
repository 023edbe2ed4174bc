#!/usr/bin/env bash
# Exits 1 when one of the targets it checks at the end was missed.
# The cluster benchmark: a real redis-server (AOF, appendfsync always) and
# two nodes on loopback; VISITORS visitors on node B; then the invoke round
# trip at RATE invokes/s from agents on node A (visitor and agent on
# different nodes) and, in the same run, from agents on node B (same
# node). Prints one table.
#
#   bash loadtest/cluster-bench.sh                  # 1000 visitors, 1000/s, 20 s
#   VISITORS=2000 RATE=2000 PHASE_SECS=30 bash loadtest/cluster-bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
VISITORS=${VISITORS:-1000}
RATE=${RATE:-1000}
PHASE_SECS=${PHASE_SECS:-20}
command -v redis-server >/dev/null || { echo "redis-server is required (apt-get install redis-server)" >&2; exit 1; }

cargo build --release -q -p presence-server -p loadtest
server_bin="$root/target/release/presence-server"
loadtest_bin="$root/target/release/loadtest"
source "$root/loadtest/server.sh"
out=$(mktemp -d /tmp/presence-cluster-bench.XXXXXX)

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$out" --appendonly yes \
  --appendfsync always --save "" --daemonize no > "$out/redis.log" 2>&1 &
redis_pid=$!
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for node in A B; do
    eval "SERVER_PID=\${${node}_PID:-}; SERVER_DIR=\${${node}_DIR:-/nonexistent}"
    stop_server
  done
  kill "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.1
done

export PRESENCE__CLUSTER__MODE=redis
export PRESENCE__CLUSTER__REDIS_URL="redis://127.0.0.1:${redis_port}/0"
ulimit -n "$(ulimit -Hn)"
SERVER_LOG=warn start_server "$server_bin"
A_URL=$SERVER_URL A_PID=$SERVER_PID A_DIR=$SERVER_DIR
SERVER_LOG=warn start_server "$server_bin"
B_URL=$SERVER_URL B_PID=$SERVER_PID B_DIR=$SERVER_DIR

hold_secs=$(( 2 * PHASE_SECS + 60 ))
echo "== $VISITORS visitors on node B"
"$loadtest_bin" --server "$B_URL" --visitors "$VISITORS" --ramp-rate 1000 \
  --duration-secs "$hold_secs" --presence-every-secs 0 > "$out/visitors.log" 2>&1 &
pids+=($!)
# Until node A's replica holds every visitor of node B.
for _ in $(seq 1 600); do
  n=$(redis-cli -p "$redis_port" hlen presence:presence:72)
  [ "${n:-0}" -ge "$VISITORS" ] && break
  sleep 0.1
done
sleep 2

rows=()
for phase in "different nodes:$A_URL" "same node:$B_URL"; do
  name=${phase%%:http*}
  url=${phase#*:}
  log="$out/agents-${name// /-}.log"
  "$loadtest_bin" --server "$url" --visitors 0 --invoke-rate "$RATE" \
    --target-shards 1 --target-per-shard "$VISITORS" \
    --ramp-rate 1000 --duration-secs "$PHASE_SECS" > "$log" 2>&1 || true
  line=$(grep "invoke round trip" "$log" || echo "invoke round trip: none")
  counts=$(grep "^agents:" "$log" || echo "agents: none")
  p50=$(sed -n 's/.*p50 \([0-9]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.*p99 \([0-9]*\).*/\1/p' <<<"$line")
  max=$(sed -n 's/.*max \([0-9]*\).*/\1/p' <<<"$line")
  n=$(sed -n 's/.*(n=\([0-9]*\)).*/\1/p' <<<"$line")
  achieved=$(awk -v n="${n:-0}" -v t="$PHASE_SECS" 'BEGIN {printf "%.0f", n / t}')
  clean=$(sed -n 's/.*, \([0-9]*\) clean errors.*/\1/p' <<<"$counts")
  lost=$(sed -n 's/.*, \([0-9]*\) lost.*/\1/p' <<<"$counts")
  if [ "${lost:-1}" != 0 ] || [ "${clean:-1}" != 0 ]; then missed=1; fi
  rows+=("| $name | $RATE | $achieved | ${p50:-?} | ${p99:-?} | ${max:-?} | ${clean:-?} | ${lost:-?} |")
done

cat <<TABLE

== presence-server cluster benchmark ($(nproc) cores, $(redis-server --version | awk '{print $3}'), 2 nodes + Redis + load generator on the same machine)
command: VISITORS=$VISITORS RATE=$RATE PHASE_SECS=$PHASE_SECS bash loadtest/cluster-bench.sh

| visitor and agent on | target rate (invokes/s) | achieved | p50 µs | p99 µs | max µs | clean errors | lost |
|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

logs: $out
TABLE
# Its target: every invoke answered, with no clean error, on both routes.
if [ "${missed:-0}" != 0 ]; then echo "TARGET MISSED: an invoke was lost or answered with an error"; fi
exit "${missed:-0}"
