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
