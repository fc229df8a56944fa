#!/usr/bin/env bash
# Jobs per minute of the service: a baseline revision and this checkout, built and run by one
# script on one machine, so the ratio compares like with like (lavapipe's speed differs 4-8x
# between machines).
#
#   scripts/jobs_per_minute.sh [BASE_REV]     (default BASE_REV: 55b9b41, main before issue 13)
#
# Builds both (PROFILE=release by default, or dev) into one target directory (the dependencies
# are built once), then
# for each binary: publishes JOBS small jobs (a 32x24 clip of FRAMES frames, one output each)
# to a fresh queue on the local RabbitMQ, starts `serve` with service.jobs = SLOTS on local
# files, and times from the start of the service to the last manifest. Prints both rates and
# their ratio (this checkout / base); writes $OUT/jobs_per_minute.json.
set -euo pipefail
BASE=${1:-55b9b41}
JOBS=${JOBS:-50}
FRAMES=${FRAMES:-2}
SLOTS=${SLOTS:-2}
PROFILE=${PROFILE:-release}
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/jobs-per-minute}
MODELS=${MODELS_DIR:-$HERE/../shared/models}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target}
export STYLESTREAM_AMQP_URL=${STYLESTREAM_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
rm -rf "$OUT"; mkdir -p "$OUT/bin"

echo "building $BASE (baseline) and this checkout ($PROFILE)..."
WT=$(mktemp -d)
git -C "$HERE" worktree add -q --detach "$WT/base" "$BASE"
trap 'git -C "$HERE" worktree remove --force "$WT/base" >/dev/null 2>&1 || true; rm -rf "$WT"' EXIT
(cd "$WT/base" && cargo build --profile "$PROFILE" --quiet --bin stylestream) && cp "$CARGO_TARGET_DIR/$DIR/stylestream" "$OUT/bin/base"
(cd "$HERE" && cargo build --profile "$PROFILE" --quiet --bin stylestream) && cp "$CARGO_TARGET_DIR/$DIR/stylestream" "$OUT/bin/head"

ffmpeg -v error -y -f lavfi -i testsrc2=size=32x24:rate=25 -frames:v "$FRAMES" -c:v libx264 -pix_fmt yuv420p "$OUT/clip.mp4"

run() { # name -> seconds for JOBS jobs
  local name=$1 bin=$OUT/bin/$1 dir=$OUT/$1 queue="jpm-$1-$$"
  mkdir -p "$dir/media/in" "$dir/system" "$dir/work"
  cp "$OUT/clip.mp4" "$dir/media/in/clip.mp4"
  cat > "$dir/service.toml" <<EOF
[broker]
queue = "$queue"
dead_letter = "$queue.dead"
prefetch = 8
[storage]
media = "file://$dir/media"
system = "file://$dir/system"
[models]
dir = "$MODELS"
[service]
jobs = $SLOTS
work_dir = "$dir/work"
EOF
  for i in $(seq 1 "$JOBS"); do
    "$bin" submit --config "$dir/service.toml" --input in/clip.mp4 --style wave --output "out/c$i.mp4" --id "j$i" >/dev/null
  done
  local start end
  start=$(date +%s.%N)
  "$bin" serve --config "$dir/service.toml" 2> "$dir/serve.log" &
  local pid=$!
  while [ "$(find "$dir/media/out" -name '*.manifest.json' 2>/dev/null | wc -l)" -lt "$JOBS" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "$name: the service died" >&2; tail -5 "$dir/serve.log" >&2; exit 1; fi
    sleep 0.2
  done
  end=$(date +%s.%N)
  kill -TERM "$pid"; wait "$pid" || true
  for q in "$queue" "$queue.dead" "$queue.retry.2000ms" "$queue.retry.10000ms" "$queue.retry.30000ms" "$queue.retry.60000ms" "$queue.retry.300000ms"; do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
  echo "$end - $start" | bc -l
}

base_s=$(run base)
head_s=$(run head)
python3 - "$base_s" "$head_s" "$JOBS" "$BASE" <<'EOF' | tee "$OUT/jobs_per_minute.json"
import json, sys
base, head, jobs, rev = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = {"jobs": jobs, "base_rev": rev, "base_jobs_per_min": jobs / base * 60, "head_jobs_per_min": jobs / head * 60}
r["ratio"] = r["head_jobs_per_min"] / r["base_jobs_per_min"]
print(json.dumps(r, indent=1))
EOF
