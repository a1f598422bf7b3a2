#!/usr/bin/env bash
# Encoded bytes per span: OTLP protobuf (plain and gzipped, as OTLP/HTTP
# sends it) against the native batch format (none, snappy, zstd, lz4), on
# the same device and gateway spans, in batches of 1, 10, 100 and 1,000
# spans. Builds and runs crates/iotel-formats/examples/span_sizes.rs in
# release and prints its tables; the run is seeded, so it prints the same
# numbers every time.
#
#   bash bench/span-encoding.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
cargo build --quiet --release -p iotel-formats --example span_sizes
exec "$CARGO_TARGET_DIR/release/examples/span_sizes"
