#!/usr/bin/env bash
# Outage benchmark: the edge agent scrapes one target of 2,000 series every
# second (the foundation benchmark's reference load) and sends them over the
# native protocol, through a disk buffer, to a receiver (`iotel gateway`).
# The receiver runs for a minute, is stopped for OUTAGE seconds (default 600),
# then started again. Prints the agent's RSS (steady before, peak during the
# outage), the backlog, the time to drain it, and the samples lost.
#
#   bash bench/edge-outage.sh [OUTAGE_SECONDS]
#
# Needs: python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTAGE="${1:-600}"
SERIES=2000
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"

source bench/lib.sh
# The agent is the edge build; the receiver needs the native receiver, which
# the edge build leaves out: the same build with `--features receiver`.
IOTEL="$WORK/iotel-agent"
cp "$(scripts/build-edge)" "$IOTEL"
RECEIVER="$WORK/iotel-gateway"
cp "$(scripts/build-edge --features receiver)" "$RECEIVER"
serve_target "$SERIES"
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# The receiver: counts what arrives, writes nothing.
RECV_PORT=$(free_port)
RECV_API=$(free_port)
cat > "$WORK/receiver.toml" <<TOML
data_dir = "$WORK/receiver-data"
[api]
address = "127.0.0.1:$RECV_API"
[sources.agents]
type = "iotel"
address = "127.0.0.1:$RECV_PORT"
[sinks.out]
type = "file"
inputs = ["agents"]
path = "/dev/null"
TOML
start_receiver() {
  "$RECEIVER" gateway --config "$WORK/receiver.toml" --log-level warn 2>>"$WORK/receiver.log" &
  RECV_PID=$!
  PIDS+=($RECV_PID)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$RECV_API/readyz" >/dev/null && break; sleep 0.1; done
}
received() { counter "http://127.0.0.1:$RECV_API/metrics" '^iotel_component_received_events_total.*component_id="out"'; }

API_PORT=$(free_port)
cat > "$WORK/agent.toml" <<TOML
data_dir = "$WORK/agent-data"
[api]
address = "127.0.0.1:$API_PORT"
[sources.app]
type = "prometheus_scrape"
targets = ["http://127.0.0.1:$TARGET_PORT/metrics"]
interval = "1s"
[sinks.up]
type = "iotel"
inputs = ["app"]
endpoint = "http://127.0.0.1:$RECV_PORT"
agent_id = "bench"
batch = { max_events = 10000, timeout = "5s" }
retry = { initial_backoff = "100ms", max_backoff = "5s" }
buffer = { type = "disk", max_size = "512MiB" }
TOML
start_receiver
"$IOTEL" agent --config "$WORK/agent.toml" --log-level warn,iotel=info 2>"$WORK/agent.log" &
AGENT_PID=$!
PIDS+=($AGENT_PID)
agent() { counter "http://127.0.0.1:$API_PORT/metrics" "$1"; }

echo "steady state: 60 s"
steady=()
for _ in $(seq 60); do steady+=("$(rss_kb "$AGENT_PID")"); sleep 1; done
steady_rss=$(printf '%s\n' "${steady[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
steady_peak=$(printf '%s\n' "${steady[@]}" | sort -n | tail -1)

echo "outage: ${OUTAGE} s"
kill -TERM "$RECV_PID"; wait "$RECV_PID" 2>/dev/null || true
peak=0
for _ in $(seq "$OUTAGE"); do
  r=$(rss_kb "$AGENT_PID"); [ "$r" -gt "$peak" ] && peak=$r
  sleep 1
done
backlog=$(agent '^iotel_buffer_records.*component_id="up"')
backlog_bytes=$(agent '^iotel_buffer_bytes.*component_id="up"')

echo "receiver back; draining"
start_receiver
t0=$(date +%s.%N)
drain_peak=0
while :; do
  r=$(rss_kb "$AGENT_PID"); [ "$r" -gt "$drain_peak" ] && drain_peak=$r
  # Drained once what waits is no older than live data (batch.timeout 5 s
  # plus a scrape): the backlog is gone, live batches keep coming.
  [ "$(agent '^iotel_buffer_oldest_age_seconds.*component_id="up"')" -le 10 ] && break
  sleep 0.5
done
t1=$(date +%s.%N)

# Stop scraping (SIGTERM flushes), then compare what was scraped and sent.
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true
scraped=$(awk '/final totals/ && /component=app / {for(i=1;i<=NF;i++) if($i ~ /^sent=/){sub("sent=","",$i); print $i}}' "$WORK/agent.log")
sent=$(awk '/final totals/ && /component=up / {for(i=1;i<=NF;i++) if($i ~ /^sent=/){sub("sent=","",$i); print $i}}' "$WORK/agent.log")
discarded=$(awk '/final totals/ && /component=up / {for(i=1;i<=NF;i++) if($i ~ /^discarded=/){sub("discarded=","",$i); print $i}}' "$WORK/agent.log")

echo
printf '%-40s %s\n' "agent RSS before the outage, median" "${steady_rss} KiB"
printf '%-40s %s\n' "agent RSS before the outage, peak" "${steady_peak} KiB"
printf '%-40s %s\n' "agent RSS, peak during the outage" "${peak} KiB"
printf '%-40s %s\n' "agent RSS, peak while draining" "${drain_peak} KiB"
printf '%-40s %s\n' "backlog after the outage" "${backlog} batches, ${backlog_bytes} bytes on disk"
printf '%-40s %s\n' "time to drain" "$(python3 -c "print(f'{$t1-$t0:.1f} s')")"
printf '%-40s %s\n' "samples scraped / sent / discarded" "${scraped:-?} / ${sent:-?} / ${discarded:-?}"
printf '%-40s %s\n' "samples lost" "$(( ${scraped:-0} - ${sent:-0} ))"
