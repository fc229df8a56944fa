#!/usr/bin/env bash
# Benchmark and cross-check on a real GPU (the `device` machine of this workplace, or any Linux
# box with a Vulkan driver). Arguments: the stylestream binary and a folder holding
# udnie.safetensors, input_256x144.png and udnie_256x144.png (golden). Writes results to $OUT.
set -uo pipefail
BIN=${1:?binary}; DATA=${2:?data dir}; OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
export XDG_RUNTIME_DIR=/tmp
# The kernel choice of `--kernels auto` (timed on GPUs): every candidate's time comes back.
export STYLESTREAM_KERNEL_CACHE="$OUT/kernels.json"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
"$BIN" adapters | tee "$OUT/adapters.txt"
"$BIN" stylize "$DATA/input_256x144.png" -o "$OUT/udnie_256x144_gpu.png" --model "$DATA/udnie.safetensors"
python3 - "$OUT/udnie_256x144_gpu.png" "$DATA/udnie_256x144.png" <<'PY' | tee "$OUT/golden.txt"
import sys, numpy as np
from PIL import Image
a = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.int16)
b = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.int16)
d = np.abs(a - b)
print(f"golden 256x144 udnie: max level diff {d.max()}, values differing {(d > 0).sum()} of {d.size}")
PY
for size in 640x360 1280x720 1920x1080; do
  for variant in "" "--kernels subgroup" "--kernels plain" "--kernels tiled"; do
    "$BIN" bench --model "$DATA/udnie.safetensors" --size $size --frames 10 --json $variant \
      | tee -a "$OUT/bench.txt"
  done
done
