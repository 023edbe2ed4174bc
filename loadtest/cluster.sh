#!/usr/bin/env bash
# Exits 1 when one of the targets it checks at the end was missed.
# The cluster load test: a real redis-server (AOF, appendfsync always),
# NODES release nodes on loopback, and N_VISITORS visitors spread round
# robin over the nodes by sharded goose generators (at most PER_PROCESS
# sockets each, each generator on its own 16 loopback source addresses,
# so that every process stays under the 20,000-file limit). Phases: ramp
# to the target, hold idle for IDLE_SECS, then invokes at each of RATES
# for PHASE_SECS, cross-node (agents ask a node other than the visitor's)
# and same-node. Prints one table with the targets of issue 17.
#
#   bash loadtest/cluster.sh                                   # 100,000 visitors, 6 nodes
#   N_VISITORS=6000 NODES=3 RATES="2000" PHASE_SECS=10 IDLE_SECS=20 bash loadtest/cluster.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N_VISITORS=${N_VISITORS:-100000}
NODES=${NODES:-6}
RATES=${RATES:-"2000 5000"}
PHASE_SECS=${PHASE_SECS:-20}
IDLE_SECS=${IDLE_SECS:-60}
PER_PROCESS=${PER_PROCESS:-12500}
RAMP_RATE=${RAMP_RATE:-3000}
command -v redis-server >/dev/null || { echo "redis-server is required (apt-get install redis-server)" >&2; exit 1; }

cargo build --release -q -p presence-server -p loadtest
server_bin="$root/target/release/presence-server"
loadtest_bin="$root/target/release/loadtest"
source "$root/loadtest/server.sh"
out=$(mktemp -d /tmp/presence-cluster.XXXXXX)
ulimit -n "$(ulimit -Hn)"

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$out" --appendonly yes \
  --appendfsync always --save "" --daemonize no > "$out/redis.log" 2>&1 &
redis_pid=$!
node_pids=() node_dirs=() node_urls=() generator_pids=()
cleanup() {
  for pid in "${generator_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${generator_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for i in "${!node_pids[@]}"; do SERVER_PID=${node_pids[$i]} SERVER_DIR=${node_dirs[$i]} stop_server; done
  kill "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT
until redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; do
  kill -0 "$redis_pid" || { cat "$out/redis.log"; exit 1; }
  sleep 0.05
done
redis_info() { redis-cli -p "$redis_port" info "$1" | tr -d '\r' | awk -F: -v k="$2" '$1 == k {print $2}'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
# CPU seconds used so far by the given processes (user + system).
cpu_secs() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}
# The machine's busy and total CPU seconds so far.
machine_secs() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%.2f %.2f", ($2+$3+$4+$7+$8+$9) / hz, ($2+$3+$4+$5+$6+$7+$8+$9) / hz}' /proc/stat
}
cores() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN {printf "%.2f", (b - a) / t}'; }

export PRESENCE__CLUSTER__MODE=redis
export PRESENCE__CLUSTER__REDIS_URL="redis://127.0.0.1:${redis_port}/0"
for ((i = 0; i < NODES; i++)); do
  SERVER_LOG=warn start_server "$server_bin"
  node_pids+=("$SERVER_PID") node_dirs+=("$SERVER_DIR") node_urls+=("$SERVER_URL")
done
servers=$(IFS=,; echo "${node_urls[*]}")
baseline_rss=0
for pid in "${node_pids[@]}"; do baseline_rss=$((baseline_rss + $(rss_kib "$pid"))); done
redis_mem0=$(redis_info memory used_memory)
redis_rss0=$(redis_info memory used_memory_rss)

shards=$(( (N_VISITORS + PER_PROCESS - 1) / PER_PROCESS ))
per_shard=$(( N_VISITORS / shards ))
total=$(( per_shard * shards ))
status_files=()
echo "== $total visitors over $NODES nodes, from $shards generators of $per_shard, ramp $RAMP_RATE/s in total"
start=$(date +%s.%N)
for ((s = 0; s < shards; s++)); do
  sources=$(for a in $(seq 1 16); do printf '127.1.%d.%d,' "$s" "$a"; done)
  "$loadtest_bin" --servers "$servers" --shard "$s" --visitors "$per_shard" --reconnect \
    --ramp-rate "$(awk -v r="$RAMP_RATE" -v n="$shards" 'BEGIN {print r / n}')" \
    --duration-secs 36000 --presence-every-secs 0 --source-addrs "${sources%,}" \
    --status-file "$out/visitors-$s.json" > "$out/visitors-$s.log" 2>&1 &
  generator_pids+=($!)
  status_files+=("$out/visitors-$s.json")
