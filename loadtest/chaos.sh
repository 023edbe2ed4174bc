#!/usr/bin/env bash
# Chaos run: HAProxy (WebSocket-aware, health checks on /healthz, adding
# X-Forwarded-For) in front of NODES cluster nodes on one redis-server
# (AOF, appendfsync always). VISITORS visitors connect through HAProxy from
# 16 source addresses per generator and reconnect through it when dropped;
# agents invoke at RATE/s through it; the probe makes confirmation grants
# and revocations through it. Then each fault in FAULTS, in turn:
#   kill     kill -9 of one node (restarted afterwards)
#   redis    kill -9 of redis-server, restarted on the same AOF
#   rolling  SIGTERM of every node, one at a time, each restarted
# After each fault: seconds until every visitor is online again (a socket
# through HAProxy to a live node, and an entry on a live node in Redis);
# invokes lost (no answer), late (past the deadline) or run twice; grants
# and revocations lost (checked on every node); ghost entries in Redis
# after the lease and the grace period. Also checks that the nodes see
# the client's address through HAProxy (audit record, per-client lockout,
# per-client socket cap). Exits 1 when any target is missed.
#
#   bash loadtest/chaos.sh                          # 8000 visitors, 500/s, kill redis rolling
#   VISITORS=300 RATE=50 PHASE_SECS=20 FAULTS=kill LEASE_MS=3000 CHAOS_BUILD=debug bash loadtest/chaos.sh   # CI
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
VISITORS=${VISITORS:-8000}
RATE=${RATE:-500}
NODES=${NODES:-3}
PHASE_SECS=${PHASE_SECS:-45}
FAULTS=${FAULTS:-"kill redis rolling"}
LEASE_MS=${LEASE_MS:-10000}
GRACE_MS=5000
KILL_TARGET_SECS=30
REDIS_TARGET_SECS=10
PER_PROCESS=${PER_PROCESS:-4000}
for tool in redis-server haproxy python3; do
  command -v "$tool" >/dev/null || { echo "chaos: $tool is required (.ci/run installs it)" >&2; exit 1; }
done

case "${CHAOS_BUILD:-release}" in
  release) cargo build --release -q -p presence-server -p loadtest; bin=$root/target/release ;;
  debug) cargo build -q -p presence-server -p loadtest; bin=$root/target/debug ;;
  *) echo "CHAOS_BUILD must be release or debug" >&2; exit 2 ;;
esac
source "$root/loadtest/server.sh"
out=$(mktemp -d /tmp/presence-chaos.XXXXXX)
ulimit -n "$(ulimit -Hn)"
BALANCER=127.0.0.254
pids=()
declare -A node_pid node_port

redis_port=$(free_port)
start_redis() {
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$out" --appendonly yes \
    --appendfsync always --save "" --daemonize no >> "$out/redis.log" 2>&1 &
  redis_pid=$!
  until redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; do sleep 0.05; done
}

