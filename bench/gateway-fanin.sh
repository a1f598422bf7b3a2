#!/usr/bin/env bash
# A site gateway under a fleet: `iotel loadgen` simulates DEVICES devices
# (default 10,000) in agents of 100, each device sending 10 samples/s and 1
# log line/s over the native protocol, into one gateway (`iotel` source →
# an `iotel` sink per signal, as config/gateway.toml has them: zstd frames,
# batch.timeout 100ms, a disk buffer each), which forwards to loadgen's own
# listener. Prints, for DURATION seconds (default
# 60):
#   - samples/s and log lines/s acknowledged by the gateway, and what
#     reached the far end (lost, duplicates);
#   - the latency the gateway adds (its sink's iotel_sink_latency_seconds
#     p50/p99: buffered → acknowledged upstream; and how long its requests
#     took, iotel_sink_request_seconds) and the end-to-end latency
#     loadgen measured (generated → received through the gateway);
#   - the gateway's CPU (% of one core) and RSS (peak and steady), and
#     loadgen's CPU, which shares the machine.
#
#   bash bench/gateway-fanin.sh [DURATION] [DEVICES] [disk|memory]
#
# The third argument picks the gateway's sink buffers: `disk` (default, as
# config/gateway.toml has them) or `memory`.
#
# Uses the release build (`cargo build --release -p iotel`), or the binary
# in $IOTEL. Needs python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-60}"
DEVICES="${2:-10000}"
BUFFER="${3:-disk}"
case "$BUFFER" in
  disk) METRICS_BUFFER='{ type = "disk", max_size = "2GiB" }'; LOGS_BUFFER='{ type = "disk", max_size = "1GiB" }' ;;
  memory) METRICS_BUFFER='{ type = "memory", max_events = 1000000 }'; LOGS_BUFFER="$METRICS_BUFFER" ;;
  *) echo "buffer: expected disk or memory, got $BUFFER" >&2; exit 1 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
if [ -z "${IOTEL:-}" ]; then
  cargo build --release -q -p iotel >&2
  IOTEL="$CARGO_TARGET_DIR/release/iotel"
fi
source bench/lib.sh

GW_PORT=$(free_port)
API_PORT=$(free_port)
LISTEN_PORT=$(free_port)
cat > "$WORK/gateway.toml" <<TOML
[api]
address = "127.0.0.1:$API_PORT"

[sources.agents]
type = "iotel"
address = "127.0.0.1:$GW_PORT"

[sinks.up_metrics]
type = "iotel"
inputs = ["agents.metrics"]
endpoint = "http://127.0.0.1:$LISTEN_PORT"
agent_id = "gateway-1/metrics"
compression = "zstd"
batch = { max_events = 20000, timeout = "100ms" }
buffer = $METRICS_BUFFER

[sinks.up_logs]
type = "iotel"
inputs = ["agents.logs"]
endpoint = "http://127.0.0.1:$LISTEN_PORT"
agent_id = "gateway-1/logs"
compression = "zstd"
batch = { max_events = 20000, timeout = "100ms" }
buffer = $LOGS_BUFFER
TOML

"$IOTEL" gateway --config "$WORK/gateway.toml" --data-dir "$WORK/data" \
  >"$WORK/gateway.log" 2>&1 &
GATEWAY=$!
PIDS+=("$GATEWAY")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$API_PORT/readyz" >/dev/null && break
  sleep 0.1
done

"$IOTEL" loadgen --target "http://127.0.0.1:$GW_PORT" --devices "$DEVICES" \
  --devices-per-agent 100 --metrics-per-second 10 --logs-per-second 1 \
  --duration "${DURATION}s" --listen "127.0.0.1:$LISTEN_PORT" \
  --report-json "$WORK/report.json" >"$WORK/loadgen.out" 2>"$WORK/loadgen.err" &
LOADGEN=$!
PIDS+=("$LOADGEN")
sleep 1
# The first seconds fill the pipeline; measure the rest of the run.
DURATION=$((DURATION - 2)) measure "$GATEWAY" "$WORK/gateway" &
MEASURE_GW=$!
DURATION=$((DURATION - 2)) measure "$LOADGEN" "$WORK/loadgen" &
MEASURE_LG=$!
# Read the gateway's latency quantiles while the load is on.
sleep $((DURATION - 3))
curl -sf "http://127.0.0.1:$API_PORT/metrics" > "$WORK/gateway.metrics"
wait "$MEASURE_GW" "$MEASURE_LG"
wait "$LOADGEN" || echo "loadgen exited non-zero: see below" >&2

python3 - "$WORK" "$DURATION" "$DEVICES" "$BUFFER" <<'PY'
import json, sys, re
work, duration, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = json.load(open(f"{work}/report.json"))
s = r["signals"]
secs = r["seconds"]
gw_peak, gw_steady, gw_cpu = open(f"{work}/gateway.summary").read().split()
lg_peak, lg_steady, lg_cpu = open(f"{work}/loadgen.summary").read().split()
q, rq = {}, {}
for line in open(f"{work}/gateway.metrics"):
    m = re.match(r'iotel_sink_(latency|request)_seconds\{(.*)\} (\S+)', line)
    if m:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        into = q if m.group(1) == "latency" else rq
        into.setdefault(labels["component_id"], {})[labels["quantile"]] = float(m.group(3)) * 1000
e2e = r["end_to_end_latency"] or {}
print(f"devices: {devices} (10 samples/s + 1 log line/s each), {secs:.1f} s, {sys.argv[4]} buffers")
print(f"acked by the gateway: {s['metrics']['acked']/secs:,.0f} samples/s, {s['logs']['acked']/secs:,.0f} log lines/s")
lost = sum(v["acked"] - (v["received"] - v["duplicates"]) for v in s.values())
dups = sum(v["duplicates"] for v in s.values())
print(f"reached the far end: {sum(v['received'] for v in s.values()):,} events, lost {lost}, duplicates {dups}")
for sink, qs in sorted(q.items()):
    r_ = rq.get(sink, {})
    print(f"gateway added latency, sink {sink} (iotel_sink_latency_seconds): p50 {qs.get('0.5', 0):.0f} ms, p99 {qs.get('0.99', 0):.0f} ms; its requests took p50 {r_.get('0.5', 0):.0f} ms, p99 {r_.get('0.99', 0):.0f} ms")
if e2e:
    print(f"end to end (loadgen → gateway → loadgen): p50 {e2e['p50_ms']:.0f} ms, p99 {e2e['p99_ms']:.0f} ms, max {e2e['max_ms']:.0f} ms")
print(f"gateway: CPU {float(gw_cpu):.0f}% of one core, RSS peak {int(gw_peak)/1024:.1f} MiB, steady {int(float(gw_steady))/1024:.1f} MiB")
print(f"loadgen (same machine): CPU {float(lg_cpu):.0f}% of one core")
PY
