#!/usr/bin/env bash
# The reproducible single-node benchmark. Builds the release server and
# load test, measures the machine, starts the server on loopback and runs,
# in turn:
#   machine  GAP_SECS with one busy thread per CPU and nothing else running:
#            how often the machine takes a CPU away for 2 ms or more (the
#            floor under any latency tail measured here; vcpu_gaps.py);
#   agents   AGENT_SOCKETS idle, authenticated agent sockets: RSS per socket
#            (first: N visitors take nearly all of the 20,000 open files);
#   ramp     N visitors (split over processes of at most PER_PROCESS,
#            since one process may hold at most 20,000 open files):
#            connection setup rate and the peak RSS (VmHWM) of the ramp;
#   idle     RSS per idle visitor;
#   invokes  REST invoke round trip at each of RATES (p50/p99/p99.9);
#   large    every visitor sends one LARGE_BYTES presence update (refused
#            by the 4 KiB presence cap, but its bytes pass every buffer of
#            the socket), then idles: RSS per visitor again;
#   storm    the server is restarted under all N visitors, which reconnect
#            with the visitor script's backoff: seconds until all are online,
#            and the registry mailbox's peak depth meanwhile.
# Prints one table and exits 1 if a target of issue 18 was missed or not
# measured (RATES without 5000).
#
#   bash loadtest/bench.sh                 # N=19000, rates 1000 2000 5000
#   N=15000 RATES="2000" PHASE_SECS=20 bash loadtest/bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-19000}
PER_PROCESS=${PER_PROCESS:-4750}
RATES=${RATES:-"1000 2000 5000"}
PHASE_SECS=${PHASE_SECS:-20}
RAMP_RATE=${RAMP_RATE:-24000}
AGENT_SOCKETS=${AGENT_SOCKETS:-1000}
AGENT_WARMUP=${AGENT_WARMUP:-100}
LARGE_BYTES=${LARGE_BYTES:-61440}
STORM_LIMIT_SECS=${STORM_LIMIT_SECS:-10}
GAP_SECS=${GAP_SECS:-20}
# Each visitor process connects from its own loopback addresses.
SOURCES=(127.0.0.2,127.0.0.3 127.0.0.4,127.0.0.5 127.0.0.6,127.0.0.7 127.0.0.8,127.0.0.9
         127.0.0.10,127.0.0.11 127.0.0.12,127.0.0.13 127.0.0.14,127.0.0.15 127.0.0.16,127.0.0.17)

cargo build --release -q -p presence-server -p loadtest
server_bin="$root/target/release/presence-server"
loadtest_bin="$root/target/release/loadtest"
source "$root/loadtest/server.sh"
out=$(mktemp -d /tmp/presence-bench.XXXXXX)
visitor_pids=()
agent_pid=""
cleanup() {
  for pid in "${visitor_pids[@]}" $agent_pid; do kill -INT "$pid" 2>/dev/null || true; done
  # Only the load processes: a bare `wait` would also wait for the
  # server, which is stopped next.
  for pid in "${visitor_pids[@]}" $agent_pid; do wait "$pid" 2>/dev/null || true; done
  stop_server
}
trap cleanup EXIT

# Waits until CONDITION (a shell command) holds, at most SECS; 1 if not.
wait_for() {
  local secs=$1; shift
  local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
  until eval "$@"; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
# The sum of FIELD over the visitor processes' status files.
status_sum() {
  python3 - "$1" "$out"/status-*.json <<'PY'
import json, sys
total = 0
for path in sys.argv[2:]:
    try:
        total += json.load(open(path)).get(sys.argv[1], 0)
    except (OSError, ValueError):
        pass
print(total)
PY
}
metric() { # the value of one gauge from /metrics
  python3 -c "import urllib.request,sys
for l in urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines():
    if l.startswith(sys.argv[2] + ' '): print(l.split()[1].split('.')[0])" \
    "http://$METRICS_BIND/metrics" "$1"
}
status_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER_PID/status"; }
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.1f", (a - b) / n}'; }
now() { date +%s.%N; }
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
# Holds when A <= B (floats).
at_most() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a <= b)}'; }

echo "== machine: CPU gaps over $GAP_SECS s with nothing else running"
python3 "$root/loadtest/vcpu_gaps.py" "$GAP_SECS" | tee "$out/machine.txt"
machine=$(tail -1 "$out/machine.txt")
gaps_ge_2ms=$(sed -n 's/^gaps_ge_2ms=\([0-9]*\).*/\1/p' <<<"$machine")
max_gap_ms=$(sed -n 's/.*max_gap_ms=\([0-9.]*\).*/\1/p' <<<"$machine")
share_in_gaps=$(sed -n 's/.*share_in_gaps_ge_2ms=\([0-9.]*\).*/\1/p' <<<"$machine")

ulimit -n "$(ulimit -Hn)"
METRICS_BIND="127.0.0.1:$(free_port)"
SERVER_LOG=warn start_server "$server_bin"
baseline=$(status_kib VmRSS)

