#!/usr/bin/env bash
# The anomaly transform's cost per sample at 100,000 series, per detector,
# and the memory the series hold: one process per detector, 60 untimed
# rounds to fill the detectors, then 20 timed rounds of one sample per
# series (2,000,000 samples), in batches of 1,000. Prints ns/sample and
# VmRSS / VmHWM (peak) of the process with one round of samples made
# (100,000 samples), then after the run: the difference is the series'
# state.
#
#   bench/anomaly.sh [series] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-100000}
ROUNDS=${2:-20}
cargo build --release -q -p iotel-components --example anomaly_bench
BIN="${CARGO_TARGET_DIR:-target}/release/examples/anomaly_bench"
for detector in zscore ewma seasonal; do
  "$BIN" "$detector" "$SERIES" "$ROUNDS"
done
