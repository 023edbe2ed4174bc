#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after the other (one fuzz
# process at a time), on a scratch copy of the committed seeds, so that
# fuzz/corpus/ stays small. Prints each target's executions and stops at
# the first crash (its input lands in fuzz/artifacts/<target>/).
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked) and a nightly
# toolchain; without one, the stable compiler is told to accept
# cargo-fuzz's unstable flags (RUSTC_BOOTSTRAP=1).
set -euo pipefail
cd "$(dirname "$0")"

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list)
fi

"${fuzz[@]}" build
total=0
for target in "${targets[@]}"; do
  mkdir -p "work/corpus/$target" "corpus/$target"
  log="work/$target.log"
  echo "== $target (${seconds}s)"
  # The first directory takes new inputs; the committed seeds are only read.
  if ! "${fuzz[@]}" run "$target" "work/corpus/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "!! $target failed; see fuzz/$log and fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "   executions: ${runs:-?}"
  total=$((total + ${runs:-0}))
done
echo "== total executions: $total"
