#!/usr/bin/env bash
# Log pipeline benchmark: an agent tails one large file of JSON log lines
# through parse(json) → redact → sample → loki, pushing to a local HTTP
# endpoint that answers 204 to every push. Prints lines per second of wall
# time and per CPU-second (the agent runs one thread: the edge runtime),
# the agent's peak RSS (VmHWM) and its CPU use, read from /proc.
#
#   bash bench/log-pipeline.sh [SIZE_MB]     # default 1024 (1 GB)
#
# Uses the edge build with its log components (`scripts/build-edge --features
# logs`). Needs: python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-1024}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"

IOTEL="$(scripts/build-edge --features logs)"
source bench/lib.sh

# The input: device log lines of about 190 bytes, one in 50 at ERROR, with an
# e-mail address and a phone number to redact in most of them.
LOG="$WORK/device.log"
python3 - "$LOG" "$SIZE_MB" <<'PY'
import sys, random
path, size = sys.argv[1], int(sys.argv[2]) << 20
random.seed(7)
levels = ["info"] * 40 + ["debug"] * 8 + ["warn"] + ["error"]
users = [f"user{i}@example.com" for i in range(500)]
chunk, written, i = [], 0, 0
with open(path, "w") as f:
    while written < size:
        lvl = levels[i % len(levels)]
        line = ('{"ts":"2026-11-24T10:%02d:%02d.%03dZ","level":"%s","device_id":"dev-%d",'
                '"msg":"reading %d from %s, callback +86138%08d","temp_c":%.1f}\n'
                % ((i // 60000) % 60, (i // 1000) % 60, i % 1000, lvl, i % 2000, i,
                   users[i % 500], i % 100000000, 20 + (i % 150) / 10))
        chunk.append(line)
        written += len(line)
        i += 1
        if len(chunk) == 10000:
            f.write("".join(chunk)); chunk = []
    f.write("".join(chunk))
print(i, file=open(path + ".lines", "w"))
PY
LINES=$(cat "$LOG.lines")

# The Loki endpoint: answers 204 to every push.
LOKI_PORT=$(free_port)
python3 - "$LOKI_PORT" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PIDS+=($!)

API=$(free_port)
cat > "$WORK/agent.toml" <<TOML
data_dir = "$WORK/data"
[runtime]
channel_capacity = ${CHANNEL_CAPACITY:-2}
[api]
address = "127.0.0.1:$API"
[sources.app]
type = "file_tail"
include = ["$LOG"]
labels = { job = "edge-app" }
batch_max_lines = ${TAIL_BATCH_LINES:-128}
[transforms.json]
type = "parse"
inputs = ["app"]
format = "json"
severity_field = "level"
message_field = "msg"
[transforms.pii]
type = "redact"
inputs = ["json"]
rules = ["email", "phone"]
salt = "bench-salt"
[transforms.noise]
type = "sample"
inputs = ["pii"]
rate = 0.1
by = "device_id"
# Same records kept in every run (no rate change while the buffer is full).
adapt_to_backlog = false
[sinks.loki]
type = "loki"
inputs = ["noise"]
endpoint = "http://127.0.0.1:$LOKI_PORT/loki/api/v1/push"
# A small memory buffer that holds the file back rather than dropping: the
# file is the durable copy, and parsed records cost ~0.5 KiB each in memory.
buffer = { type = "memory", max_events = ${SINK_BUFFER_EVENTS:-2000}, when_full = "block" }
batch = { max_events = ${SINK_BATCH_EVENTS:-1000} }
TOML

"$IOTEL" agent --config "$WORK/agent.toml" --log-level warn 2>"$WORK/agent.log" &
AGENT=$!
PIDS+=($AGENT)
until curl -sf "http://127.0.0.1:$API/readyz" >/dev/null; do sleep 0.1; done
T0=$(date +%s.%N)
METRICS="http://127.0.0.1:$API/metrics"
done_events() { # events the sink sent plus those the sampler dropped
  local sent dropped
  sent=$(counter "$METRICS" 'iotel_component_sent_events_total\{.*component_id="loki"')
  dropped=$(counter "$METRICS" 'iotel_component_discarded_events_total\{.*component_id="noise"')
  echo $((sent + dropped))
}
while [ "$(done_events)" -lt "$LINES" ]; do
  sleep 0.2
  kill -0 $AGENT 2>/dev/null || { echo "agent died:"; cat "$WORK/agent.log"; exit 1; }
done
T1=$(date +%s.%N)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$AGENT/stat")
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
SENT=$(counter "$METRICS" 'iotel_component_sent_events_total\{.*component_id="loki"')
python3 - "$LINES" "$SENT" "$T0" "$T1" "$utime" "$stime" "$HWM" "$(getconf CLK_TCK)" "$SIZE_MB" <<'PY'
import sys
lines, sent, t0, t1, ut, st, hwm, hz, mb = sys.argv[1:]
lines, sent, wall = int(lines), int(sent), float(t1) - float(t0)
cpu = (int(ut) + int(st)) / int(hz)
print(f"input: {mb} MiB, {lines:,} lines; sent to loki after sampling: {sent:,}")
print(f"wall {wall:.1f} s: {lines / wall:,.0f} lines/s")
print(f"cpu {cpu:.1f} s ({cpu / wall * 100:.0f}% of a core): {lines / cpu:,.0f} lines per CPU-second")
print(f"peak RSS (VmHWM): {int(hwm):,} KiB")
PY
