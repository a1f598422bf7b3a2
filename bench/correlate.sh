#!/usr/bin/env bash
# Throughput (records/s) and memory (peak RSS) of the `correlate` transform
# with 100,000 traces in flight: 1,000,000 synthetic traces of a device, a
# gateway and a rule-engine log record each, the gateway's record arriving
# 50,000 traces after the device's and the rule's 100,000 after. Builds and
# runs crates/iotel-components/examples/correlate.rs in release.
#
#   bash bench/correlate.sh [traces] [in_flight]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
cargo build --quiet --release -p iotel-components --example correlate
exec "$CARGO_TARGET_DIR/release/examples/correlate" "$@"
