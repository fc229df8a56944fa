#!/usr/bin/env python3
"""ONNX Runtime (CPU) baseline for the stylestream TransformNet.

Builds the fast style-transfer network (Johnson et al. 2016, TensorFlow variant
"TransformNet" by L. Engstrom) as an ONNX graph straight from the shared
safetensors weights, using the exact semantics given in
``shared/models/README.md``:

* every convolution uses TensorFlow 'SAME' zero padding, i.e. explicit ONNX pads
  [top, left, bottom, right] computed for the fixed input size (3x3 stride 2 on an
  even size pads (0, 1): asymmetric);
* the two up-sampling stages are ConvTranspose (3x3, stride 2, pads 0) followed by
  a Slice that keeps the first 2H x 2W (drops the last row and column);
* InstanceNormalization with epsilon 1e-3 (biased variance), scale = ``*.scale``,
  B = ``*.shift``; no biases anywhere;
* output = tanh(x) * 150 + 127.5, input is RGB float in [0, 255] (no normalisation),
  layout NCHW [1, 3, H, W].

The script then

1. cross-checks the graph against the golden data for every style (udnie, wave,
   scream, wreck) at 64x48 and 256x144 (max |ort - golden| must be <= 0.01 on the
   pre-clamp output, else exit status 1);
2. benchmarks ONNX Runtime's CPUExecutionProvider (default thread settings) at
   ``--size`` for ``--frames`` frames after one warm-up run, reporting ms/frame,
   fps and effective GFLOP/s;
3. optionally (``--stylestream PATH``) runs ``PATH bench ... --json`` and prints a
   side-by-side table with the ratio stylestream_fps / onnxruntime_fps, and
   (``--stylestream-image-check``) compares ``PATH stylize`` output on the
   256x144 golden input with ORT's output quantised to 8 bits (must be <= 1 level).

With ``--json`` the last line of stdout is one JSON object with every measured
number.

Install the dependencies with ``pip install -r scripts/requirements-bench.txt``.

Examples::

    python3 scripts/bench_onnxruntime.py
    python3 scripts/bench_onnxruntime.py --size 1280x720 --frames 3 --json
    python3 scripts/bench_onnxruntime.py --stylestream target/release/stylestream \\
        --stylestream-image-check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from safetensors.numpy import load_file

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

STYLES = ("udnie", "wave", "scream", "wreck")
GOLDEN_SIZES = ((64, 48), (256, 144))  # (W, H)

# Instance-norm epsilon, added to the biased variance inside the square root.
IN_EPS = 1e-3

# Cost model used project-wide (shared/REFERENCE.md, "The network's cost"): the
# TensorFlow TransformNet does 126,144 multiply-adds per output pixel, each counted
# as 2 FLOP. Effective GFLOP per frame = 2 * 126144 * W * H / 1e9, i.e. about
# 58 / 233 / 523 GFLOP per frame at 640x360 / 1280x720 / 1920x1080.
MACS_PER_OUTPUT_PIXEL = 126_144
FLOP_PER_MAC = 2

# Pass/fail thresholds (shared/models/README.md, "Recommended test thresholds").
GOLDEN_MAX_ABS_TOL = 0.01  # pre-clamp output, float32 implementation
IMAGE_MAX_LEVEL_TOL = 1  # 8-bit output

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; widely supported by ORT

REPO_ROOT = Path(__file__).resolve().parent.parent


def gflop_per_frame(width: int, height: int) -> float:
    """Effective GFLOP for one frame of output size width x height."""
    return FLOP_PER_MAC * MACS_PER_OUTPUT_PIXEL * width * height / 1e9


def output_size(width: int, height: int) -> tuple[int, int]:
    """Output (W, H) of the network: 4*ceil(ceil(n/2)/2) per dimension."""

    def ceil_half(n: int) -> int:
        return -(-n // 2)

    def up(n: int) -> int:
        return 4 * ceil_half(ceil_half(n))

    return up(width), up(height)


# --------------------------------------------------------------------------------------
# Graph construction
# --------------------------------------------------------------------------------------


def same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for size n, kernel k, stride s."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class _GraphBuilder:
    """Tiny helper that accumulates ONNX nodes and initializers."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self.t = tensors
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._added: set[str] = set()

    def init(self, name: str, value: np.ndarray) -> str:
        if name not in self._added:
            self.inits.append(numpy_helper.from_array(value, name=name))
            self._added.add(name)
        return name

    def weight(self, name: str) -> str:
        return self.init(name, np.ascontiguousarray(self.t[name], dtype=np.float32))

    def conv(self, x: str, wname: str, stride: int, h: int, w: int, out: str):
        """Conv with explicit TF-SAME pads. Returns (output name, out h, out w)."""
        wt = self.t[wname]
        _, _, kh, kw = wt.shape  # OIHW
        pt, pb = same_pad(h, kh, stride)
        pl, pr = same_pad(w, kw, stride)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self.weight(wname)],
                [out],
                name=out,
                kernel_shape=[kh, kw],
                strides=[stride, stride],
                pads=[pt, pl, pb, pr],  # [top, left, bottom, right]
                dilations=[1, 1],
                group=1,
            )
        )
        oh = (h + pt + pb - kh) // stride + 1
        ow = (w + pl + pr - kw) // stride + 1
        return out, oh, ow

    def deconv(self, x: str, wname: str, h: int, w: int, out: str):
        """ConvTranspose 3x3 s2 pads 0 (-> 2H+1 x 2W+1), then keep the first 2H x 2W."""
        wt = self.t[wname]
        _, _, kh, kw = wt.shape  # IOHW
        full = out + "_full"
        self.nodes.append(
            helper.make_node(
                "ConvTranspose",
                [x, self.weight(wname)],
                [full],
                name=full,
                kernel_shape=[kh, kw],
                strides=[2, 2],
                pads=[0, 0, 0, 0],
                dilations=[1, 1],
                group=1,
            )
        )
        oh, ow = 2 * h, 2 * w
        starts = self.init(out + "_starts", np.array([0, 0], dtype=np.int64))
        ends = self.init(out + "_ends", np.array([oh, ow], dtype=np.int64))
        axes = self.init("slice_axes_hw", np.array([2, 3], dtype=np.int64))
        self.nodes.append(helper.make_node("Slice", [full, starts, ends, axes], [out], name=out))
        return out, oh, ow

    def inorm(self, x: str, prefix: str, out: str) -> str:
        self.nodes.append(
            helper.make_node(
                "InstanceNormalization",
                [x, self.weight(prefix + ".scale"), self.weight(prefix + ".shift")],
                [out],
                name=out,
                epsilon=IN_EPS,
            )
        )
        return out

    def op(self, op_type: str, inputs: list[str], out: str) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out))
        return out