healthy() { python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1/healthz" 2>/dev/null; }

# Node i on its fixed port and data directory (kept across restarts).
start_node() {
  local i=$1 dir=$out/node$1
  mkdir -p "$dir"
  sed -e "s#^bind = .*#bind = \"127.0.0.1:${node_port[$i]}\"#" \
      -e "s#^data_dir = .*#data_dir = \"${dir}/data\"#" \
      -e "s#^metrics_bind = .*#metrics_bind = \"\"#" \
      "$root/config/default.toml" > "$dir/presence.toml"
  PRESENCE__CLUSTER__MODE=redis \
  PRESENCE__CLUSTER__REDIS_URL="redis://127.0.0.1:${redis_port}/0" \
  PRESENCE__CLUSTER__NODE_LEASE_MS=$LEASE_MS \
  PRESENCE__PRESENCE__RECONNECT_GRACE_MS=$GRACE_MS \
  PRESENCE__SERVER__TRUSTED_PROXIES="[\"$BALANCER/32\"]" \
  RUST_LOG=warn,presence_server=info "$bin/presence-server" serve --config "$dir/presence.toml" \
    >> "$dir/server.log" 2>&1 &
  node_pid[$i]=$!
  local deadline=$((SECONDS + 60))
  until healthy "http://127.0.0.1:${node_port[$i]}"; do
    kill -0 "${node_pid[$i]}" 2>/dev/null || { tail -20 "$dir/server.log"; return 1; }
    [ $SECONDS -lt $deadline ] || { echo "node $i did not become healthy"; return 1; }
    sleep 0.1
  done
}

node_urls=()
for ((i = 0; i < NODES; i++)); do
  node_port[$i]=$(free_port)
  node_urls+=("http://127.0.0.1:${node_port[$i]}")
done
lb_port=$(free_port)
stats_port=$(free_port)
LB=http://127.0.0.1:$lb_port
{
  cat <<CFG
global
  maxconn 9000
  log stdout format raw local0 info
defaults
  mode http
  log global
  option httplog
  option forwardfor
  timeout connect 2s
  timeout client 90s
  timeout server 90s
  timeout tunnel 1h
  timeout http-request 10s
  # Retry only what never reached a node: an invoke sent to a node that
  # died may have run, and must not run twice.
  retries 3
  retry-on conn-failure
  option redispatch
  # Errors of the balancer's own in the server's shape.
  http-error status 502 content-type application/json string '{"error":"bad_gateway","message":"the node serving this request went away before it answered; a request that changes something may have taken effect"}'
  http-error status 503 content-type application/json string '{"error":"service_unavailable","message":"no node is available"}'
  http-error status 504 content-type application/json string '{"error":"gateway_timeout","message":"the node did not answer in time"}'
frontend visitors_and_agents
  bind 127.0.0.1:$lb_port
  # Every request is the first and only one on its client connection.
  # When a node dies under a request that was not the first on a
  # kept-alive client connection, HAProxy closes that connection without
  # an answer, for the client to retry; an invoke (a POST) must not be
  # retried, as it may have run, so it would be lost. A request that is
  # first on its connection gets the 502 above instead. (WebSocket
  # upgrades are unaffected: the upgrade is their connection's only
  # request.)
  option httpclose
  default_backend nodes
frontend stats
  bind 127.0.0.1:$stats_port
  stats enable
  stats uri /stats
backend nodes
  balance leastconn
  option httpchk GET /healthz
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2 source $BALANCER
CFG
  for ((i = 0; i < NODES; i++)); do echo "  server n$i 127.0.0.1:${node_port[$i]} check"; done
} > "$out/haproxy.cfg"

cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for i in "${!node_pid[@]}"; do kill -TERM "${node_pid[$i]}" 2>/dev/null || true; done
  [ -n "${haproxy_pid:-}" ] && kill "$haproxy_pid" 2>/dev/null || true
  for i in "${!node_pid[@]}"; do wait "${node_pid[$i]}" 2>/dev/null || true; done
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT

start_redis
for ((i = 0; i < NODES; i++)); do start_node "$i"; done
haproxy -f "$out/haproxy.cfg" -db > "$out/haproxy.log" 2>&1 &
haproxy_pid=$!
# Until HAProxy's checks have every node up.
lb_up() {
  python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())" \
    "http://127.0.0.1:$stats_port/stats;csv" 2>/dev/null | awk -F, '$1=="nodes" && $2 ~ /^n/ && $18=="UP"' | wc -l
}
until [ "$(lb_up)" -eq "$NODES" ]; do kill -0 "$haproxy_pid" || { cat "$out/haproxy.log"; exit 1; }; sleep 0.1; done

echo "== the nodes see the client's address through HAProxy"
forwarded=$("$bin/chaos_probe" forwarded --url "$LB" --balancer "$BALANCER" --clients 127.3.0.1,127.3.0.2)
echo "$forwarded"

