#!/usr/bin/env bash
# Heap profile of idle sockets: runs the release server under heaptrack,
# connects VISITORS idle visitors (or AGENTS idle agent sockets), and
# optionally has every visitor send one LARGE_BYTES message first, and
# optionally runs INVOKE_RATE REST invokes/s at them for INVOKE_SECS; then,
# with the sockets idle, kills the server (SIGKILL, so nothing is freed on
# the way out) and prints where the heap still held goes, per socket:
# heaptrack's "leaked" memory is exactly what was live at the kill.
# Needs heaptrack (Debian: apt-get install heaptrack) and rustfilt
# (cargo install rustfilt). Exits 0 when the profile was printed.
#
#   bash loadtest/heap-profile.sh                  # 2000 idle visitors
#   LARGE_BYTES=61440 bash loadtest/heap-profile.sh
#   VISITORS=0 AGENTS=1000 bash loadtest/heap-profile.sh
#   INVOKE_RATE=1000 INVOKE_SECS=10 bash loadtest/heap-profile.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
VISITORS=${VISITORS:-2000}
AGENTS=${AGENTS:-0}
LARGE_BYTES=${LARGE_BYTES:-0}
SETTLE_SECS=${SETTLE_SECS:-5}
INVOKE_RATE=${INVOKE_RATE:-0}
INVOKE_SECS=${INVOKE_SECS:-10}
TOP=${TOP:-25}
for tool in heaptrack heaptrack_print rustfilt; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 2; }
done

cargo build --release -q -p presence-server -p loadtest
out=$(mktemp -d /tmp/presence-heap.XXXXXX)
cat > "$out/server" <<WRAP
#!/usr/bin/env bash
exec heaptrack -o "$out/heap" "$root/target/release/presence-server" "\$@"
WRAP
chmod +x "$out/server"
source "$root/loadtest/server.sh"
load_pid=""
cleanup() {
  [ -z "$load_pid" ] || { kill -INT "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; }
  stop_server
}
trap cleanup EXIT
SERVER_LOG=warn start_server "$out/server"
server=$(pgrep -f "^$root/target/release/presence-server serve --config $SERVER_DIR")
args=(--server "$SERVER_URL" --visitors "$VISITORS" --ramp-rate 1000 --duration-secs 600
      --presence-every-secs 0 --large-update-bytes "$LARGE_BYTES" --status-file "$out/status.json")
if [ "$AGENTS" -gt 0 ]; then args+=(--idle-agent-sockets "$AGENTS"); fi
"$root/target/release/loadtest" "${args[@]}" > "$out/loadtest.log" 2>&1 &
load_pid=$!
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$out/status.json" "$1" 2>/dev/null || echo 0; }
# Waits until CONDITION holds, at most SECS; 1 if not.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until eval "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
wait_for 120 '[ "$(field connected)" -ge "$VISITORS" ] && [ "$(field agent_sockets)" -ge "$AGENTS" ]' \
  || { echo "only $(field connected) visitors and $(field agent_sockets) agent sockets connected" >&2; exit 1; }
if [ "$LARGE_BYTES" -gt 0 ]; then
  kill -USR1 "$load_pid"
  wait_for 60 '[ "$(field large_updates)" -ge "$VISITORS" ]' \
    || { echo "only $(field large_updates) of $VISITORS large updates sent" >&2; exit 1; }
fi
if [ "$INVOKE_RATE" -gt 0 ]; then
  "$root/target/release/loadtest" --server "$SERVER_URL" --visitors 0 --invoke-rate "$INVOKE_RATE" --target-shards 1 \
    --target-per-shard "$VISITORS" --ramp-rate 1000 --duration-secs "$INVOKE_SECS" \
    > "$out/invokes.log" 2>&1 || { echo "the invoke phase failed:" >&2; tail -5 "$out/invokes.log" >&2; exit 1; }
  grep "invoke round trip" "$out/invokes.log"
fi
sleep "$SETTLE_SECS"
kill -KILL "$server"
wait "$SERVER_PID" || true
cleanup; trap - EXIT
sockets=$(( VISITORS + AGENTS ))
file=$(ls -S "$out"/heap*.zst | head -1)
heaptrack_print --print-flamegraph "$out/stacks.txt" --flamegraph-cost-type leaked "$file" > "$out/summary.txt"
rustfilt < "$out/stacks.txt" > "$out/stacks.demangled.txt"
echo "== heap live with $VISITORS idle visitors + $AGENTS agent sockets (large message: $LARGE_BYTES bytes; invokes: $INVOKE_RATE/s for $INVOKE_SECS s)"
python3 "$root/loadtest/heap_sites.py" "$out/stacks.demangled.txt" "$sockets" "$TOP"
echo "profile: $file"
