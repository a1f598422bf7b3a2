#!/usr/bin/env bash
# OTLP spans through the agent: a load generator sends OTLP/gRPC
# ExportTraceServiceRequests of realistic device spans to iotel (`otlp`
# source → `otlp` sink, protocol "grpc", gzip), which forwards them to a
# counting OTLP/gRPC receiver. Two runs:
#
#   1. max load: the generator sends as fast as iotel answers (8 requests of
#      512 spans in flight) for SECONDS; prints spans/s and spans per
#      CPU-second of the iotel process (utime + stime from /proc: "per core");
#   2. steady 1,000 spans/s for STEADY_SECONDS, on a fresh iotel process:
#      prints its RSS (median of the second half, and VmHWM) and CPU %.
#
# And the OTLP protobuf bytes per span of the requests the sink sent in run
# 2, plain and gzipped (gzip's fastest level, sampled on every 10th request).
#
#   bash bench/otlp-traces.sh [SECONDS] [STEADY_SECONDS]     # default 20 30
#
# Uses the edge build with the OTLP components (`scripts/build-edge
# --features otlp`: current-thread runtime, size-tuned); the generator and
# receiver are `crates/iotel-components/examples/otlp_load.rs` and
# `otlp_sink_counter.rs`, built optimized for speed. Needs: python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MAX="${1:-20}"
SECONDS_STEADY="${2:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"

IOTEL="$(scripts/build-edge --features otlp)"
# The load and the receiver: fast to build and to run, not size-tuned.
CARGO_PROFILE_RELEASE_OPT_LEVEL=3 CARGO_PROFILE_RELEASE_LTO=off \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_PANIC=unwind \
  cargo build --release -p iotel-components --no-default-features --features otlp \
  --example otlp_load --example otlp_sink_counter >&2
LOAD="$CARGO_TARGET_DIR/release/examples/otlp_load"
COUNTER="$CARGO_TARGET_DIR/release/examples/otlp_sink_counter"
source bench/lib.sh

RECV_PORT=$(free_port)
"$COUNTER" "127.0.0.1:$RECV_PORT" >"$WORK/receiver.out" 2>&1 &
RECEIVER=$!
PIDS+=($RECEIVER)
received() { # the receiver's last line as "spans requests proto gzip_sampled proto_sampled"
  tail -n 1 "$WORK/receiver.out" | sed 's/[a-z_]*=//g'
}
until [ -s "$WORK/receiver.out" ]; do sleep 0.1; done