shards=$(( (VISITORS + PER_PROCESS - 1) / PER_PROCESS ))
per_shard=$(( VISITORS / shards ))
VISITORS=$(( per_shard * shards ))
status_files=()
for ((s = 0; s < shards; s++)); do
  sources=$(for a in $(seq 1 16); do printf '127.2.%d.%d,' "$s" "$a"; done)
  "$bin/loadtest" --server "$LB" --shard "$s" --visitors "$per_shard" --reconnect \
    --ramp-rate 1000 --duration-secs 3600 --presence-every-secs 20 \
    --source-addrs "${sources%,}" --status-file "$out/visitors-$s.json" \
    > "$out/visitors-$s.log" 2>&1 &
  pids+=($!)
  status_files+=("$out/visitors-$s.json")
done
state() {
  python3 "$root/loadtest/cluster_state.py" "$redis_port" 72 "$VISITORS" \
    "$(IFS=,; echo "${node_urls[*]}")" "${status_files[@]}"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], -1))" "$1" "$2"; }
all_online() { local s; s=$(state); [ "$(field "$s" connected)" -ge "$VISITORS" ] && [ "$(field "$s" online)" -ge "$VISITORS" ]; }
wait_online() {  # seconds until every visitor is online, or "timeout"
  local start=$1 limit=$2
  while ! all_online; do
    if awk -v s="$start" -v l="$limit" -v n="$(date +%s.%N)" 'BEGIN {exit !(n - s > l)}'; then echo timeout; return; fi
    sleep 0.2
  done
  awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}'
}
echo "== $VISITORS visitors through HAProxy ($shards generators)"
ramp=$(wait_online "$(date +%s.%N)" 300)
[ "$ramp" != timeout ] || { echo "chaos: the visitors never all came online: $(state)"; exit 1; }
echo "online after ${ramp} s: $(state)"

