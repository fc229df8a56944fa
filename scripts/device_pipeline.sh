#!/usr/bin/env bash
# The pipeline end to end on a lent GPU (issue 27): `bench --video` at 1080p on a 10 s real
# clip, at x264 superfast and medium, with the stage table; the GPU machine has no ffmpeg, so
# the clip is made here and carried there with the binary and its ffmpeg libraries.
#
#   scripts/device_pipeline.sh pack [DIR]        here: DIR (default .device, git-ignored) gets
#       libs.tar.xz (the binary's shared libraries but glibc's) and run.tar.xz (the release
#       binary, udnie.safetensors, the clip); each goes in one device call: carry libs.tar.xz
#       first and unpack it to /tmp/ss (files under /tmp survive while the machine is warm),
#       then run.tar.xz, or both in one call where they fit the 64 MiB together.
#   scripts/device_pipeline.sh run DIR           there (or here): unpack what DIR holds into
#       /tmp/ss and run; results into $OUT (pipeline.md, one JSON per preset, logs).
#
# Target: e2e_fps >= 0.95 x model_fps at each preset. DEVICE=cpu checks the script on a machine
# without a GPU (lavapipe; use a small clip: SIZE=256x144 SECS=1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-10}
SIZE=${SIZE:-1920x1080}
PRESETS=${PRESETS:-superfast medium}
export CACHE=${CACHE:-$HOME/.cache/stylestream/bench}
MODELS=${STYLESTREAM_MODELS_DIR:-$HERE/../shared/models}
cmd=${1:?usage: device_pipeline.sh pack [DIR] | run DIR}

case "$cmd" in
pack)
  DIR=${2:-$HERE/.device}
  mkdir -p "$DIR"
  grep -qx '/.device/' "$HERE/.git/info/exclude" 2>/dev/null || { mkdir -p "$HERE/.git/info"; echo '/.device/' >> "$HERE/.git/info/exclude"; }
  (cd "$HERE" && cargo build --release --quiet --bin stylestream)
  BIN=${CARGO_TARGET_DIR:-$HERE/target}/release/stylestream
  CLIP=$("$HERE/scripts/bench_clip.sh" "$SECS" "$SIZE")
  stage=$(mktemp -d)
  mkdir -p "$stage/lib" "$stage/run"
  # Every library the binary loads but glibc's own (the machine there has a newer glibc).
  ldd "$BIN" | awk '/=> \//{print $3}' | grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' \
    | xargs -r cp -L -t "$stage/lib"
  cp "$BIN" "$stage/run/stylestream"
  cp "$MODELS/udnie.safetensors" "$stage/run/"
  cp "$CLIP" "$stage/run/clip.mp4"
  cp "$0" "$stage/run/device_pipeline.sh"
  tar -C "$stage/lib" -cf - . | xz -T0 -6 > "$DIR/libs.tar.xz"
  tar -C "$stage/run" -cf - . | xz -T0 -6 > "$DIR/run.tar.xz"
  rm -rf "$stage"
  ls -l "$DIR"/*.tar.xz
  echo "total $(du -cb "$DIR"/libs.tar.xz "$DIR"/run.tar.xz | tail -1 | cut -f1) bytes (64 MiB = 67108864 travel per call)"
  ;;
run)
  DIR=${2:?usage: device_pipeline.sh run DIR}
  OUT=${OUT:-/tmp/device-pipeline}
  SS=${SS:-/tmp/ss}
  mkdir -p "$SS/lib" "$SS/run" "$OUT"
  [ -f "$DIR/libs.tar.xz" ] && xz -dc "$DIR/libs.tar.xz" | tar -C "$SS/lib" -xf -
  [ -f "$DIR/run.tar.xz" ] && xz -dc "$DIR/run.tar.xz" | tar -C "$SS/run" -xf -
  [ -x "$SS/run/stylestream" ] || { echo "no binary yet in $SS/run (carry run.tar.xz)"; exit 0; }
  export LD_LIBRARY_PATH=$SS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
  export STYLESTREAM_KERNEL_CACHE=$OUT/kernels.json
  { nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } | tee "$OUT/gpu.txt"
  date -u +%Y-%m-%d > "$OUT/date.txt"
  "$SS/run/stylestream" adapters | tee "$OUT/adapters.txt"
  for p in $PRESETS; do
    echo "== $p"
    # The table on stderr-free stdout first, then the JSON line.
    "$SS/run/stylestream" bench --video "$SS/run/clip.mp4" --model "$SS/run/udnie.safetensors" \
      --preset "$p" --crf 20 --json 2> "$OUT/bench-$p.log" | tee "$OUT/bench-$p.txt"
    tail -n 1 "$OUT/bench-$p.txt" > "$OUT/bench-$p.json"
  done
  python3 - "$OUT" $PRESETS <<'PY' | tee "$OUT/pipeline.md"
import json, sys
out, presets = sys.argv[1], sys.argv[2:]
gpu = open(f"{out}/gpu.txt").read().strip()
date = open(f"{out}/date.txt").read().strip()
print(f"### {date}: the pipeline end to end on {gpu}\n")
print("| preset | e2e fps | model-only fps | e2e / model | ceiling fps | limiting stage |")
print("|---|---:|---:|---:|---:|---|")
reports = {}
for p in presets:
    r = json.load(open(f"{out}/bench-{p}.json"))
    reports[p] = r
    ratio = r["e2e_fps"] / r["model_fps"] if r["model_fps"] else float("nan")
    print(f"| {p} | {r['e2e_fps']:.1f} | {r['model_fps']:.1f} | {ratio:.2f} | {r['ceiling_fps']:.1f} | "
          f"{r['limiting_thread']}: {r['limiting_stage']} |")
for p, r in reports.items():
    print(f"\nStages at {p} ({r['width']}x{r['height']}, {r['frames']} frames), wall seconds inside each:\n")
    print("| stage | thread | s | calls |")
    print("|---|---|---:|---:|")
    for s in r["stages"]:
        print(f"| {s['stage']} | {s['thread']} | {s['secs']:.2f} | {s['calls']} |")
PY
  ;;
*)
  echo "usage: device_pipeline.sh pack [DIR] | run DIR" >&2
  exit 2
  ;;
esac