# Agents first: visitors fill the server's open-file budget.
echo "== agents: $AGENT_SOCKETS idle agent sockets (after $AGENT_WARMUP to warm up)"
# Agents sign in with a login key: a password sign-in's hash takes 19 MiB
# for a moment, which the allocator keeps and which would count as ~19 KiB
# per socket. The warm-up takes the other one-time costs (the first token,
# the audit tree's first writes) out of the per-socket figure.
agent_pids=()
agent_sockets() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['agent_sockets'])" "$1" 2>/dev/null || echo 0; }
for phase in warmup measured; do
  count=$AGENT_WARMUP; [ "$phase" = measured ] && count=$AGENT_SOCKETS
  "$loadtest_bin" --server "$SERVER_URL" --visitors 0 --idle-agent-sockets "$count" \
    --api-key "$(sed -n 's/^api_key = "\([^"]*\)".*/\1/p' "$root/config/default.toml" | head -1)" \
    --ramp-rate 2000 --duration-secs 600 --status-file "$out/agents-$phase.json" \
    > "$out/agents-$phase.log" 2>&1 &
  agent_pids+=($!); agent_pid="${agent_pids[*]}"
  wait_for 120 "[ \"\$(agent_sockets $out/agents-$phase.json)\" -ge $count ]" \
    || { echo "agents: only $(agent_sockets "$out/agents-$phase.json") of $count sockets" >&2; exit 1; }
  sleep 5
  if [ "$phase" = warmup ]; then before_agents=$(status_kib VmRSS); fi
done
with_agents=$(status_kib VmRSS)
agent_per=$(per "$with_agents" "$before_agents" "$AGENT_SOCKETS")
for pid in "${agent_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; wait "$pid" || true; done
agent_pid=""
# Visitors next, on a fresh server (memory the agents freed would
# flatter them).
restart_server "$server_bin"
baseline=$(status_kib VmRSS)

shards=$(( (N + PER_PROCESS - 1) / PER_PROCESS ))
per_shard=$(( N / shards ))
total=$(( per_shard * shards ))
[ "$shards" -le "${#SOURCES[@]}" ] || { echo "at most ${#SOURCES[@]} visitor processes" >&2; exit 2; }
hold_secs=$(( (PHASE_SECS + 15) * $(wc -w <<<"$RATES") + 600 ))

echo "== ramp: $total visitors in $shards processes of $per_shard, $RAMP_RATE/s in total"
for ((s = 0; s < shards; s++)); do
  "$loadtest_bin" --server "$SERVER_URL" --shard "$s" --visitors "$per_shard" \
    --ramp-rate $(( RAMP_RATE / shards )) --duration-secs "$hold_secs" \
    --presence-every-secs 0 --source-addrs "${SOURCES[$s]}" --reconnect \
    --large-update-bytes "$LARGE_BYTES" --status-file "$out/status-$s.json" \
    > "$out/visitors-$s.log" 2>&1 &
  visitor_pids+=($!)
done
wait_for 300 '[ "$(status_sum connected)" -ge "$total" ]' || { echo "ramp: not all visitors connected" >&2; exit 1; }
# The setup rate from the first connection to the last socket opened over
# all the processes (their own clocks' readings, not this script's polling
# of status files, which would add up to a quarter of a second); a visitor
# whose first attempt failed counts when its reconnect opened. 0 if a
# process reported no connection.
setup=$(python3 - "$total" "$out"/status-*.json <<'PY'
import json, sys
stats = [json.load(open(p)) for p in sys.argv[2:]]
firsts = [s.get("first_connect_ms") for s in stats]
lasts = [s.get("last_open_ms") for s in stats]
if None in firsts or None in lasts:
    print(0)
else:
    print(round(int(sys.argv[1]) / max(max(lasts) - min(firsts), 1) * 1000))
PY
)
ramp_failures=$(status_sum connect_failures)

echo "== idle"
sleep 5   # at rest: let allocators settle before reading RSS
idle=$(status_kib VmRSS)
# The high-water mark after the rest too: the last hellos may still have
# been in flight when the count was reached.
peak=$(status_kib VmHWM)
open=$(ls "/proc/$SERVER_PID/fd" | wc -l)
idle_per=$(per "$idle" "$baseline" "$total")
peak_per=$(per "$peak" "$baseline" "$total")

echo "== large: one $LARGE_BYTES-byte presence update per visitor"
for pid in "${visitor_pids[@]}"; do kill -USR1 "$pid"; done
wait_for 120 '[ "$(status_sum large_updates)" -ge "$total" ]' || { echo "large: not every visitor sent its update" >&2; exit 1; }
sleep 5   # idle again
after_large=$(status_kib VmRSS)
large_per=$(per "$after_large" "$baseline" "$total")

rows=()
invoke_ok=true
for rate in $RATES; do
  echo "== invokes at $rate/s"
  log="$out/invokes-$rate.log"
  within_before=$(metric 'presence_invoke_duration_seconds_bucket{le="0.002"}' || echo 0)
  count_before=$(metric presence_invoke_duration_seconds_count || echo 0)
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
  # The server's own histogram (routing to result, the visitor's answer
  # included) over the phase: the share of invokes within 2 ms.
  within=$(( $(metric 'presence_invoke_duration_seconds_bucket{le="0.002"}' || echo 0) - within_before ))
  counted=$(( $(metric presence_invoke_duration_seconds_count || echo 0) - count_before ))
  server_share=$(awk -v a="$within" -v b="$counted" 'BEGIN {if (b > 0) printf "%.2f%%", a * 100 / b; else print "?"}')
  rows+=("| $rate | $achieved | ${p50:-?} | ${p99:-?} | ${p999:-?} | ${max:-?} | $server_share | ${clean:-?} | ${lost:-?} |")
  if [ "${lost:-1}" != 0 ] || [ "${clean:-1}" != 0 ]; then invoke_ok=false; fi
  if [ "$rate" = 5000 ]; then p99_5000=${p99:-999999}; p999_5000=${p999:-999999}; fi
done
sleep 5   # idle again
after_invokes=$(status_kib VmRSS)

echo "== storm: restart under $total visitors"
drops_before=$(status_sum drops)
retries_before=$(status_sum reconnect_attempts_failed)
storm_start=$(now)
restart_server "$server_bin"
ready_at=$(now)
wait_for 120 '[ "$(status_sum drops)" -ge $(( drops_before + total )) ] && [ "$(status_sum connected)" -ge "$total" ]' \
  || { echo "storm: only $(status_sum connected) of $total back online" >&2; storm_failed=1; }
online_at=$(now)
storm_secs=$(secs_between "$storm_start" "$online_at")
storm_after_ready=$(secs_between "$ready_at" "$online_at")
storm_retries=$(( $(status_sum reconnect_attempts_failed) - retries_before ))
mailbox_peak=$(metric presence_registry_mailbox_peak || echo "?")

check() { if eval "$2"; then echo "| $1 | yes |"; else echo "| $1 | **no** |"; missed=1; fi; }
missed=0
targets=$(
  check "RSS per idle visitor ≤ 8 KiB" "at_most $idle_per 8"
  check "RSS per idle agent socket ≤ 12 KiB" "at_most $agent_per 12"
  check "peak during the ramp ≤ 1.5 × idle" "at_most $peak_per $(awk -v a="$idle_per" 'BEGIN {print a * 1.5}')"
  check "after a large update ≤ 1.5 × idle" "at_most $large_per $(awk -v a="$idle_per" 'BEGIN {print a * 1.5}')"
  check "storm: all online within $STORM_LIMIT_SECS s" "[ -z \"${storm_failed:-}\" ] && at_most $storm_secs $STORM_LIMIT_SECS"
  check "setup ≥ 8,000/s" "[ $setup -ge 8000 ]"
  if [ -n "${p99_5000:-}" ]; then
    check "5,000/s: p99 ≤ 2 ms, p99.9 ≤ 5 ms" "[ $p99_5000 -le 2000 ] && [ $p999_5000 -le 5000 ]"
  else
    # Not shown to hold, so not held: the exit status stays 1.
    echo "| 5,000/s: p99 ≤ 2 ms, p99.9 ≤ 5 ms | **not measured** (RATES=\"$RATES\") |"
    missed=1
  fi
  check "every invoke answered, no errors" "$invoke_ok"
  exit $missed
) && missed=0 || missed=1

cat <<TABLE

== presence-server benchmark ($(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); load generator on the same machine)
command: N=$N RATES="$RATES" PHASE_SECS=$PHASE_SECS bash loadtest/bench.sh

| figure | value |
|---|---|
| machine, idle: CPU taken away for ≥ 2 ms | $gaps_ge_2ms times in $GAP_SECS s over $(nproc) CPUs, longest $max_gap_ms ms ($share_in_gaps% of the time) |
| visitors connected | $total (server open files: $open; $ramp_failures connect attempts failed in the ramp) |
| connection setup | $setup sockets/s |
| server RSS | baseline $((baseline / 1024)) MiB, idle with visitors $((idle / 1024)) MiB |
| RSS per idle visitor connection | $idle_per KiB |
| RSS per idle agent socket ($AGENT_SOCKETS sockets after $AGENT_WARMUP) | $agent_per KiB |
| peak RSS per visitor during the ramp (VmHWM) | $peak_per KiB |
| RSS per visitor after the invoke phases | $(per "$after_invokes" "$baseline" "$total") KiB |
| RSS per visitor after one $LARGE_BYTES-byte update each | $large_per KiB |
| reconnect storm: all $total online again | $storm_secs s after the restart began ($storm_after_ready s after the new server answered; $storm_retries attempts retried) |
| registry mailbox, peak depth in the storm | $mailbox_peak messages |

| target rate (invokes/s) | achieved | p50 µs | p99 µs | p99.9 µs | max µs | server-side ≤ 2 ms | clean errors | lost |
|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

| target | held |
|---|---|
$targets

logs: $out
TABLE
exit "$missed"