start_agent() { # NAME: starts iotel; sets AGENT, API, GRPC
  API=$(free_port); GRPC=$(free_port); local http; http=$(free_port)
  cat > "$WORK/$1.toml" <<TOML
data_dir = "$WORK/data-$1"
[api]
address = "127.0.0.1:$API"
[sources.otel]
type = "otlp"
grpc_address = "127.0.0.1:$GRPC"
http_address = "127.0.0.1:$http"
[sinks.backend]
type = "otlp"
inputs = ["otel"]
protocol = "grpc"
endpoint = "http://127.0.0.1:$RECV_PORT"
# Backpressure rather than drops: the source answers once spans are buffered.
buffer = { type = "memory", max_events = 20000, when_full = "block" }
batch = { max_events = 4096, timeout = "1s" }
TOML
  "$IOTEL" agent --config "$WORK/$1.toml" --log-level warn 2>"$WORK/$1.log" &
  AGENT=$!
  PIDS+=($AGENT)
  until curl -sf "http://127.0.0.1:$API/readyz" >/dev/null; do sleep 0.1; done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sent_by_sink() { counter "http://127.0.0.1:$API/metrics" 'iotel_component_sent_events_total\{.*component_id="backend"'; }
wait_drained() { # TARGET: until the sink sent TARGET spans (30 s at most)
  local until=$((SECONDS + 30))
  while [ "$(sent_by_sink)" -lt "$1" ] && [ $SECONDS -lt $until ]; do sleep 0.1; done
}

# 1. Max load.
start_agent max
T0=$(date +%s.%N); MC0=$(cpu_ticks $AGENT); RC0=$(cpu_ticks $RECEIVER)
read -r _ sent _ refused _ LOAD_CPU < <("$LOAD" "http://127.0.0.1:$GRPC" 0 "$SECONDS_MAX" 512 8)
wait_drained "$sent"
T1=$(date +%s.%N); MC1=$(cpu_ticks $AGENT); RC1=$(cpu_ticks $RECEIVER)
MAX_SENT=$(sent_by_sink); MAX_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
DISCARDED=$(counter "http://127.0.0.1:$API/metrics" 'iotel_component_discarded_events_total')
kill $AGENT; wait $AGENT 2>/dev/null || true

# 2. Steady 1,000 spans/s on a fresh process.
sleep 1.2 # the receiver's next line, with all of run 1
read -r R0 Q0 P0 GZ0 PS0 < <(received)
start_agent steady
SC0=$(cpu_ticks $AGENT); S0=$(date +%s.%N)
"$LOAD" "http://127.0.0.1:$GRPC" 1000 "$SECONDS_STEADY" 100 >"$WORK/steady.out" &
LOADPID=$!
RSS=()
for ((i = 0; i < SECONDS_STEADY; i++)); do
  sleep 1
  if ((i >= SECONDS_STEADY / 2)); then RSS+=("$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")"); fi
done
wait $LOADPID
read -r _ steady_sent _ steady_refused _ _ <"$WORK/steady.out"
wait_drained "$steady_sent"
S1=$(date +%s.%N); SC1=$(cpu_ticks $AGENT)
STEADY_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
sleep 1.2 # the receiver's next line
read -r R1 Q1 P1 GZ1 PS1 < <(received)

python3 - "$sent" "$refused" "$MAX_SENT" "$T0" "$T1" "$MC0" "$MC1" "$(getconf CLK_TCK)" "$MAX_HWM" "$DISCARDED" \
  "$steady_sent" "$steady_refused" "$S0" "$S1" "$SC0" "$SC1" "$STEADY_HWM" "${RSS[*]}" \
  "$R0" "$R1" "$Q0" "$Q1" "$P0" "$P1" "$GZ0" "$GZ1" "$PS0" "$PS1" "$LOAD_CPU" "$RC0" "$RC1" <<'PY'
import sys, statistics
a = sys.argv[1:]
hz = int(a[7])
sent, refused, delivered = int(a[0]), int(a[1]), int(a[2])
wall = float(a[4]) - float(a[3])
cpu = (int(a[6]) - int(a[5])) / hz
ssent, srefused = int(a[10]), int(a[11])
swall = float(a[13]) - float(a[12])
scpu = (int(a[15]) - int(a[14])) / hz
rss = [int(x) for x in a[17].split()]
r0, r1, q0, q1, p0, p1, gz0, gz1, ps0, ps1 = (int(x) for x in a[18:28])
spans, requests, proto = r1 - r0, q1 - q0, p1 - p0
ratio = (gz1 - gz0) / (ps1 - ps0) if ps1 > ps0 else float("nan")
rows = [
    ("max load: spans accepted by iotel", f"{sent:,}", f"refused {refused:,}; discarded in iotel {int(a[9]):,}"),
    ("max load: spans delivered", f"{delivered:,}", f"in {wall:.1f} s"),
    ("max load: spans/s (wall)", f"{delivered / wall:,.0f}", ""),
    ("max load: iotel CPU", f"{cpu:.2f} s", f"{cpu / wall * 100:.0f}% of a core"),
    ("max load: spans/s per core", f"{delivered / cpu:,.0f}", "spans delivered / iotel CPU-seconds"),
    ("max load: load generator CPU", f"{float(a[28]):.2f} s", "builds and encodes the requests"),
    ("max load: receiver CPU", f"{(int(a[30]) - int(a[29])) / hz:.2f} s", "decodes, re-encodes, gzips 1 in 10"),
    ("max load: peak RSS (VmHWM)", f"{int(a[8]):,} KiB", ""),
    ("1,000/s: spans sent", f"{ssent:,}", f"refused {srefused:,}; received {spans:,} in {requests:,} requests"),
    ("1,000/s: RSS (median, 2nd half)", f"{int(statistics.median(rss)):,} KiB", f"min {min(rss):,} max {max(rss):,}"),
    ("1,000/s: peak RSS (VmHWM)", f"{int(a[16]):,} KiB", ""),
    ("1,000/s: iotel CPU", f"{scpu / swall * 100:.1f}% of a core", f"{scpu:.2f} s in {swall:.1f} s"),
    ("OTLP protobuf bytes/span", f"{proto / spans:.1f}", f"{proto / requests:,.0f} bytes/request"),
    ("OTLP protobuf+gzip bytes/span", f"{proto / spans * ratio:.1f}", f"gzip ratio {ratio:.3f} (fast level)"),
]
w = max(len(r[0]) for r in rows)
for name, value, note in rows:
    print(f"{name:<{w}}  {value:>18}  {note}")
PY
