#!/usr/bin/env bash
# The CPU a gateway adds per batch by signing it (Ed25519 over SHA-256 of
# the frame, `auth::signing`) and a cloud by verifying it, on native
# frames of 100, 1,000 and 10,000 metric samples. Builds and runs
# crates/iotel-components/examples/batch_signing.rs in release.
#
#   bash bench/batch-signing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
cargo build --quiet --release -p iotel-components --example batch_signing
exec "$CARGO_TARGET_DIR/release/examples/batch_signing"
