#!/usr/bin/env bash
# What TLS costs the edge agent: the same job (scrape 2,000 series every
# second, remote-write them to a real Prometheus) run three ways for
# DURATION seconds each (default 30):
#   1. the edge build without TLS (IOTEL_EDGE_FEATURES=""), plain http://
#   2. the edge build (with `tls`), plain http://
#   3. the edge build (with `tls`), https:// with a client
#      certificate (mTLS) to a Prometheus that requires one
# and prints binary sizes, peak and steady RSS, CPU % of one core and
# samples/s for each.
#
#   bash bench/edge-tls-remote-write.sh [DURATION]
#
# IOTEL_PLAIN_BIN and IOTEL_TLS_BIN name binaries already built (with
# IOTEL_EDGE_FEATURES="" scripts/build-edge and scripts/build-edge) instead
# of building them; IOTEL_SMAPS_DIR, a directory to keep each run's
# /proc/PID/smaps_rollup and smaps in, taken at the end of the run.
#
# Needs: prometheus (Debian package), openssl, python3, curl, /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-30}"
SERIES=2000
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
command -v /usr/bin/time >/dev/null || { echo "install the 'time' package" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "install the 'prometheus' package" >&2; exit 1; }

source bench/lib.sh
# The two builds write the same path: keep a copy of each.
cp "${IOTEL_PLAIN_BIN:-$(IOTEL_EDGE_FEATURES="" scripts/build-edge)}" "$WORK/iotel-plain"
cp "${IOTEL_TLS_BIN:-$(scripts/build-edge)}" "$WORK/iotel-tls"
serve_target "$SERIES"

# A CA, a server certificate for 127.0.0.1, a client certificate for dev-1.
PKI="$WORK/pki"; mkdir -p "$PKI"
(
  cd "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=dev-1" \
    -keyout client.key -out client.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile client.ext -out client.pem 2>/dev/null
)

# Two receivers: plain, and TLS requiring a client certificate.
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$WORK/recv.yml"
cat > "$WORK/web-tls.yml" <<YML
tls_server_config:
  cert_file: $PKI/server.pem
  key_file: $PKI/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: $PKI/ca.pem
YML
PLAIN_PORT=$(free_port)
TLS_PORT=$(free_port)
prometheus --config.file="$WORK/recv.yml" --storage.tsdb.path="$WORK/recv-plain" \
  --web.listen-address="127.0.0.1:$PLAIN_PORT" --web.enable-remote-write-receiver --log.level=error &
PIDS+=($!)
prometheus --config.file="$WORK/recv.yml" --storage.tsdb.path="$WORK/recv-tls" \
  --web.config.file="$WORK/web-tls.yml" \
  --web.listen-address="127.0.0.1:$TLS_PORT" --web.enable-remote-write-receiver --log.level=error &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PLAIN_PORT/-/ready" >/dev/null && break; sleep 0.2; done
for _ in $(seq 100); do
  curl -sf --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" \
    "https://127.0.0.1:$TLS_PORT/-/ready" >/dev/null && break
  sleep 0.2
done


# run NAME BINARY ENDPOINT TLS-TABLE: runs the agent and measures it.
run() {
  local name=$1 bin=$2 endpoint=$3 tls=$4
  local api; api=$(free_port)
  cat > "$WORK/$name.toml" <<TOML
data_dir = "$WORK/$name-data"
[api]
address = "127.0.0.1:$api"
[sources.app]
type = "prometheus_scrape"
targets = ["http://127.0.0.1:$TARGET_PORT/metrics"]
interval = "1s"
[sinks.rw]
type = "prometheus_remote_write"
inputs = ["app"]
endpoint = "$endpoint"
$tls
TOML
  /usr/bin/time -v -o "$WORK/$name.time" "$bin" agent --config "$WORK/$name.toml" --log-level warn &
  local time_pid=$! pid
  sleep 0.5
  pid=$(pgrep -P "$time_pid")
  sleep 3
  local start end
  start=$(counter "http://127.0.0.1:$api/metrics" '^iotel_component_sent_events_total.*component_id="rw"')
  measure "$pid" "$WORK/$name"
  end=$(counter "http://127.0.0.1:$api/metrics" '^iotel_component_sent_events_total.*component_id="rw"')
  if [ -n "${IOTEL_SMAPS_DIR:-}" ]; then
    local tag=${name//[^a-zA-Z0-9]/_}
    cp "/proc/$pid/smaps_rollup" "$IOTEL_SMAPS_DIR/$tag.smaps_rollup"
    cp "/proc/$pid/smaps" "$IOTEL_SMAPS_DIR/$tag.smaps"
    cp "$WORK/$name.rss" "$IOTEL_SMAPS_DIR/$tag.rss"
  fi
  kill -TERM "$pid"; wait "$time_pid" || true
  local maxrss; maxrss=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/$name.time")
  read -r peak steady cpu < "$WORK/$name.summary"
  printf '%-30s %10s %10s %10s %8s %10s\n' "$name" "$peak" "$maxrss" "$steady" "$cpu" "$(( (end - start) / DURATION ))"
}

echo "job: scrape $SERIES series every 1s, remote write to Prometheus, ${DURATION}s each"
echo "binary without tls: $(stat -c %s "$WORK/iotel-plain") bytes; with tls: $(stat -c %s "$WORK/iotel-tls") bytes"
printf '%-30s %10s %10s %10s %8s %10s\n' "" "peak KiB" "maxrss KiB" "steady KiB" "CPU %" "samples/s"
run "no tls feature, http" "$WORK/iotel-plain" "http://127.0.0.1:$PLAIN_PORT/api/v1/write" ""
run "tls feature, http" "$WORK/iotel-tls" "http://127.0.0.1:$PLAIN_PORT/api/v1/write" ""
run "tls feature, https + mTLS" "$WORK/iotel-tls" "https://127.0.0.1:$TLS_PORT/api/v1/write" \
  "tls = { ca_file = \"$PKI/ca.pem\", cert_file = \"$PKI/client.pem\", key_file = \"$PKI/client.key\" }"
echo "peak: highest VmRSS sampled each second; maxrss: /usr/bin/time -v's maximum resident set size"
