#!/usr/bin/env bash
# The fuzz step of CI: every target for 20 s (FUZZ_SECONDS) on the
# committed corpus. Fails on any crash, leak or timeout. Installs
# cargo-fuzz from crates.io when it is missing; uses a nightly toolchain
# when the machine has one, else the stable compiler (see run.sh).
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
exec ./run.sh "${FUZZ_SECONDS:-20}"
