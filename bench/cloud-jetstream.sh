#!/usr/bin/env bash
# The cloud tier on NATS JetStream: `iotel loadgen` (DEVICES devices, default
# 10,000, 10 samples/s each, no logs) sends native batches to one ingest node
# (`iotel` source → `nats_jetstream` sink, disk buffer), which publishes to a
# real nats-server with JetStream; W worker processes (1, then 2) share one
# durable consumer and forward what they take (`iotel` sink) to loadgen's
# listener, which counts every sample and its end-to-end latency. Each run
# lasts DURATION seconds (default 30) on a fresh server and prints:
#   - samples/s acknowledged by the ingest node, and received through the
#     workers; lost and duplicated samples;
#   - end-to-end latency p50/p99;
#   - CPU (% of one core) of the ingest node, the workers, nats-server and
#     loadgen, which all share this machine.
#
#   bash bench/cloud-jetstream.sh [DURATION] [DEVICES]
#
# Uses the release build (`cargo build --release -p iotel`), or the binary
# in $IOTEL. Needs nats-server (Debian package), python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-30}"
DEVICES="${2:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
if [ -z "${IOTEL:-}" ]; then
  cargo build --release -q -p iotel >&2
  IOTEL="$CARGO_TARGET_DIR/release/iotel"
fi
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
test -x "$NATS_SERVER" || { echo "install the 'nats-server' package" >&2; exit 1; }
source bench/lib.sh

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

run() { # WORKERS
  local workers=$1 dir="$WORK/w$1"
  mkdir -p "$dir"
  local nats_port ingest_port listen_port
  nats_port=$(free_port); ingest_port=$(free_port); listen_port=$(free_port)
  "$NATS_SERVER" -js -a 127.0.0.1 -p "$nats_port" -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
  local nats=$!; PIDS+=("$nats")
  sleep 0.5
  cat > "$dir/ingest.toml" <<TOML
[api]
address = "127.0.0.1:$(free_port)"
[sources.gateways]
type = "iotel"
address = "127.0.0.1:$ingest_port"
[sinks.stream]
type = "nats_jetstream"
inputs = ["gateways"]
url = "nats://127.0.0.1:$nats_port"
shards = 16
buffer = { type = "disk", max_size = "4GiB", when_full = "block" }
TOML
  "$IOTEL" cloud --config "$dir/ingest.toml" --data-dir "$dir/ingest" >"$dir/ingest.log" 2>&1 &
  local ingest=$!; PIDS+=("$ingest")
  local worker_pids=() worker_apis=()
  for w in $(seq "$workers"); do
    worker_apis+=("$(free_port)")
    cat > "$dir/worker$w.toml" <<TOML
[api]
address = "127.0.0.1:${worker_apis[-1]}"
[sources.work]
type = "nats_jetstream"
url = "nats://127.0.0.1:$nats_port"
durable = "workers"
[sinks.out]
type = "iotel"
inputs = ["work"]
endpoint = "http://127.0.0.1:$listen_port"
agent_id = "worker-$w"
batch = { max_events = 20000, timeout = "100ms" }
# A worker holds back (and JetStream keeps) what its sink cannot take yet.
buffer = { type = "memory", max_events = 200000, when_full = "block" }
TOML
    "$IOTEL" cloud --config "$dir/worker$w.toml" --data-dir "$dir/worker$w" >"$dir/worker$w.log" 2>&1 &
    worker_pids+=($!); PIDS+=($!)
  done
  sleep 1
  "$IOTEL" loadgen --target "http://127.0.0.1:$ingest_port" --devices "$DEVICES" \
    --devices-per-agent 100 --metrics-per-second 10 --logs-per-second 0 \
    --duration "${DURATION}s" --listen "127.0.0.1:$listen_port" --drain-timeout 90s \
    --report-json "$dir/report.json" >"$dir/loadgen.out" 2>"$dir/loadgen.err" &
  local loadgen=$!; PIDS+=("$loadgen")
  local t0_ingest t0_nats t0_lg t0_workers=0
  t0_ingest=$(cpu_ticks "$ingest"); t0_nats=$(cpu_ticks "$nats"); t0_lg=$(cpu_ticks "$loadgen")
  for p in "${worker_pids[@]}"; do t0_workers=$((t0_workers + $(cpu_ticks "$p"))); done
  sleep "$DURATION"
  local t1_ingest t1_nats t1_lg t1_workers=0
  t1_ingest=$(cpu_ticks "$ingest"); t1_nats=$(cpu_ticks "$nats"); t1_lg=$(cpu_ticks "$loadgen")
  for p in "${worker_pids[@]}"; do t1_workers=$((t1_workers + $(cpu_ticks "$p"))); done
  # Non-zero when samples were still on their way at the end of the drain.
  wait "$loadgen" || true
  local redelivered=0
  for a in "${worker_apis[@]}"; do
    redelivered=$((redelivered + $(counter "http://127.0.0.1:$a/metrics" '^iotel_nats_redelivered_messages_total')))
  done
  python3 - "$dir/report.json" "$workers" "$DURATION" "$(getconf CLK_TCK)" \
    "$((t1_ingest - t0_ingest))" "$((t1_workers - t0_workers))" \
    "$((t1_nats - t0_nats))" "$((t1_lg - t0_lg))" "$redelivered" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
workers, duration, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ingest, wk, nats, lg = (int(x) / hz / duration * 100 for x in sys.argv[5:9])
redelivered = int(sys.argv[9])
m = r["signals"]["metrics"]
secs = r["seconds"]
e2e = r["end_to_end_latency"] or {"p50_ms": 0, "p99_ms": 0}
lost = m["acked"] - (m["received"] - m["duplicates"])
print(f"{workers} worker(s): {m['acked']/secs:,.0f} samples/s acked by ingest, "
      f"{(m['received'] - m['duplicates'])/secs:,.0f} samples/s through the workers; "
      f"not through after the 90 s drain {lost}, duplicates {m['duplicates']}, redelivered messages {redelivered}; "
      f"end to end p50 {e2e['p50_ms']:.0f} ms, p99 {e2e['p99_ms']:.0f} ms; "
      f"CPU ingest {ingest:.0f}%, workers {wk:.0f}%, nats-server {nats:.0f}%, loadgen {lg:.0f}%")
PY
  kill "$ingest" "${worker_pids[@]}" "$nats" 2>/dev/null || true
  wait "$ingest" "${worker_pids[@]}" "$nats" 2>/dev/null || true
}

echo "$DEVICES devices x 10 samples/s for ${DURATION}s, $(nproc) cores"
run 1
run 2
