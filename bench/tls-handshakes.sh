#!/usr/bin/env bash
# TLS handshakes per second at a receiver: an `iotel` source (a gateway's
# native receiver) with mutual TLS and device identities, certificates from
# `iotel certs`, and a client doing full handshakes with a device
# certificate as fast as they go (crates/iotel-components/examples/
# tls_handshakes.rs, 4 concurrent, no session resumption) for DURATION
# seconds (default 10). Prints handshakes/s and the CPU-seconds the
# receiver spent per 1,000 handshakes (from /proc/PID/stat).
#
#   bash bench/tls-handshakes.sh [DURATION] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONCURRENCY="${2:-4}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
source bench/lib.sh

cargo build --quiet --release -p iotel
cargo build --quiet --release -p iotel-components --example tls_handshakes
IOTEL="$CARGO_TARGET_DIR/release/iotel"
CLIENT="$CARGO_TARGET_DIR/release/examples/tls_handshakes"

PKI="$WORK/certs"
"$IOTEL" certs init --dir "$PKI" >/dev/null
"$IOTEL" certs issue-server --dir "$PKI" --dns localhost --ip 127.0.0.1 >/dev/null
"$IOTEL" certs issue-device --dir "$PKI" --device-id bench-1 >/dev/null

PORT=$(free_port)
API=$(free_port)
cat > "$WORK/gateway.toml" <<TOML
data_dir = "$WORK/data"

[api]
address = "127.0.0.1:$API"

[sources.agents]
type = "iotel"
address = "127.0.0.1:$PORT"
tls = { cert_file = "$PKI/servers/localhost.pem", key_file = "$PKI/servers/localhost.key", ca_file = "$PKI/ca.pem" }
identity = { trust_domain = "iotel.test" }

[sinks.out]
type = "console"
inputs = ["agents"]
TOML
"$IOTEL" gateway --config "$WORK/gateway.toml" >/dev/null 2>"$WORK/gateway.log" &
GW=$!
PIDS+=("$GW")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$API/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

cpu() { awk '{print $14 + $15}' "/proc/$GW/stat"; }
TICKS=$(getconf CLK_TCK)
before=$(cpu)
out=$("$CLIENT" "127.0.0.1:$PORT" localhost "$PKI/ca.pem" \
  "$PKI/devices/bench-1.pem" "$PKI/devices/bench-1.key" "$DURATION" "$CONCURRENCY")
after=$(cpu)
echo "$out"
n=$(echo "$out" | awk '{print $2}')
awk -v n="$n" -v t=$((after - before)) -v hz="$TICKS" -v d="$DURATION" 'BEGIN {
  printf "receiver CPU: %.2f s over %d s (%.0f%% of a core), %.3f CPU-s per 1,000 handshakes\n",
    t / hz, d, 100 * t / hz / d, (n > 0 ? 1000 * t / hz / n : 0) }'
