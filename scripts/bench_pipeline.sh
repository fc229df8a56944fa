#!/usr/bin/env bash
# The pipeline's ceiling against ffmpeg's command-line tool, on a real clip, in one script:
#
#   reference  ffmpeg -i IN -vf format=rgb24,format=yuv420p -c:v libx264 -preset P -crf 20 -c:a copy OUT
#   plain      ffmpeg -i IN -c:v libx264 -preset P -crf 20 -c:a copy OUT          (no RGB round trip)
#   ceiling    stylestream bench --video IN --model none --preset P --crf 20      (decode, RGB,
#              the network replaced by a copy on the CPU, encode, mux: no GPU)
#
# alternated ROUNDS times at each preset (PRESETS, default superfast veryfast medium); prints
# the medians (frames per second over the whole run, start-up included, for all three) and
# the ratios ceiling / reference and ceiling / plain; writes $OUT/pipeline.json.
#
# The clip is real footage, not a test pattern (x264's speed depends on the content): Big Buck
# Bunny, looped to SECS seconds at 1920x1080, with its AAC audio (scripts/bench_clip.sh, made
# once into $CACHE). Needs an otherwise idle machine.
#
#   scripts/bench_pipeline.sh [path/to/stylestream]
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
PRESETS=${PRESETS:-superfast veryfast medium}
SECS=${SECS:-10}
export CACHE=${CACHE:-$HOME/.cache/stylestream/bench}
OUT=${OUT:-/tmp/bench-pipeline}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
BIN=${1:-}
if [ -z "$BIN" ]; then
  (cd "$HERE" && cargo build --release --quiet --bin stylestream)
  BIN=${CARGO_TARGET_DIR:-$HERE/target}/release/stylestream
fi
mkdir -p "$OUT"
CLIP=$("$HERE/scripts/bench_clip.sh" "$SECS" 1920x1080)
FRAMES=$(ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 "$CLIP")
echo "clip: $CLIP ($FRAMES frames, 1920x1080)"

wall() { # command... -> seconds
  local s e
  s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}

: > "$OUT/times.txt"
for p in $PRESETS; do
  for r in $(seq 1 "$ROUNDS"); do
    t=$(wall ffmpeg -v error -y -i "$CLIP" -vf format=rgb24,format=yuv420p -c:v libx264 -preset "$p" -crf 20 -c:a copy "$OUT/ref.mp4")
    echo "$p reference $t" >> "$OUT/times.txt"
    t=$(wall ffmpeg -v error -y -i "$CLIP" -c:v libx264 -preset "$p" -crf 20 -c:a copy "$OUT/plain.mp4")
    echo "$p plain $t" >> "$OUT/times.txt"
    "$BIN" bench --video "$CLIP" --model none --preset "$p" --crf 20 -o "$OUT/ceiling.mp4" --json | tail -n 1 > "$OUT/ceiling-$p-$r.json"
    echo "$p ceiling $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["e2e_secs"])' "$OUT/ceiling-$p-$r.json")" >> "$OUT/times.txt"
    tail -n 3 "$OUT/times.txt"
  done
done

python3 - "$OUT" "$FRAMES" "$PRESETS" <<'EOF' | tee "$OUT/pipeline.json"
import json, statistics, sys, glob
out, frames, presets = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
times = {}
for line in open(f"{out}/times.txt"):
    p, what, t = line.split()
    times.setdefault(p, {}).setdefault(what, []).append(float(t))
result = {"frames": frames, "size": "1920x1080", "presets": {}}
for p in presets:
    fps = {w: frames / statistics.median(ts) for w, ts in times[p].items()}
    stages = json.load(open(sorted(glob.glob(f"{out}/ceiling-{p}-*.json"))[-1]))
    result["presets"][p] = {
        "reference_fps": fps["reference"], "plain_fps": fps["plain"], "ceiling_fps": fps["ceiling"],
        "ceiling_vs_reference": fps["ceiling"] / fps["reference"], "ceiling_vs_plain": fps["ceiling"] / fps["plain"],
        "runs_s": times[p], "ceiling_limits": [stages["limiting_thread"], stages["limiting_stage"]],
        "ceiling_stages_s": {s["stage"]: round(s["secs"], 3) for s in stages["stages"]},
    }
print(json.dumps(result, indent=1))
EOF
