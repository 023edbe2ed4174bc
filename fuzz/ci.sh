#!/usr/bin/env bash
# The fuzz step of CI (draft; .ci/run does not call it yet): every target
# for 20 s on the committed corpus. Fails on any crash, leak or timeout.
set -euo pipefail
cd "$(dirname "$0")"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
exec ./run.sh "${FUZZ_SECONDS:-20}"
