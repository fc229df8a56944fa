#!/usr/bin/env bash
# End-to-end video measurements, each against a baseline from the same script:
#  1. throughput: `stylize` on a 256x144 clip (decode + GPU + encode, steady rate after the first
#     frame) against `bench` (the network alone) at the same size;
#  2. memory: peak RSS styling 600 frames against 60 frames at 64x48 (/usr/bin/time -v).
# Usage: scripts/bench_video.sh [path/to/stylestream]   (models: $STYLESTREAM_MODELS_DIR)
set -euo pipefail
BIN=${1:-target/release/stylestream}
export STYLESTREAM_MODELS_DIR=${STYLESTREAM_MODELS_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/models}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

ffmpeg -loglevel error -f lavfi -i testsrc2=size=256x144:rate=25 -f lavfi -i sine=sample_rate=44100 \
  -t 1.6 -c:v libx264 -pix_fmt yuv420p -c:a aac "$T/clip256.mp4"
model=$("$BIN" bench --model udnie --size 256x144 --frames 10 --json | tail -n 1)
e2e=$("$BIN" stylize "$T/clip256.mp4" -o "$T/out256.mp4" --model udnie --progress json 2>&1 | grep '^{' | tail -n 1)
python3 - "$model" "$e2e" <<'PY'
import json, sys
m, e = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"256x144 network only (bench): {m['fps']:.3f} fps   end to end (stylize, steady): {e['steady_fps']:.3f} fps"
      f"   ratio {e['steady_fps'] / m['fps']:.3f}")
PY

# The dataflow engine with one and two workers, same clip, same run.
for mode in "--workers 1" "--workers 2"; do
  extra="$mode"
  r=$("$BIN" stylize "$T/clip256.mp4" -o "$T/df.mp4" --model udnie --progress json $extra 2>&1 | grep '^{' | tail -n 1)
  echo "256x144 $mode: steady $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['steady_fps'])" "$r") fps"
done

for n in 60 600; do
  ffmpeg -loglevel error -f lavfi -i testsrc2=size=64x48:rate=25 -frames:v $n -c:v libx264 -pix_fmt yuv420p "$T/clip$n.mp4"
  /usr/bin/time -v "$BIN" stylize "$T/clip$n.mp4" -o "$T/out$n.mp4" --model udnie --quiet 2> "$T/time$n.txt"
  echo "64x48, $n frames: peak RSS $(grep 'Maximum resident' "$T/time$n.txt" | awk '{print $NF}') KiB"
done
