#!/usr/bin/env bash
# Encoded size of the reference edge metrics (one target of 2,000 gauge
# series, as in edge-scrape-remote-write.sh) in the native batch format
# against Prometheus remote write and OTLP, per batch of 1, 5, 10 and 30
# scrapes. Builds and runs crates/iotel-formats/examples/encoded_size.rs in
# release and prints its tables; the run is seeded, so it prints the same
# numbers every time.
#
#   bash bench/encoded-size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
cargo build --quiet --release -p iotel-formats --example encoded_size
exec "$CARGO_TARGET_DIR/release/examples/encoded_size"