def build_transform_net(tensors: dict[str, np.ndarray], width: int, height: int,
                        name: str = "transform_net") -> onnx.ModelProto:
    """Build the TransformNet ONNX model for a fixed NCHW input [1, 3, height, width]."""
    g = _GraphBuilder(tensors)
    h, w = height, width

    x, h, w = g.conv("input", "conv1.weight", 1, h, w, "conv1")
    x = g.op("Relu", [g.inorm(x, "in1", "in1")], "relu1")
    x, h, w = g.conv(x, "conv2.weight", 2, h, w, "conv2")
    x = g.op("Relu", [g.inorm(x, "in2", "in2")], "relu2")
    x, h, w = g.conv(x, "conv3.weight", 2, h, w, "conv3")
    x = g.op("Relu", [g.inorm(x, "in3", "in3")], "relu3")

    for k in range(1, 6):
        p = f"res{k}"
        y, _, _ = g.conv(x, f"{p}.conv1.weight", 1, h, w, f"{p}_conv1")
        y = g.op("Relu", [g.inorm(y, f"{p}.in1", f"{p}_in1")], f"{p}_relu1")
        y, _, _ = g.conv(y, f"{p}.conv2.weight", 1, h, w, f"{p}_conv2")
        y = g.inorm(y, f"{p}.in2", f"{p}_in2")
        x = g.op("Add", [x, y], f"{p}_out")  # no activation after the skip add

    x, h, w = g.deconv(x, "deconv1.weight", h, w, "deconv1")
    x = g.op("Relu", [g.inorm(x, "in4", "in4")], "relu4")
    x, h, w = g.deconv(x, "deconv2.weight", h, w, "deconv2")
    x = g.op("Relu", [g.inorm(x, "in5", "in5")], "relu5")
    x, h, w = g.conv(x, "conv4.weight", 1, h, w, "conv4")
    x = g.inorm(x, "in6", "in6")

    x = g.op("Tanh", [x], "tanh")
    x = g.op("Mul", [x, g.init("out_scale", np.array(150.0, dtype=np.float32))], "scaled")
    g.op("Add", [x, g.init("out_offset", np.array(127.5, dtype=np.float32))], "output")

    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, h, w])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        producer_name="stylestream-bench",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def default_models_dir() -> Path:
    env = os.environ.get("STYLESTREAM_MODELS_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "models"


def model_path(models_dir: Path, model: str) -> Path:
    """A bare style name resolves to MODELS_DIR/<name>.safetensors; a path is used as is."""
    if model.endswith(".safetensors") or os.sep in model:
        return Path(model)
    return models_dir / f"{model}.safetensors"


def parse_size(text: str) -> tuple[int, int]:
    try:
        w_str, h_str = text.lower().split("x")
        w, h = int(w_str), int(h_str)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like WxH, got {text!r}") from None
    if w < 4 or h < 4:
        raise argparse.ArgumentTypeError(f"size too small: {text!r}")
    return w, h


def make_session(model: onnx.ModelProto) -> ort.InferenceSession:
    # Default SessionOptions: all default threads, ORT_ENABLE_ALL graph optimisations.
    return ort.InferenceSession(model.SerializeToString(), sess_options=ort.SessionOptions(),
                                providers=["CPUExecutionProvider"])


def load_png_rgb(path: Path) -> np.ndarray:
    """8-bit PNG -> HWC uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def hwc_to_nchw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.astype(np.float32).transpose(2, 0, 1)[None])


def nchw_to_hwc(y: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(y[0].transpose(1, 2, 0))


def quantize(y: np.ndarray) -> np.ndarray:
    """Display quantisation used by the golden PNGs: floor(clamp(y, 0, 255) + 0.5)."""
    return np.floor(np.clip(y, 0.0, 255.0) + 0.5).astype(np.uint8)


def run_ort(model_file: Path, img_hwc_u8: np.ndarray) -> np.ndarray:
    """Build a graph for the image's size, run it once, return HWC float32 output."""
    h, w, _ = img_hwc_u8.shape
    model = build_transform_net(load_file(str(model_file)), w, h)
    sess = make_session(model)
    (y,) = sess.run(["output"], {"input": hwc_to_nchw(img_hwc_u8)})
    return nchw_to_hwc(y)


# --------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------


def golden_check(models_dir: Path) -> tuple[dict[str, float], bool]:
    """Run every style at every golden size; return ({'style_WxH': max_abs_diff}, ok)."""
    golden = models_dir / "golden"
    diffs: dict[str, float] = {}
    ok = True
    print(f"== golden cross-check (tolerance max|ort - golden| <= {GOLDEN_MAX_ABS_TOL}) ==")
    for w, h in GOLDEN_SIZES:
        img = load_png_rgb(golden / f"input_{w}x{h}.png")
        assert img.shape == (h, w, 3), img.shape
        for style in STYLES:
            key = f"{style}_{w}x{h}"
            ref = np.fromfile(golden / f"{key}.f32", dtype="<f4").reshape(h, w, 3)
            out = run_ort(models_dir / f"{style}.safetensors", img)
            if out.shape != ref.shape:
                print(f"  {style:<7} {w}x{h}: FAIL shape {out.shape} != golden {ref.shape}")
                diffs[key] = float("inf")
                ok = False
                continue
            d = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
            levels = int(np.max(np.abs(quantize(out).astype(np.int16) - quantize(ref).astype(np.int16))))
            good = d <= GOLDEN_MAX_ABS_TOL
            ok &= good
            diffs[key] = d
            print(f"  {style:<7} {w:>3}x{h:<3}  max_abs_diff={d:.6f}  max_8bit_level_diff={levels}"
                  f"  {'ok' if good else 'FAIL'}")
    return diffs, ok


def benchmark_ort(model_file: Path, width: int, height: int, frames: int) -> dict:
    """Time ORT CPU inference at width x height after one warm-up run."""
    model = build_transform_net(load_file(str(model_file)), width, height)
    sess = make_session(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 255.0, size=(1, 3, height, width)).astype(np.float32)

    t0 = time.perf_counter()
    (y,) = sess.run(["output"], {"input": x})  # warm-up
    warmup_ms = (time.perf_counter() - t0) * 1e3
    out_h, out_w = y.shape[2], y.shape[3]

    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        sess.run(["output"], {"input": x})
        times.append(time.perf_counter() - t0)
    ms = 1e3 * sum(times) / len(times)
    gflop = gflop_per_frame(out_w, out_h)
    return {
        "adapter": "onnxruntime CPUExecutionProvider",
        "onnxruntime_version": ort.__version__,
        "width": width,
        "height": height,
        "frames": frames,
        "warmup_ms": warmup_ms,
        "ms_per_frame": ms,
        "ms_min": 1e3 * min(times),
        "fps": 1e3 / ms,
        "gflop_per_frame": gflop,
        "gflops": gflop / (ms / 1e3),
    }


def run_stylestream_bench(binary: str, model_arg: str, width: int, height: int, frames: int,
                          models_dir: Path) -> dict:
    """Run `binary bench ... --json`, parse the last stdout line as JSON."""
    cmd = [binary, "bench", "--model", model_arg, "--size", f"{width}x{height}",
           "--frames", str(frames), "--json"]
    print(f"$ {' '.join(cmd)}")
    env = dict(os.environ, STYLESTREAM_MODELS_DIR=str(models_dir))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"stylestream bench exited {proc.returncode}:\n{proc.stderr.strip()}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError("stylestream bench printed nothing on stdout")
    try:
        res = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise RuntimeError(f"last stdout line of stylestream bench is not JSON: {lines[-1]!r}") from e
    missing = [k for k in ("adapter", "width", "height", "frames", "ms_per_frame", "fps", "gflops")
               if k not in res]
    if missing:
        raise RuntimeError(f"stylestream bench JSON lacks keys {missing}: {res}")
    return res


def stylestream_image_check(binary: str, model_arg: str, model_file: Path,
                            models_dir: Path) -> dict:
    """Compare `binary stylize` on the 256x144 golden input with ORT's 8-bit output."""
    inp = models_dir / "golden" / "input_256x144.png"
    with tempfile.TemporaryDirectory(prefix="stylestream-bench-") as tmp:
        out_png = Path(tmp) / "stylized.png"
        cmd = [binary, "stylize", str(inp), "-o", str(out_png), "--model", model_arg]
        print(f"$ {' '.join(cmd)}")
        env = dict(os.environ, STYLESTREAM_MODELS_DIR=str(models_dir))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"stylestream stylize exited {proc.returncode}:\n{proc.stderr.strip()}")
        if not out_png.exists():
            raise RuntimeError(f"stylestream stylize wrote no file at {out_png}")
        theirs = load_png_rgb(out_png)
    ours = quantize(run_ort(model_file, load_png_rgb(inp)))
    if theirs.shape != ours.shape:
        raise RuntimeError(f"stylestream output shape {theirs.shape} != expected {ours.shape}")
    diff = np.abs(theirs.astype(np.int16) - ours.astype(np.int16))
    max_level = int(diff.max())
    n_diff = int(np.count_nonzero(diff))
    return {
        "max_level_diff": max_level,
        "values_differing": n_diff,
        "fraction_differing": n_diff / diff.size,
        "ok": max_level <= IMAGE_MAX_LEVEL_TOL,
    }


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(
            "Build the TransformNet style-transfer network as an ONNX graph from the shared "
            "safetensors weights, check it against the golden outputs (all 4 styles at 64x48 "
            "and 256x144, max abs diff <= 0.01), and benchmark ONNX Runtime's CPU provider. "
            "Optionally compare with the stylestream binary. Exit status 1 if any check fails."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--models-dir", type=Path, default=default_models_dir(),
                    help="folder with <style>.safetensors and golden/ "
                         "(env STYLESTREAM_MODELS_DIR overrides the default ../shared/models "
                         "relative to the repo root)")
    ap.add_argument("--model", default="udnie",
                    help="model for the benchmark: a style name (udnie, wave, scream, wreck) "
                         "or a path to a .safetensors file")
    ap.add_argument("--size", type=parse_size, default="640x360", metavar="WxH",
                    help="benchmark frame size (the graph is built for this fixed size)")
    ap.add_argument("--frames", type=int, default=5,
                    help="number of timed frames (after 1 untimed warm-up run)")
    ap.add_argument("--stylestream", metavar="PATH",
                    help="path to the stylestream binary; runs "
                         "'PATH bench --model MODEL --size WxH --frames N --json' and compares")
    ap.add_argument("--stylestream-model", metavar="ARG",
                    help="value passed to the binary's --model (default: the same as --model; "
                         "the binary also gets STYLESTREAM_MODELS_DIR=<models-dir> in its env)")
    ap.add_argument("--stylestream-image-check", action="store_true",
                    help="with --stylestream: run 'PATH stylize golden/input_256x144.png -o TMP.png "
                         "--model MODEL' and compare with ORT's 8-bit output (max diff <= 1 level)")
    ap.add_argument("--save-onnx", type=Path, metavar="FILE",
                    help="also write the benchmark-size ONNX model to FILE")
    ap.add_argument("--json", action="store_true",
                    help="print all results as one JSON object on the last stdout line")
    args = ap.parse_args(argv)

    if args.frames < 1:
        ap.error("--frames must be >= 1")
    if args.stylestream_image_check and not args.stylestream:
        ap.error("--stylestream-image-check needs --stylestream PATH")

    models_dir: Path = args.models_dir.resolve()
    model_file = model_path(models_dir, args.model)
    if not model_file.is_file():
        ap.error(f"model file not found: {model_file}")
    width, height = args.size
    out_w, out_h = output_size(width, height)

    print(f"onnxruntime {ort.__version__} (onnx {onnx.__version__}, numpy {np.__version__}), "
          f"python {platform.python_version()}, {os.cpu_count()} logical CPUs")
    print(f"models dir: {models_dir}")

    result: dict = {"onnxruntime_version": ort.__version__, "onnx_version": onnx.__version__,
                    "models_dir": str(models_dir)}
    ok = True

    # 1. Golden cross-check.
    diffs, golden_ok = golden_check(models_dir)
    result["max_abs_diff"] = diffs
    result["golden_ok"] = golden_ok
    ok &= golden_ok
    if not golden_ok:
        print("golden cross-check FAILED; skipping the benchmark")
        result["ok"] = False
        if args.json:
            print(json.dumps(result))
        return 1

    # 2. ORT benchmark.
    if (out_w, out_h) != (width, height):
        print(f"note: {width}x{height} is not a multiple of 4; output is {out_w}x{out_h}")
    if args.save_onnx:
        onnx.save(build_transform_net(load_file(str(model_file)), width, height), str(args.save_onnx))
        print(f"wrote {args.save_onnx}")
    print(f"== onnxruntime CPUExecutionProvider benchmark: {model_file.stem} {width}x{height}, "
          f"{args.frames} frames after 1 warm-up ==")
    bench = benchmark_ort(model_file, width, height, args.frames)
    print(f"  warm-up {bench['warmup_ms']:.1f} ms; {bench['ms_per_frame']:.1f} ms/frame "
          f"(min {bench['ms_min']:.1f}), {bench['fps']:.3f} fps, "
          f"{bench['gflop_per_frame']:.1f} GFLOP/frame -> {bench['gflops']:.1f} GFLOP/s effective")
    result["onnxruntime"] = bench
    result["model"] = model_file.stem

    # 3. Optional comparison with the stylestream binary.
    if args.stylestream:
        model_arg = args.stylestream_model or args.model
        try:
            ss = run_stylestream_bench(args.stylestream, model_arg, width, height, args.frames,
                                       models_dir)
        except (OSError, RuntimeError) as e:
            print(f"stylestream bench FAILED: {e}")
            result["stylestream_error"] = str(e)
            ok = False
        else:
            ratio = float(ss["fps"]) / bench["fps"]
            result["stylestream"] = ss
            result["ratio_stylestream_over_onnxruntime_fps"] = ratio
            if (int(ss["width"]), int(ss["height"])) != (width, height):
                print(f"warning: stylestream benchmarked {ss['width']}x{ss['height']}, "
                      f"not {width}x{height}")
            rows = [("onnxruntime (CPU)", bench["ms_per_frame"], bench["fps"], bench["gflops"]),
                    (f"stylestream ({ss['adapter']})", float(ss["ms_per_frame"]), float(ss["fps"]),
                     float(ss["gflops"]))]
            namew = max(len(r[0]) for r in rows)
            print(f"== comparison at {width}x{height}, model {model_file.stem} ==")
            print(f"  {'implementation':<{namew}}  {'ms/frame':>10}  {'fps':>9}  {'GFLOP/s':>9}")
            for name, ms, fps, gf in rows:
                print(f"  {name:<{namew}}  {ms:>10.2f}  {fps:>9.3f}  {gf:>9.1f}")
            print(f"  stylestream_fps / onnxruntime_fps = {ratio:.2f}")

        if args.stylestream_image_check:
            try:
                chk = stylestream_image_check(args.stylestream, model_arg, model_file, models_dir)
            except (OSError, RuntimeError) as e:
                print(f"stylestream image check FAILED: {e}")
                result["stylestream_image_check_error"] = str(e)
                ok = False
            else:
                result["stylestream_image_check"] = chk
                ok &= chk["ok"]
                print(f"== stylestream stylize vs onnxruntime, 256x144, 8-bit ==\n"
                      f"  max_level_diff={chk['max_level_diff']} "
                      f"({chk['values_differing']} values differ, "
                      f"{100 * chk['fraction_differing']:.3f}%)  "
                      f"{'ok' if chk['ok'] else 'FAIL'} (tolerance {IMAGE_MAX_LEVEL_TOL})")

    result["ok"] = ok
    if args.json:
        print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
