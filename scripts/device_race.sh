#!/usr/bin/env bash
# stylestream (wgpu/Vulkan) beside PyTorch (CUDA) on the same GPU, same network, same weights:
# for a lent H100/H200 with CUDA, PyTorch, numpy, safetensors and pillow installed, no network.
#
#   scripts/device_race.sh BIN MODELS_DIR     race, tuning and tables (into $OUT, default /tmp/device-race)
#   scripts/device_race.sh --tables OUT       the tables again from OUT's raw results
#
# BIN is `stylestream-gpu` (bench and adapters only; it needs no ffmpeg library, so it travels
# in the same call: `cargo build --release --bin stylestream-gpu`, ~12 MB, ~3 MB xz-compressed;
# copy target/release/stylestream-gpu, udnie.safetensors and golden/input_256x144.png and
# udnie_256x144.png into a git-ignored folder of the repo and name it in `carry`), or the full
# stylestream binary. MODELS_DIR holds udnie.safetensors and golden/. Both sides are timed the
# same way: host 8-bit frame in, host 8-bit frame out, batch 1, steady state (after warm-up),
# one frame at a time; and kernel-only (stylestream: the sum of its per-kernel timestamp
# queries over one frame; PyTorch: CUDA events around the forward pass on a device-resident
# input). Our side runs f32, f16 (the kernel set `auto` picks: timed on a GPU) and f16 with the
# cooperative-matrix kernels (`--kernels coop`; where they cannot be used, bench says
# `fallback` and the log why). PyTorch runs at its defaults (convolutions in TF32) with
# cudnn.benchmark off, on, and in fp16 channels-last.
# Then the tuning: `bench --kernels timed` at each size and precision, one frame per submission
# and $BATCH per submission, recording the set chosen and every candidate's time.
#
# Output in $OUT: race.md (ready to paste into docs/performance.md: GPU, driver, date; the
# per-layer times of our side; the ratios against PyTorch, > 1 meaning stylestream is faster;
# the tuning), race.json, the golden checks of both sides, and the raw results (bench/*.json
# and their debug logs with the per-step GPU times, torch.jsonl, tune/*.json, kernels.json).
# DEVICE=cpu checks the script itself on a machine without a GPU (lavapipe and PyTorch on the
# CPU; without PyTorch installed its columns say n/a): e.g.
#   DEVICE=cpu SIZES=64x48 TUNE_SIZES=64x48 FRAMES=1 scripts/device_race.sh target/release/stylestream-gpu ../shared/models
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}

