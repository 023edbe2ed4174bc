#!/usr/bin/env bash
# Crash safety: kill -9 the server at random points and check that all
# acknowledged work survives each restart (confirmations, tokens and their
# audit records, revocations, website sessions and logouts, SSO token ids,
# session keys, and tokens of every rotated signing key).
#
#   loadtest/crash.sh ROUNDS [crash options...]   e.g. loadtest/crash.sh 200
#
# Builds and runs the release server. CRASH_BUILD=debug uses the debug
# build instead (CI's short round, which already has it). Prints a line
# every 10 rounds and a summary; exits non-zero on the first lost item,
# naming it and the server log (kept with --keep DIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds=${1:?usage: loadtest/crash.sh ROUNDS [--keep DIR] [--workers N] [--min-kill-ms MS] [--max-kill-ms MS]}
shift
case "${CRASH_BUILD:-release}" in
  release) cargo build --release -q -p presence-server -p loadtest; dir=${CARGO_TARGET_DIR:-target}/release ;;
  debug) cargo build -q -p presence-server -p loadtest; dir=${CARGO_TARGET_DIR:-target}/debug ;;
  *) echo "CRASH_BUILD must be release or debug" >&2; exit 2 ;;
esac
exec "$dir/crash" --rounds "$rounds" --binary "$dir/presence-server" \
  --sso-key tests/keys/group72-a.key.pem --sso-public-key tests/keys/group72-a.pub.pem "$@"
