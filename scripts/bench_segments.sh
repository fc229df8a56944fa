#!/usr/bin/env bash
# One video across the fleet, measured: a SECS-second 256x144 clip with SEGMENT-second segments,
# styled by two service instances on one queue, each held to one core (taskset, and
# LP_NUM_THREADS=1 for lavapipe), against one instance held the same way with the same
# segment_secs. Each configuration styles a warm-up job first; then the two are alternated
# ROUNDS times in this script, each round timed from the publish of the job to the commit of
# its output (its manifest). Prints the medians, their ratio, and the overheads as a share of
# the styling time (plan and cut, segment downloads, the stitch), read from the video's job log;
# writes $OUT/segments.json. Last, the video stream's size at the default CRF (18, medium)
# against one encoder's on the same clip.
#
#   scripts/bench_segments.sh              (SECS=20 SEGMENT=2 ROUNDS=3 SIZE=256x144 STYLE=udnie)
#
# Needs RabbitMQ on 127.0.0.1:5672 (as make test starts it) and an otherwise idle machine: the
# instances are pinned to cores 0 and 1, and a build running beside them skews the numbers.
set -euo pipefail
SECS=${SECS:-20}
SEGMENT=${SEGMENT:-2}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-256x144}
STYLE=${STYLE:-udnie}
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/bench-segments}
MODELS=${MODELS_DIR:-$HERE/../shared/models}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export STYLESTREAM_AMQP_URL=${STYLESTREAM_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
BIN=${BIN:-}
if [ -z "$BIN" ]; then
  (cd "$HERE" && cargo build --release --quiet --bin stylestream)
  BIN=${CARGO_TARGET_DIR:-$HERE/target}/release/stylestream
fi
rm -rf "$OUT"; mkdir -p "$OUT"

# The clip: a keyframe every second (so 2 s segments cut where they should), a tone.
ffmpeg -v error -y -f lavfi -i "testsrc2=size=$SIZE:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
  -t "$SECS" -c:v libx264 -g 25 -keyint_min 25 -sc_threshold 0 -pix_fmt yuv420p -c:a aac "$OUT/clip.mp4"
ffmpeg -v error -y -f lavfi -i "testsrc2=size=$SIZE:rate=25" -frames:v 3 -c:v libx264 -pix_fmt yuv420p "$OUT/warm.mp4"

# setup NAME: a fresh queue, stores and config for configuration NAME.
setup() {
  local name=$1 dir=$OUT/$1
  mkdir -p "$dir/media/in" "$dir/system"
  cp "$OUT/clip.mp4" "$OUT/warm.mp4" "$dir/media/in/"
  cat > "$dir/service.toml" <<EOF
[broker]
queue = "bseg-$name-$$"
dead_letter = "bseg-$name-$$.dead"
prefetch = 1
[storage]
media = "file://$dir/media"
system = "file://$dir/system"
[models]
dir = "$MODELS"
[service]
jobs = 1
segment_secs = $SEGMENT
heartbeat_secs = 1
EOF
}

# start NAME CORE INDEX: one instance of NAME's service pinned to CORE.
start() {
  local dir=$OUT/$1 core=$2 i=$3
  mkdir -p "$dir/work$i"
  sed "s|^\[service\]|[service]\nwork_dir = \"$dir/work$i\"|" "$dir/service.toml" > "$dir/service$i.toml"
  LP_NUM_THREADS=1 taskset -c "$core" "$BIN" serve --config "$dir/service$i.toml" --log-format json 2> "$dir/serve$i.log" &
  echo $! >> "$dir/pids"
}

stop() {
  local dir=$OUT/$1
  while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done < "$dir/pids"
  while read -r pid; do wait "$pid" 2>/dev/null || true; done < "$dir/pids"
  rm -f "$dir/pids"
  local q="bseg-$1-$$"
  for x in "$q" "$q.dead" "$q.retry.2000ms" "$q.retry.10000ms" "$q.retry.30000ms" "$q.retry.60000ms" "$q.retry.300000ms"; do
    rabbitmqctl -q delete_queue "$x" >/dev/null 2>&1 || true
  done
}

# job NAME INPUT ID: publishes the job, waits for its manifest; prints the seconds in between.
job() {
  local dir=$OUT/$1 start end
  start=$(date +%s.%N)
  "$BIN" submit --config "$dir/service.toml" --input "in/$2" --style "$STYLE" --output "out/$3.mp4" --id "$3" >/dev/null
  until [ -f "$dir/media/out/$3.mp4.manifest.json" ]; do sleep 0.1; done
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

setup one; setup two
trap 'stop one 2>/dev/null || true; stop two 2>/dev/null || true' EXIT
start one 0 0
start two 0 0; start two 1 1
sleep 3
echo "warm-up jobs..."
job one warm.mp4 warm >/dev/null
job two warm.mp4 warm >/dev/null
: > "$OUT/times.txt"
for r in $(seq 1 "$ROUNDS"); do
  t1=$(job one clip.mp4 "r$r"); echo "one $t1" | tee -a "$OUT/times.txt"
  t2=$(job two clip.mp4 "r$r"); echo "two $t2" | tee -a "$OUT/times.txt"
done
stop one; stop two; trap - EXIT

# The size a segmented output costs: the same clip through one encoder (`stylize`, the
# service's default CRF 18 and preset medium), against the stitched output of round 1.
"$BIN" stylize "$OUT/clip.mp4" -o "$OUT/single.mp4" --model "$MODELS/$STYLE.safetensors" --crf 18 --preset medium --quiet
vbytes() { ffprobe -v error -select_streams v:0 -show_entries packet=size -of csv=p=0 "$1" | paste -sd+ | bc; }
echo "$(vbytes "$OUT/single.mp4") $(vbytes "$OUT/two/media/out/r1.mp4")" > "$OUT/sizes.txt"

python3 - "$OUT" "$ROUNDS" <<'EOF' | tee "$OUT/segments.json"
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
times = {"one": [], "two": []}
for line in open(f"{out}/times.txt"):
    name, t = line.split()
    times[name].append(float(t))
def overheads(name):
    shares = []
    for r in range(1, rounds + 1):
        log = json.load(open(f"{out}/{name}/system/logs/r{r}.json"))
        seg = log["segments"]
        style = sum(s["seconds"]["style"] for s in seg["segments"])
        downloads = sum(s["seconds"]["download"] for s in seg["segments"])
        stitch = sum(log["seconds"].values())
        shares.append({"plan_and_cut": seg["planning_secs"] / style, "downloads": downloads / style, "stitch": stitch / style,
                       "segments": seg["count"], "instances": len({s["instance"] for s in seg["segments"]})})
    return shares
one, two = statistics.median(times["one"]), statistics.median(times["two"])
single, segmented = (int(v) for v in open(f"{out}/sizes.txt").read().split())
print(json.dumps({"video_bytes_single_encoder": single, "video_bytes_segmented": segmented,
                  "segmented_vs_single": segmented / single, "rounds": rounds, "one_instance_s": times["one"], "two_instances_s": times["two"],
                  "median_one_s": one, "median_two_s": two, "speedup": one / two,
                  "overheads_one": overheads("one"), "overheads_two": overheads("two")}, indent=1))
EOF