done
connected() { python3 -c 'import json,sys; print(sum(json.load(open(p)).get(sys.argv[1], 0) for p in sys.argv[2:]))' "$1" "${status_files[@]}" 2>/dev/null || echo 0; }
# Until every visitor holds a socket and has its entry in Redis.
deadline=$((SECONDS + total / 200 + 120))
until [ "$(connected connected)" -ge "$total" ] && \
      [ "$(redis-cli -p "$redis_port" hlen presence:presence:72)" -ge "$total" ]; do
  [ $SECONDS -lt $deadline ] || { echo "not all visitors connected: $(connected connected) of $total"; exit 1; }
  sleep 0.2
done
connected_at=$(date +%s.%N)
setup=$(awk -v n="$total" -v a="$start" -v b="$connected_at" 'BEGIN {printf "%.0f", n / (b - a)}')
first_failures=$(connected connect_failures)

echo "== idle for $IDLE_SECS s"
sleep 10   # at rest: let allocators settle before reading RSS
rss=0 max_fds=0
for pid in "${node_pids[@]}" "${generator_pids[@]}"; do
  n=$(fds "$pid"); [ "$n" -gt "$max_fds" ] && max_fds=$n
done
for pid in "${node_pids[@]}"; do rss=$((rss + $(rss_kib "$pid"))); done
per_visitor=$(awk -v r="$rss" -v b="$baseline_rss" -v n="$total" 'BEGIN {printf "%.1f", (r - b) / n}')
echo "server RSS per idle visitor: $per_visitor KiB"
redis_per_visitor=$(awk -v m="$(redis_info memory used_memory)" -v b="$redis_mem0" -v n="$total" 'BEGIN {printf "%.0f", (m - b) / n}')
redis_rss_per_visitor=$(awk -v m="$(redis_info memory used_memory_rss)" -v b="$redis_rss0" -v n="$total" 'BEGIN {printf "%.0f", (m - b) / n}')
commands0=$(redis_info stats total_commands_processed)
idle_nodes0=$(cpu_secs "${node_pids[@]}") idle_gens0=$(cpu_secs "${generator_pids[@]}")
idle_redis0=$(cpu_secs "$redis_pid")
read -r idle_busy0 _ <<<"$(machine_secs)"
sleep "$IDLE_SECS"
commands1=$(redis_info stats total_commands_processed)
idle_nodes=$(cores "$idle_nodes0" "$(cpu_secs "${node_pids[@]}")" "$IDLE_SECS")
idle_gens=$(cores "$idle_gens0" "$(cpu_secs "${generator_pids[@]}")" "$IDLE_SECS")
idle_redis=$(cores "$idle_redis0" "$(cpu_secs "$redis_pid")" "$IDLE_SECS")
read -r idle_busy1 _ <<<"$(machine_secs)"
idle_machine=$(cores "$idle_busy0" "$idle_busy1" "$IDLE_SECS")
per_minute=$(awk -v a="$commands0" -v b="$commands1" -v n="$total" -v t="$IDLE_SECS" 'BEGIN {printf "%.4f", (b - a - 1) / n / (t / 60)}')

