#!/usr/bin/env bash
# Steady frames per second at 256x144, interleaved rounds so lavapipe's drift hits every
# variant alike: the network alone (`bench`), and the dataflow engine (what every command runs
# through) with 1 and 2 workers. Prints each round and the medians. Usage: scripts/bench_engines.sh [binary] [rounds]
set -euo pipefail
BIN=${1:-target/release/stylestream}; ROUNDS=${2:-3}
export STYLESTREAM_MODELS_DIR=${STYLESTREAM_MODELS_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/models}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ffmpeg -loglevel error -f lavfi -i testsrc2=size=256x144:rate=25 -f lavfi -i sine=sample_rate=44100 \
  -t 1.6 -c:v libx264 -pix_fmt yuv420p -c:a aac "$T/clip.mp4"
for r in $(seq "$ROUNDS"); do
  net=$("$BIN" bench --model udnie --size 256x144 --frames 20 --json | tail -n 1)
  w1=$("$BIN" stylize "$T/clip.mp4" -o "$T/o2.mp4" --model udnie --progress json --workers 1 2>&1 | grep '^{' | tail -n 1)
  w2=$("$BIN" stylize "$T/clip.mp4" -o "$T/o3.mp4" --model udnie --progress json --workers 2 2>&1 | grep '^{' | tail -n 1)
  echo "$net|$w1|$w2"
done | python3 -c '
import json, statistics, sys
rows = []
for line in sys.stdin:
    n, w1, w2 = (json.loads(x) for x in line.strip().split("|"))
    row = (n["fps"], w1["steady_fps"], w2["steady_fps"])
    rows.append(row)
    print("round: network %.3f  dataflow-1 %.3f  dataflow-2 %.3f fps" % row)
m = [statistics.median(c) for c in zip(*rows)]
print("median: network %.3f  dataflow-1 %.3f (%.2fx network)  dataflow-2 %.3f (%.2fx network)"
      % (m[0], m[1], m[1] / m[0], m[2], m[2] / m[0]))
'
