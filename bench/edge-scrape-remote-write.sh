#!/usr/bin/env bash
# Edge metrics benchmark: scrape one target of 2,000 series every second and
# remote-write them to a real Prometheus, for DURATION seconds (default 60).
# Runs iotel's agent, then Prometheus in agent mode on the same job, and
# prints peak and steady RSS, CPU % of one core and samples/s for each.
#
#   bash bench/edge-scrape-remote-write.sh [DURATION]
#
# Needs: prometheus (Debian package), python3, /usr/bin/time (package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-60}"
SERIES=2000
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
command -v /usr/bin/time >/dev/null || { echo "install the 'time' package" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "install the 'prometheus' package" >&2; exit 1; }

IOTEL="$(scripts/build-edge)"
source bench/lib.sh
serve_target "$SERIES"

# The receiver: a real Prometheus with remote write on.
RECV_PORT=$(free_port)
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$WORK/recv.yml"
prometheus --config.file="$WORK/recv.yml" --storage.tsdb.path="$WORK/recv-data" \
  --web.listen-address="127.0.0.1:$RECV_PORT" --web.enable-remote-write-receiver --log.level=error &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$RECV_PORT/-/ready" >/dev/null && break; sleep 0.2; done



# --- iotel agent ---
API_PORT=$(free_port)
cat > "$WORK/iotel.toml" <<TOML
data_dir = "$WORK/iotel-data"
[api]
address = "127.0.0.1:$API_PORT"
[sources.app]
type = "prometheus_scrape"
targets = ["http://127.0.0.1:$TARGET_PORT/metrics"]
interval = "1s"
[sinks.rw]
type = "prometheus_remote_write"
inputs = ["app"]
endpoint = "http://127.0.0.1:$RECV_PORT/api/v1/write"
TOML
/usr/bin/time -v -o "$WORK/iotel.time" "$IOTEL" agent --config "$WORK/iotel.toml" --log-level warn &
TIME_PID=$!
sleep 0.5
IOTEL_PID=$(pgrep -P "$TIME_PID")
sleep 3
start_sent=$(counter "http://127.0.0.1:$API_PORT/metrics" '^iotel_component_sent_events_total.*component_id="rw"')
measure "$IOTEL_PID" "$WORK/iotel"
end_sent=$(counter "http://127.0.0.1:$API_PORT/metrics" '^iotel_component_sent_events_total.*component_id="rw"')
kill -TERM "$IOTEL_PID"; wait "$TIME_PID" || true
iotel_maxrss=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/iotel.time")

# --- Prometheus in agent mode, same job ---
AGENT_PORT=$(free_port)
cat > "$WORK/agent.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ['127.0.0.1:$TARGET_PORT']
remote_write:
  - url: http://127.0.0.1:$RECV_PORT/api/v1/write
YML
/usr/bin/time -v -o "$WORK/prom.time" prometheus --enable-feature=agent --config.file="$WORK/agent.yml" \
  --storage.agent.path="$WORK/agent-data" --web.listen-address="127.0.0.1:$AGENT_PORT" --log.level=error &
TIME_PID=$!
sleep 0.5
PROM_PID=$(pgrep -P "$TIME_PID")
sleep 3
p_start=$(counter "http://127.0.0.1:$AGENT_PORT/metrics" '^prometheus_remote_storage_samples_total')
measure "$PROM_PID" "$WORK/prom"
p_end=$(counter "http://127.0.0.1:$AGENT_PORT/metrics" '^prometheus_remote_storage_samples_total')
kill -TERM "$PROM_PID"; wait "$TIME_PID" || true
prom_maxrss=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/prom.time")

echo "job: scrape $SERIES series every 1s, remote write to Prometheus, ${DURATION}s"
printf '%-34s %10s %10s %10s %8s %10s\n' "" "peak KiB" "maxrss KiB" "steady KiB" "CPU %" "samples/s"
read -r i_peak i_rss i_cpu < "$WORK/iotel.summary"
read -r p_peak p_rss p_cpu < "$WORK/prom.summary"
printf '%-34s %10s %10s %10s %8s %10s\n' "iotel agent" "$i_peak" "$iotel_maxrss" "$i_rss" "$i_cpu" "$(( (end_sent - start_sent) / DURATION ))"
printf '%-34s %10s %10s %10s %8s %10s\n' "prometheus --enable-feature=agent" "$p_peak" "$prom_maxrss" "$p_rss" "$p_cpu" "$(( (p_end - p_start) / DURATION ))"
echo "peak: highest VmRSS sampled each second; maxrss: /usr/bin/time -v's maximum resident set size"
echo "iotel binary: $(stat -c %s "$IOTEL") bytes"