rows=()
failed=0
for fault in $FAULTS; do
  phase_out=$out/$fault
  mkdir -p "$phase_out"
  dup_before=$(field "$(state)" duplicates)
  # One agent per 25/s: each waits for its answer, so a slow moment does
  # not cut the rate.
  agent_count=$(( (RATE + 24) / 25 ))
  "$bin/loadtest" --server "$LB" --visitors 0 --invoke-rate "$RATE" --agents "$agent_count" \
    --target-shards "$shards" --target-per-shard "$per_shard" --ramp-rate 1000 \
    --duration-secs "$PHASE_SECS" --status-file "$phase_out/agents.json" \
    > "$phase_out/agents.log" 2>&1 &
  agents=$!
  "$bin/chaos_probe" work --url "$LB" --journal "$out/journal.jsonl" --secs "$PHASE_SECS" \
    > "$phase_out/probe.log" 2>&1 &
  probe=$!
  # Let the agents reach their rate, so the fault hits work in flight.
  until [ -s "$phase_out/agents.json" ] && [ "$(field "$(cat "$phase_out/agents.json")" invokes_sent)" -gt 0 ]; do sleep 0.1; done
  sleep 2
  start=$(date +%s.%N)
  case $fault in
    kill)
      kill -9 "${node_pid[1]}"; wait "${node_pid[1]}" 2>/dev/null || true
      recovery=$(wait_online "$start" $((KILL_TARGET_SECS * 2)))
      target=$KILL_TARGET_SECS
      start_node 1 ;;
    redis)
      kill -9 "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
      start_redis
      for url in "${node_urls[@]}"; do until healthy "$url"; do sleep 0.1; done; done
      recovery=$(wait_online "$start" $((REDIS_TARGET_SECS * 2)))
      target=$REDIS_TARGET_SECS ;;
    rolling)
      worst=0
      for ((i = 0; i < NODES; i++)); do
        at=$(date +%s.%N)
        kill -TERM "${node_pid[$i]}"; wait "${node_pid[$i]}" 2>/dev/null || true
        start_node "$i"
        until [ "$(lb_up)" -eq "$NODES" ]; do sleep 0.1; done
        took=$(wait_online "$at" $((KILL_TARGET_SECS * 2)))
        [ "$took" = timeout ] && { worst=timeout; break; }
        worst=$(awk -v a="$worst" -v b="$took" 'BEGIN {print (b > a) ? b : a}')
      done
      recovery=$worst
      target=$KILL_TARGET_SECS ;;
    *) echo "unknown fault $fault" >&2; exit 2 ;;
  esac
  wait "$agents" || true
  wait "$probe" || true
  # Ghosts: after the lease and the grace period, every entry stands for a socket.
  sleep $(( (LEASE_MS + GRACE_MS) / 1000 + 2 ))
  settled=$(wait_online "$(date +%s.%N)" 60)
  after=$(state)
  [ "$settled" != timeout ] || { echo "$fault: visitors not all online after the phase: $after"; failed=1; }
  ghosts=$(field "$after" ghosts)
  dups=$(( $(field "$after" duplicates) - dup_before ))
  agents_json=$(cat "$phase_out/agents.json")
  lost=$(field "$agents_json" lost)
  late=$(field "$agents_json" late)
  sent=$(field "$agents_json" invokes_sent)
  ok=$(field "$agents_json" invokes_ok)
  clean=$(field "$agents_json" errors)
  # HAProxy's 502: the node died under the invoke, which may have run.
  # Only an invoke in flight on the dead node can get one, and each agent
  # has at most one in flight.
  bad_gateway=$(sed -n 's/^error invoke:502 bad_gateway: \([0-9]*\)$/\1/p' "$phase_out/agents.log")
  bad_gateway=${bad_gateway:-0}
  gateway_limit=$agent_count; [ "$fault" = rolling ] && gateway_limit=$((agent_count * NODES))
  live_urls=$(IFS=,; echo "${node_urls[*]}")
  if checked=$("$bin/chaos_probe" check --nodes "$live_urls" --journal "$out/journal.jsonl" 2> "$phase_out/check.err"); then
    state_lost=0
  else
    state_lost=$(sed -n 's/.*FAILED: \([0-9]*\) lost.*/\1/p' "$phase_out/check.err")
    state_lost=${state_lost:-1}
    cat "$phase_out/check.err"
  fi
  made=$(tail -1 "$phase_out/probe.log")
  verdict=ok
  if [ "$recovery" = timeout ] || awk -v r="$recovery" -v t="$target" 'BEGIN {exit !(r > t)}' \
     || [ "$lost" -ne 0 ] || [ "$late" -ne 0 ] || [ "$bad_gateway" -gt "$gateway_limit" ] || [ "$dups" -ne 0 ] || [ "$state_lost" -ne 0 ] || [ "$ghosts" -ne 0 ]; then
    verdict=MISSED; failed=1
  fi
  rows+=("| $fault | $recovery (≤ $target) | $sent | $ok | $clean | $bad_gateway (≤ $gateway_limit) | $lost | $late | $dups | $state_lost | $ghosts | $verdict |")
  echo "$fault: recovery $recovery s, invokes $sent sent / $ok ok / $clean clean errors ($bad_gateway 502) / $lost lost / $late late / $dups twice; probe $made; checked $checked; ghosts $ghosts"
done

cat <<TABLE

== presence-server chaos run ($(date -u +%Y-%m-%d), $(nproc) cores, $(haproxy -v | sed -n 1p | awk '{print $1, $3}'), $(redis-server --version | awk '{print $3}'))
command: VISITORS=$VISITORS RATE=$RATE NODES=$NODES PHASE_SECS=$PHASE_SECS FAULTS="$FAULTS" bash loadtest/chaos.sh
client address through HAProxy: $forwarded

| fault | all visitors online again (s) | invokes sent | ok | clean errors | of which 502, may have run | lost | late | run twice | grants + revocations lost | ghosts | |
|---|---|---|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

logs: $out
TABLE
exit $failed
