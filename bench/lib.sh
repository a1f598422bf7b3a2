# Shared by the benchmarks: temp dir and child cleanup, free ports, counters
# read from a /metrics page, and the reference target (200 gauge families x
# 10 series, served as a static file). Source it after `set -euo pipefail`.

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

counter() { # URL METRIC-REGEX: sums matching sample values
  curl -sf "$1" | awk -v re="$2" '$0 !~ /^#/ && $1 ~ re {s+=$NF} END {printf "%d", s}'
}

# serve_target SERIES: writes the target's exposition and serves it; sets
# TARGET_PORT.
serve_target() {
  mkdir -p "$WORK/target"
  python3 - "$WORK/target/metrics" "$1" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for fam in range(n // 10):
        f.write(f"# HELP bench_sensor_{fam} A benchmark sensor.\n# TYPE bench_sensor_{fam} gauge\n")
        for i in range(10):
            f.write(f'bench_sensor_{fam}{{device="d{i}",zone="z{fam % 7}"}} {fam * 10 + i}.5\n')
PY
  TARGET_PORT=$(free_port)
  (cd "$WORK/target" && exec python3 -m http.server "$TARGET_PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
  PIDS+=($!)
}

# measure PID OUT (uses DURATION): samples VmRSS each second; writes the sampled peak, the
# steady RSS (median of the second half) and CPU % over the run.
measure() {
  local pid=$1 out=$2
  local ticks0 ticks1
  ticks0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  : > "$out.rss"
  for _ in $(seq "$DURATION"); do
    awk '/VmRSS/ {print $2}' "/proc/$pid/status" >> "$out.rss" 2>/dev/null || true
    sleep 1
  done
  ticks1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$out.rss" "$ticks0" "$ticks1" "$hz" "$DURATION" <<'PY' > "$out.summary"
import sys, statistics
rss = [int(x) for x in open(sys.argv[1]) if x.strip()]
t0, t1, hz, d = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
half = rss[len(rss)//2:]
print(f"{max(rss)} {statistics.median(half):.0f} {(t1-t0)/hz/d*100:.2f}")
PY
}
