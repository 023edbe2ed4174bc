#!/usr/bin/env bash
# The reproducible benchmark: builds the release server and load test,
# starts the server on loopback, ramps up N visitors (split over processes
# of at most PER_PROCESS visitors each, because one process may hold at
# most 20,000 open files), measures server RSS per idle connection, the
# connection-setup rate, and the invoke round trip at fixed rates, then
# prints one table.
#
#   bash loadtest/bench.sh                 # N=19000, rates 1000 2000 5000
#   N=15000 RATES="2000" PHASE_SECS=20 bash loadtest/bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-19000}
PER_PROCESS=${PER_PROCESS:-9500}
RATES=${RATES:-"1000 2000 5000"}
PHASE_SECS=${PHASE_SECS:-20}
RAMP_RATE=${RAMP_RATE:-4000}
# Each visitor process connects from its own loopback addresses.
SOURCES=(127.0.0.2,127.0.0.3 127.0.0.4,127.0.0.5 127.0.0.6,127.0.0.7 127.0.0.8,127.0.0.9)

cargo build --release -q -p presence-server -p loadtest
server_bin="$root/target/release/presence-server"
loadtest_bin="$root/target/release/loadtest"
source "$root/loadtest/server.sh"
out=$(mktemp -d /tmp/presence-bench.XXXXXX)
visitor_pids=()
cleanup() {
  for pid in "${visitor_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  # Only the visitor processes: a bare `wait` would also wait for the
  # server, which is stopped next.
  for pid in "${visitor_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_server
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)"
SERVER_LOG=warn start_server "$server_bin"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
fds() { ls "/proc/$SERVER_PID/fd" | wc -l; }
baseline=$(rss_kib)

shards=$(( (N + PER_PROCESS - 1) / PER_PROCESS ))
per_shard=$(( N / shards ))
total=$(( per_shard * shards ))
ramp_secs=$(( total / RAMP_RATE + 5 ))
hold_secs=$(( (PHASE_SECS + 10) * $(wc -w <<<"$RATES") + 30 ))
echo "== $total visitors in $shards processes of $per_shard, ramp $RAMP_RATE/s in total"
for ((s = 0; s < shards; s++)); do
  "$loadtest_bin" --server "$SERVER_URL" --shard "$s" --visitors "$per_shard" \
    --ramp-rate $(( RAMP_RATE / shards )) --duration-secs "$hold_secs" \
    --presence-every-secs 0 --source-addrs "${SOURCES[$s]}" \
    > "$out/visitors-$s.log" 2>&1 &
  visitor_pids+=($!)
done

# Wait until every visitor socket is open (one descriptor each).
start=$(date +%s.%N)
for _ in $(seq 1 $(( ramp_secs * 10 + 300 ))); do
  [ "$(fds)" -ge "$total" ] && break
  sleep 0.1
done
connected_at=$(date +%s.%N)
sleep 5   # at rest: let allocators settle before reading RSS
rss=$(rss_kib)
open=$(fds)
per_conn=$(awk -v r="$rss" -v b="$baseline" -v n="$total" 'BEGIN {printf "%.1f", (r - b) / n}')
setup=$(awk -v n="$total" -v a="$start" -v b="$connected_at" 'BEGIN {printf "%.0f", n / (b - a)}')

rows=()
for rate in $RATES; do
  log="$out/agents-$rate.log"
  "$loadtest_bin" --server "$SERVER_URL" --visitors 0 --invoke-rate "$rate" \
    --target-shards "$shards" --target-per-shard "$per_shard" \
    --ramp-rate 1000 --duration-secs "$PHASE_SECS" > "$log" 2>&1 || true
  line=$(grep "invoke round trip" "$log" || echo "invoke round trip: none")
  counts=$(grep "^agents:" "$log" || echo "agents: none")
  p50=$(sed -n 's/.*p50 \([0-9]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.*p99 \([0-9]*\).*/\1/p' <<<"$line")
  p999=$(sed -n 's/.*p99\.9 \([0-9]*\).*/\1/p' <<<"$line")
  max=$(sed -n 's/.*max \([0-9]*\).*/\1/p' <<<"$line")
  n=$(sed -n 's/.*(n=\([0-9]*\)).*/\1/p' <<<"$line")
  achieved=$(awk -v n="${n:-0}" -v t="$PHASE_SECS" 'BEGIN {printf "%.0f", n / t}')
  lost=$(sed -n 's/.*, \([0-9]*\) lost.*/\1/p' <<<"$counts")
  clean=$(sed -n 's/.*, \([0-9]*\) clean errors.*/\1/p' <<<"$counts")
  rows+=("| $rate | $achieved | ${p50:-?} | ${p99:-?} | ${p999:-?} | ${max:-?} | ${clean:-?} | ${lost:-?} |")
done

cat <<TABLE

== presence-server benchmark ($(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); load generator on the same machine)
command: N=$N RATES="$RATES" PHASE_SECS=$PHASE_SECS bash loadtest/bench.sh

| figure | value |
|---|---|
| visitors connected | $total (server open files: $open) |
| connection setup | $setup sockets/s |
| server RSS | baseline $((baseline / 1024)) MiB, with visitors $((rss / 1024)) MiB |
| RSS per idle visitor connection | $per_conn KiB |

| target rate (invokes/s) | achieved | p50 µs | p99 µs | p99.9 µs | max µs | clean errors | lost |
|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

logs: $out
TABLE
