#!/usr/bin/env bash
# `iotel lint metrics` throughput: generates a large exposition (text 0.0.4
# by default, or OpenMetrics) of gauge, counter and histogram families with
# device labels, lints it from a file and from stdin, and reports MB/s and
# peak RSS (from /usr/bin/time -v). MB are 10^6 bytes; "MB per
# cpu-second" (user + system) is the figure that does not depend on what
# else the machine is doing.
#
#   bash bench/lint-throughput.sh [SIZE_MB] [prometheus|openmetrics]   (default 100 prometheus)
#
# Builds `iotel` in release (the workspace's size-tuned profile, as it
# ships); IOTEL_BIN=path skips the build (e.g. a debug binary, slower).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-100}"
FORMAT="${2:-prometheus}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iotel-target}"
if [ -z "${IOTEL_BIN:-}" ]; then
  cargo build --release -q -p iotel
  IOTEL_BIN="$CARGO_TARGET_DIR/release/iotel"
fi
test -x /usr/bin/time || { echo "error: /usr/bin/time missing (Debian package \`time\`)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Families of 100 series (10 devices x 10 sensors), one family in three a
# counter, one in five a histogram of 5 buckets; HELP and TYPE for each.
python3 - "$WORK/input" "$SIZE_MB" "$FORMAT" <<'PY'
import sys
path, size, fmt = sys.argv[1], int(sys.argv[2]) << 20, sys.argv[3]
om = fmt == "openmetrics"
written = 0
fam = 0
with open(path, "w") as f:
    while written < size:
        fam += 1
        out = []
        if fam % 5 == 0:
            name = f"fleet_publish_{fam}_duration_seconds"
            out.append(f"# HELP {name} Time to publish a batch.\n# TYPE {name} histogram\n")
            if om:
                out.append(f"# UNIT {name} seconds\n")
            for d in range(20):
                labels = f'device="dev-{d:04d}",site="greenhouse-{fam % 13}"'
                for le in ("0.01", "0.1", "1", "10", "+Inf"):
                    out.append(f'{name}_bucket{{{labels},le="{le}"}} {d * 3}\n')
                out.append(f"{name}_sum{{{labels}}} {d * 1.5}\n{name}_count{{{labels}}} {d * 3}\n")
        elif fam % 3 == 0:
            base = f"device_{fam}_packets"
            name = base if om else base + "_total"
            out.append(f"# HELP {name} Packets sent.\n# TYPE {name} counter\n")
            for d in range(10):
                for s in range(10):
                    out.append(f'{base}_total{{device="dev-{d:04d}",radio="r{s}"}} {fam * 100 + d * 10 + s}\n')
        else:
            name = f"sensor_{fam}_temperature_celsius"
            out.append(f"# HELP {name} A temperature.\n# TYPE {name} gauge\n")
            if om:
                out.append(f"# UNIT {name} celsius\n")
            for d in range(10):
                for s in range(10):
                    out.append(f'{name}{{device="dev-{d:04d}",sensor="s{s}"}} {20 + (d * s) % 17}.25\n')
        block = "".join(out)
        f.write(block)
        written += len(block)
    if om:
        f.write("# EOF\n")
PY
BYTES=$(stat -c %s "$WORK/input")
echo "input: $BYTES bytes ($FORMAT), $(wc -l < "$WORK/input") lines; binary: $IOTEL_BIN; cpu: $(nproc) cores"

run() { # LABEL CMD...: runs it under /usr/bin/time -v, prints MB/s and peak RSS
  local label=$1; shift
  local code=0
  /usr/bin/time -v -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" || code=$?
  if [ "$code" -gt 1 ]; then
    echo "error: $label exited $code" >&2; head -5 "$WORK/out" "$WORK/err" >&2; exit 1
  fi
  python3 - "$WORK/time" "$BYTES" "$label" "$code" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
b, label, code = int(sys.argv[2]), sys.argv[3], sys.argv[4]
def field(name):
    return re.search(re.escape(name) + r": (.*)", t).group(1).strip()
wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
rss = int(field("Maximum resident set size (kbytes)"))
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
print(f"{label:<6} {secs:6.2f} s  {b / 1e6 / secs:6.1f} MB/s  cpu {cpu:6.2f} s ({b / 1e6 / cpu:6.1f} MB per cpu-second)  peak RSS {rss / 1024:6.1f} MiB  exit {code}")
PY
  tail -1 "$WORK/err"
}

run file "$IOTEL_BIN" lint metrics --input-format "$FORMAT" "$WORK/input"
run stdin sh -c "cat '$WORK/input' | '$IOTEL_BIN' lint metrics --input-format '$FORMAT' -"
run json "$IOTEL_BIN" lint metrics --format json --input-format "$FORMAT" "$WORK/input"
