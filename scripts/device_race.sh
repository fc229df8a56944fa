#!/usr/bin/env bash
# stylestream (wgpu/Vulkan) beside PyTorch (CUDA) on the same GPU, same network, same weights:
# for a lent H100/H200 with CUDA, PyTorch, numpy, safetensors and pillow installed, no network.
#
#   scripts/device_race.sh BIN MODELS_DIR            (writes $OUT, default /tmp/device-race)
#
# BIN is a stylestream release binary (with LD_LIBRARY_PATH set for its ffmpeg libraries, see
# shared/STACK.md), MODELS_DIR holds udnie.safetensors and golden/. Both sides are timed the
# same way: host 8-bit frame in, host 8-bit frame out, batch 1, steady state (after warm-up),
# one frame at a time; and kernel-only (stylestream: the sum of its per-kernel timestamp
# queries over one frame; PyTorch: CUDA events around the forward pass on a device-resident
# input). PyTorch runs at its defaults (convolutions in TF32), with cudnn.benchmark, and in
# fp16 channels-last. Output: $OUT/race.md (one table, ratios = PyTorch time / stylestream
# time, so > 1 means stylestream is faster), $OUT/race.json, the raw JSON lines, the
# golden checks of both sides.
set -uo pipefail
BIN=${1:?usage: device_race.sh BIN MODELS_DIR}
MODELS=${2:?usage: device_race.sh BIN MODELS_DIR}
OUT=${OUT:-/tmp/device-race}
mkdir -p "$OUT"
# `bench` times every kernel set at each size (`--kernels auto` on a GPU): the times come back.
export STYLESTREAM_KERNEL_CACHE="$OUT/kernels.json"
SIZES=${SIZES:-1920x1080 1280x720 640x360}
FRAMES=${FRAMES:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu checks the script itself on a machine without a GPU
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
: > "$OUT/stylestream.jsonl"
: > "$OUT/torch.jsonl"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  "$BIN" adapters
} 2>&1 | tee "$OUT/machine.txt"

# Both implementations against the golden data first: a race between wrong answers is no race.
"$PY" "$HERE/torch_reference.py" check --models "$MODELS" --device "$DEVICE" --fp16 2>&1 | tee "$OUT/torch_check.txt"
torch_ok=${PIPESTATUS[0]}
"$BIN" stylize "$MODELS/golden/input_256x144.png" -o "$OUT/udnie_256x144_stylestream.png" \
  --model "$MODELS/udnie.safetensors" 2>&1 | tail -2
"$PY" - "$OUT/udnie_256x144_stylestream.png" "$MODELS/golden/udnie_256x144.png" <<'PY' 2>&1 | tee "$OUT/stylestream_check.txt"
import sys, numpy as np
from PIL import Image
a = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.int16)
b = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.int16)
d = np.abs(a - b)
print(f"stylestream udnie 256x144 vs golden: max {d.max()} level(s), {(d > 0).sum()} of {d.size} values differ")
PY

# Interleaved by size: stylestream (f32, then f16 weights and activations), then PyTorch, at
# each size, on an otherwise idle GPU.
PRECISIONS=${PRECISIONS:-f32 f16}
for size in $SIZES; do
  for prec in $PRECISIONS; do
    "$BIN" bench --model "$MODELS/udnie.safetensors" --size "$size" --frames "$FRAMES" --precision "$prec" --json \
      2>>"$OUT/stderr.txt" | tail -n 1 >> "$OUT/stylestream.jsonl"
  done
  "$PY" "$HERE/torch_reference.py" time --models "$MODELS" --device "$DEVICE" --sizes "$size" \
    --frames "$FRAMES" --json 2>>"$OUT/stderr.txt" >> "$OUT/torch.jsonl"
done

"$PY" - "$OUT" "$torch_ok" <<'PY'
import json, sys
from pathlib import Path
out, torch_ok = Path(sys.argv[1]), sys.argv[2] == "0"
ss = {}
for line in (out / "stylestream.jsonl").read_text().splitlines():
    try:
        r = json.loads(line)
    except json.JSONDecodeError:
        continue
    ss[(r["width"], r["height"], r.get("precision", "?"))] = r
pt = {}
for line in (out / "torch.jsonl").read_text().splitlines():
    try:
        r = json.loads(line)
    except json.JSONDecodeError:
        continue
    pt[(r["width"], r["height"], r["variant"])] = r
variants = ["fp32", "fp32-bench", "fp16-cl"]
rows, table = [], []
head = "| size | stylestream precision | stylestream ms (kernels) | " + " | ".join(f"PyTorch {v} ms (kernels) | ratio e2e (kernels)" for v in variants) + " |"
table += [head, "|" + "---|" * (3 + 2 * len(variants))]
for (w, h, prec), s in sorted(ss.items(), key=lambda kv: (-kv[0][0] * kv[0][1], kv[0][2])):
    s_k = sum(k["ms"] for k in s.get("kernels", [])) or None
    cells = [f"{w}x{h}", f"{prec} ({s.get('variant', '?')})", f"{s['ms_per_frame']:.2f} ({s_k:.2f})" if s_k else f"{s['ms_per_frame']:.2f} (n/a)"]
    row = {"width": w, "height": h, "precision": prec, "variant": s.get("variant"), "stylestream_ms": s["ms_per_frame"], "stylestream_kernel_ms": s_k, "adapter": s.get("adapter")}
    for v in variants:
        p = pt.get((w, h, v))
        if p is None:
            cells += ["n/a", "n/a"]
            continue
        ratio = p["ms_per_frame"] / s["ms_per_frame"]
        kratio = p["kernel_ms"] / s_k if s_k else None
        cells += [f"{p['ms_per_frame']:.2f} ({p['kernel_ms']:.2f})", f"{ratio:.2f} ({kratio:.2f})" if kratio else f"{ratio:.2f} (n/a)"]
        row[f"torch_{v}_ms"], row[f"torch_{v}_kernel_ms"] = p["ms_per_frame"], p["kernel_ms"]
        row[f"ratio_{v}"], row[f"kernel_ratio_{v}"] = ratio, kratio
    table.append("| " + " | ".join(cells) + " |")
    rows.append(row)
note = (
    "Median ms per frame, batch 1, host 8-bit in/out; kernel-only in parentheses. "
    "Ratio = PyTorch time / stylestream time (> 1: stylestream faster)."
    + ("" if torch_ok else " WARNING: torch_reference.py check FAILED, see torch_check.txt.")
)
text = "\n".join(table + ["", note]) + "\n"
(out / "race.md").write_text(text)
(out / "race.json").write_text(json.dumps(rows, indent=1) + "\n")
print(text)
PY