rows=()
answered_all=true
for rate in $RATES; do
  for routing in cross-node same-node; do
    log="$out/agents-$rate-$routing.log"
    flag=(); [ "$routing" = same-node ] && flag=(--same-node)
    nodes0=$(cpu_secs "${node_pids[@]}")
    redis0=$(cpu_secs "$redis_pid")
    read -r busy0 _ <<<"$(machine_secs)"
    phase_start=$(date +%s.%N)
    # One agent per 25/s: each waits for its answer before the next.
    "$loadtest_bin" --servers "$servers" "${flag[@]}" --visitors 0 --invoke-rate "$rate" \
      --agents $(( (rate + 24) / 25 )) \
      --target-shards "$shards" --target-per-shard "$per_shard" \
      --ramp-rate 1000 --duration-secs "$PHASE_SECS" > "$log" 2>&1 || true
    phase_secs=$(awk -v a="$phase_start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
    nodes1=$(cpu_secs "${node_pids[@]}")
    redis1=$(cpu_secs "$redis_pid")
    read -r busy1 _ <<<"$(machine_secs)"
    line=$(grep "invoke round trip" "$log" || echo "invoke round trip: none")
    counts=$(grep "^agents:" "$log" || echo "agents: none")
    p50=$(sed -n 's/.*p50 \([0-9]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99 \([0-9]*\).*/\1/p' <<<"$line")
    p999=$(sed -n 's/.*p99\.9 \([0-9]*\).*/\1/p' <<<"$line")
    n=$(sed -n 's/.*(n=\([0-9]*\)).*/\1/p' <<<"$line")
    achieved=$(awk -v n="${n:-0}" -v t="$PHASE_SECS" 'BEGIN {printf "%.0f", n / t}')
    clean=$(sed -n 's/.*, \([0-9]*\) clean errors.*/\1/p' <<<"$counts")
    lost=$(sed -n 's/.*, \([0-9]*\) lost.*/\1/p' <<<"$counts")
    ms() { awk -v u="${1:-0}" 'BEGIN {printf "%.2f", u / 1000}'; }
    # The nodes' CPU per invoke: what they used beyond their idle rate.
    node_ms=$(awk -v a="$nodes0" -v b="$nodes1" -v i="$idle_nodes" -v t="$phase_secs" -v n="${n:-0}" \
      'BEGIN {if (n > 0) printf "%.2f", (b - a - i * t) * 1000 / n; else print "-"}')
    if [ "${lost:-1}" != 0 ] || [ "${clean:-1}" != 0 ]; then answered_all=false; fi
    rows+=("| $rate | $routing | $achieved | $(ms "$p50") | $(ms "$p99") | $(ms "$p999") | ${clean:-?} | ${lost:-?} | $node_ms | $(cores "$redis0" "$redis1" "$phase_secs") | $(cores "$busy0" "$busy1" "$phase_secs") of $(nproc) |")
  done
done
offline=$(( total - $(connected connected) ))

cat <<TABLE

== presence-server cluster load test ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), redis $(redis-server --version | awk '{print $3}'); $NODES nodes, Redis and $shards load generators on the same machine)
command: N_VISITORS=$N_VISITORS NODES=$NODES RATES="$RATES" PHASE_SECS=$PHASE_SECS IDLE_SECS=$IDLE_SECS bash loadtest/cluster.sh

| figure | value | target |
|---|---|---|
| visitors held | $total over $NODES nodes ($first_failures first attempts failed and were retried; $offline offline at the end) | 100,000 over 6 nodes |
| most open files in one process | $max_fds | < 20,000 |
| connections per second (ramp) | $setup | |
| server RSS per idle visitor | $per_visitor KiB (sum over nodes less their baselines) | ≤ 16 KiB |
| Redis memory per visitor | $redis_per_visitor B used_memory, $redis_rss_per_visitor B RSS | ≤ 1 KiB |
| Redis commands per idle visitor per minute | $per_minute | ≤ 1 |
| CPU while idle, in cores | nodes $idle_nodes, generators $idle_gens, Redis $idle_redis; machine $idle_machine of $(nproc) | |

| invokes/s asked | routing | achieved/s | p50 ms | p99 ms | p99.9 ms | clean errors | lost | node CPU ms per invoke | Redis cores | machine busy cores |
|---|---|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

logs: $out
TABLE

# The targets this script can judge on its own; exit 1 if one was missed.
held() { if eval "$2"; then echo "target held: $1"; else echo "TARGET MISSED: $1"; missed=1; fi; }
missed=0
held "every visitor online at the end" '[ "$offline" -le 0 ]'
held "server RSS per idle visitor ≤ 16 KiB" "awk -v a=$per_visitor 'BEGIN {exit !(a <= 16)}'"
held "Redis memory per visitor ≤ 1 KiB" '[ "$redis_per_visitor" -le 1024 ]'
held "Redis commands per idle visitor per minute ≤ 1" "awk -v a=$per_minute 'BEGIN {exit !(a <= 1)}'"
held "every invoke answered, no clean errors" '$answered_all'
exit "$missed"
