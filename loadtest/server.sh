# Sourced by smoke.sh and bench.sh: starts presence-server on a free
# loopback port with a throwaway data directory and the demo group.
#   start_server BINARY   -> sets SERVER_URL, SERVER_PID, SERVER_DIR
#                            (METRICS_BIND=127.0.0.1:PORT also serves /metrics)
#   restart_server BINARY -> stops it and starts it again on the same port
#                            and data directory (sets SERVER_PID)
#   stop_server

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_server() {
  local binary=$1
  local port
  port=$(free_port)
  SERVER_DIR=$(mktemp -d /tmp/presence-loadtest.XXXXXX)
  SERVER_URL="http://127.0.0.1:${port}"
  sed -e "s#^bind = .*#bind = \"127.0.0.1:${port}\"#" \
      -e "s#^data_dir = .*#data_dir = \"${SERVER_DIR}/data\"#" \
      -e "s#^public_url = .*#public_url = \"${SERVER_URL}\"#" \
      -e "s#^metrics_bind = .*#metrics_bind = \"${METRICS_BIND:-}\"#" \
      -e "s#^origins = .*#origins = [\"${SERVER_URL}\"]#" \
      "$(dirname "${BASH_SOURCE[0]}")/../config/default.toml" > "${SERVER_DIR}/presence.toml"
  launch_server "$binary"
}

# Starts BINARY on the config in SERVER_DIR and waits until it answers.
launch_server() {
  local binary=$1
  # The load generator's thousands of visitors come from a few loopback
  # addresses, so the per-client caps (meant for real clients) are lifted.
  PRESENCE__SERVER__MAX_SOCKETS_PER_IP=${LOADTEST_MAX_SOCKETS_PER_IP:-250000} \
  PRESENCE__SERVER__MAX_CONNECTIONS_PER_IP=${LOADTEST_MAX_CONNECTIONS_PER_IP:-250000} \
  RUST_LOG=${SERVER_LOG:-warn,presence_server=info} "$binary" serve --config "${SERVER_DIR}/presence.toml" \
    >> "${SERVER_DIR}/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "${SERVER_URL}/healthz" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      cat "${SERVER_DIR}/server.log"; return 1
    fi
    sleep 0.1
  done
  echo "server did not start"; cat "${SERVER_DIR}/server.log"; return 1
}

restart_server() {
  local binary=$1
  if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  launch_server "$binary"
}

stop_server() {
  if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  rm -rf "${SERVER_DIR:-/nonexistent}"
}