# The tables, from the raw results in $1.
tables() {
  "$PY" - "$1" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def read_json(p):
    try:
        return json.loads(p.read_text().strip().splitlines()[-1])
    except (OSError, IndexError, json.JSONDecodeError):
        return None
def size_key(s):
    w, h = (int(v) for v in s.split("x"))
    return -w * h
text = lambda name: (out / name).read_text().strip() if (out / name).exists() else ""

# Our side: one JSON per (size, precision, kernels), its debug log with the per-step times.
CONFIGS = [("f32", "auto"), ("f16", "auto"), ("f16", "coop")]
runs = {}
for p in sorted((out / "bench").glob("*.json")):
    size, prec, kernels = p.stem.split("_")
    r = read_json(p)
    if r is None:
        continue
    layers = {}
    log = p.with_suffix(".log")
    for line in (log.read_text().splitlines() if log.exists() else []):
        try:
            f = json.loads(line).get("fields", {})
        except json.JSONDecodeError:
            continue
        if f.get("message") == "step time":
            layer = str(f["step"]).split(":")[0]
            layers[layer] = layers.get(layer, 0.0) + float(f["ms"])
    r["layers"] = layers
    runs[(size, prec, kernels)] = r
torch = {}
for line in text("torch.jsonl").splitlines():
    try:
        r = json.loads(line)
    except json.JSONDecodeError:
        continue
    torch[(f"{r['width']}x{r['height']}", r["variant"])] = r

gpu = text("gpu.txt") or "n/a"
adapter = next((r.get("adapter") for r in runs.values() if r.get("adapter")), "n/a")
date = text("date.txt") or "n/a"
torch_version = text("torch_version.txt") or "PyTorch not installed"
lines = [f"### {date}: stylestream vs PyTorch on {gpu.split(',')[0] if gpu != 'n/a' else adapter}", ""]
lines += [f"GPU (nvidia-smi): {gpu}. Adapter (wgpu): {adapter}. {torch_version}. Date (UTC): {date}.", ""]
for name, title in [("stylestream_check.txt", "stylestream vs golden"), ("torch_check.txt", "PyTorch vs golden")]:
    body = text(name)
    if body:
        lines += [f"{title}:", "", "```", body, "```", ""]

label = lambda r, prec, kernels: f"{prec} {r.get('variant', '?')}" + (
    f" ({r.get('variant_source')})" if kernels != "auto" or r.get("variant_source") in ("fallback",) else "")

# Per-layer times of our side, one table per size.
sizes = sorted({k[0] for k in runs}, key=size_key)
for size in sizes:
    cols = [(p, k) for p, k in CONFIGS if (size, p, k) in runs]
    layer_names = []
    for c in cols:
        for name in runs[(size, *c)]["layers"]:
            if name not in layer_names:
                layer_names.append(name)
    if not layer_names:
        continue
    lines += [f"Per layer at {size}, stylestream, GPU ms per frame (timestamp queries, one profiled frame; "
              "a layer's conv, norm statistics/finalize and apply passes together):", ""]
    lines += ["| layer | " + " | ".join(label(runs[(size, *c)], *c) for c in cols) + " |",
              "|---|" + "---:|" * len(cols)]
    for name in layer_names:
        cells = [f"{runs[(size, *c)]['layers'].get(name, 0.0):.3f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [f"**{sum(runs[(size, *c)]['layers'].values()):.3f}**" for c in cols]
    lines += ["| total | " + " | ".join(totals) + " |", ""]

# Ratios against PyTorch.
variants = ["fp32", "fp32-bench", "fp16-cl"]
vnames = {"fp32": "TF32 default", "fp32-bench": "TF32 cudnn.benchmark", "fp16-cl": "fp16 channels-last"}
lines += ["Against PyTorch: median ms per frame, batch 1, host 8-bit in and out; kernel-only in parentheses. "
          "Ratio = PyTorch time / stylestream time (> 1: stylestream faster).", ""]
lines += ["| size | stylestream | stylestream ms | " + " | ".join(f"PyTorch {vnames[v]} ms | ratio" for v in variants) + " |",
          "|---|---|---:|" + "---:|---:|" * len(variants)]
rows = []
for size in sizes:
    for prec, kernels in CONFIGS:
        s = runs.get((size, prec, kernels))
        if s is None:
            continue
        s_k = sum(k["ms"] for k in s.get("kernels", [])) or None
        cells = [size, label(s, prec, kernels), f"{s['ms_per_frame']:.2f} ({s_k:.2f})" if s_k else f"{s['ms_per_frame']:.2f} (n/a)"]
        row = {"size": size, "precision": prec, "kernels": kernels, "variant": s.get("variant"),
               "variant_source": s.get("variant_source"), "stylestream_ms": s["ms_per_frame"],
               "stylestream_kernel_ms": s_k, "layers_ms": s["layers"], "adapter": s.get("adapter")}
        for v in variants:
            p = torch.get((size, v))
            if p is None:
                cells += ["n/a", "n/a"]
                continue
            ratio = p["ms_per_frame"] / s["ms_per_frame"]
            kratio = p["kernel_ms"] / s_k if s_k else None
            cells += [f"{p['ms_per_frame']:.2f} ({p['kernel_ms']:.2f})", f"{ratio:.2f} ({kratio:.2f})" if kratio else f"{ratio:.2f} (n/a)"]
            row.update({f"torch_{v}_ms": p["ms_per_frame"], f"torch_{v}_kernel_ms": p["kernel_ms"],
                        f"ratio_{v}": ratio, f"kernel_ratio_{v}": kratio})
        lines.append("| " + " | ".join(cells) + " |")
        rows.append(row)
lines.append("")

# Tuning: what `--kernels timed` chose at each size and precision, every candidate's time.
cache = {}
try:
    cache = json.loads(text("kernels.json") or "{}")
except json.JSONDecodeError:
    pass
tune = []
for p in sorted((out / "tune").glob("*.json"), key=lambda p: (size_key(p.stem.split("_")[0]), p.stem)):
    r = read_json(p)
    if r is None:
        continue
    size, prec = p.stem.split("_")[:2]
    entry = next((e for k, e in cache.items() if k.endswith(f"|{size}|{prec}")), {})
    cands = ", ".join(f"{n} {ms:.2f}" for n, ms in sorted(entry.get("ms", {}).items(), key=lambda kv: kv[1]))
    batched = r.get("batched_ms_per_frame")
    tune.append(f"| {size} | {prec} | {r.get('variant')} ({r.get('variant_source')}) | {cands or 'n/a'} | "
                f"{r['ms_per_frame']:.2f} | " + (f"{batched:.2f} (batch {r.get('batch')})" if batched else "n/a") + " |")
if tune:
    lines += ["Tuning (`bench --kernels timed`): the set chosen per size and precision, each candidate's ms per "
              "frame when it was timed, and the chosen set's ms per frame at one and at several frames per submission:", "",
              "| size | precision | chosen (how) | candidates, ms per frame | 1 per submission ms | several per submission ms |",
              "|---|---|---|---|---:|---:|"] + tune + [""]
if not text("torch_ok.txt") == "0" and torch:
    lines.append("WARNING: torch_reference.py check FAILED, see torch_check.txt.")
(out / "race.md").write_text("\n".join(lines) + "\n")
(out / "race.json").write_text(json.dumps(rows, indent=1) + "\n")
print("\n".join(lines))
PY
}

if [ "${1:-}" = "--tables" ]; then
  tables "${2:?usage: device_race.sh --tables OUT}"
  exit
fi
BIN=${1:?usage: device_race.sh BIN MODELS_DIR}
MODELS=${2:?usage: device_race.sh BIN MODELS_DIR}
OUT=${OUT:-/tmp/device-race}
SIZES=${SIZES:-1920x1080 1280x720 640x360}
TUNE_SIZES=${TUNE_SIZES:-640x360 1280x720 1920x1080}
FRAMES=${FRAMES:-20}
BATCH=${BATCH:-4}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu checks the script itself on a machine without a GPU
mkdir -p "$OUT/bench" "$OUT/tune"
rm -f "$OUT"/bench/* "$OUT"/tune/*
# `bench` times every kernel set at each size (`--kernels auto` on a GPU): the times come back.
export STYLESTREAM_KERNEL_CACHE="$OUT/kernels.json"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
: > "$OUT/torch.jsonl"
date -u +%F > "$OUT/date.txt"
have_torch=0
"$PY" -c 'import torch' 2>/dev/null && have_torch=1

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null \
    | head -n 1 > "$OUT/gpu.txt" || true
  cat "$OUT/gpu.txt"
  if [ "$have_torch" = 1 ]; then
    "$PY" -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())' \
      | tee "$OUT/torch_version.txt"
  else
    echo "PyTorch not installed: its columns say n/a" | tee "$OUT/torch_version.txt"
  fi
  "$BIN" adapters
} 2>&1 | tee "$OUT/machine.txt"

# Both implementations against the golden data first: a race between wrong answers is no race.
if [ "$have_torch" = 1 ]; then
  "$PY" "$HERE/torch_reference.py" check --models "$MODELS" --device "$DEVICE" --fp16 2>&1 | tee "$OUT/torch_check.txt"
  echo "${PIPESTATUS[0]}" > "$OUT/torch_ok.txt"
fi
: > "$OUT/stylestream_check.txt"
for cfg in "f32 auto" "f16 auto" "f16 coop"; do
  set -- $cfg
  png="$OUT/udnie_256x144_$1_$2.png"
  "$BIN" bench --image "$MODELS/golden/input_256x144.png" --save "$png" --model "$MODELS/udnie.safetensors" \
    --frames 1 --precision "$1" --kernels "$2" 2>>"$OUT/stderr.txt" | tail -2
  "$PY" - "$png" "$MODELS/golden/udnie_256x144.png" "$1 --kernels $2" <<'PY' 2>&1 | tee -a "$OUT/stylestream_check.txt"
import subprocess, sys
def rgb(path):  # 8-bit RGB bytes: pillow, else ffmpeg
    try:
        from PIL import Image
        return Image.open(path).convert("RGB").tobytes()
    except ImportError:
        cmd = ["ffmpeg", "-loglevel", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        return subprocess.run(cmd, check=True, capture_output=True).stdout
try:
    a, b = rgb(sys.argv[1]), rgb(sys.argv[2])
    assert len(a) == len(b) > 0, f"sizes {len(a)} and {len(b)}"
    d = [abs(x - y) for x, y in zip(a, b)]
    print(f"udnie 256x144 {sys.argv[3]} vs golden: max {max(d)} level(s), mean {sum(d) / len(d):.4f}, "
          f"{sum(v > 0 for v in d)} of {len(d)} values differ")
except Exception as e:
    print(f"udnie 256x144 {sys.argv[3]}: no comparison ({e})")
PY
done

# Interleaved by size: our three configurations, then PyTorch, at each size, on an otherwise
# idle GPU. Each bench's debug log (JSON lines) holds the per-step GPU times of its profiled frame.
for size in $SIZES; do
  for cfg in "f32 auto" "f16 auto" "f16 coop"; do
    set -- $cfg
    base="$OUT/bench/${size}_$1_$2"
    "$BIN" --log stylestream=debug --log-format json bench --model "$MODELS/udnie.safetensors" --size "$size" \
      --frames "$FRAMES" --precision "$1" --kernels "$2" --json 2>"$base.log" | tail -n 1 > "$base.json"
  done
  if [ "$have_torch" = 1 ]; then
    "$PY" "$HERE/torch_reference.py" time --models "$MODELS" --device "$DEVICE" --sizes "$size" \
      --frames "$FRAMES" --json 2>>"$OUT/stderr.txt" >> "$OUT/torch.jsonl"
  fi
done

# Tuning: the per-adapter choice (`--kernels timed`, candidates timed at the real size unless
# already decided in $STYLESTREAM_KERNEL_CACHE) at 360p, 720p and 1080p, with one and with
# $BATCH frames per submission.
for size in $TUNE_SIZES; do
  for prec in f32 f16; do
    "$BIN" bench --model "$MODELS/udnie.safetensors" --size "$size" --frames "$FRAMES" --precision "$prec" \
      --kernels timed --batch "$BATCH" --json 2>>"$OUT/stderr.txt" | tail -n 1 > "$OUT/tune/${size}_$prec.json"
  done
done

tables "$OUT"
