#!/usr/bin/env python3
"""PyTorch implementation of the stylestream TransformNet, checked against the golden data.

Written from ``shared/models/README.md`` (not from the Rust code) with stock PyTorch modules:
``nn.Conv2d`` (TensorFlow 'SAME' zero padding, asymmetric (0, 1) for a 3x3 stride-2 conv on
an even size, applied with ``F.pad``), ``nn.ConvTranspose2d(I, O, 3, stride=2, padding=0)``
followed by keeping the first 2H x 2W (the last row and column dropped), ``F.instance_norm``
(biased variance, eps 1e-3, weight = ``*.scale``, bias = ``*.shift``), no biases, and
``tanh(x) * 150 + 127.5`` on RGB input in [0, 255]. Weights are the same safetensors files
stylestream loads: OIHW for convolutions, IOHW for transposed ones (PyTorch's own layouts).

Modes:

``check``  runs every style at the golden sizes (64x48, 256x144) and compares the pre-clamp
           output with ``golden/<style>_<size>.f32`` and the 8-bit output with the golden
           PNG. fp32 (TF32 switched off): max |diff| <= 0.01 and <= 1 level 8-bit in <= 0.1 %
           of values (the README's thresholds). With ``--fp16`` also fp16 channels-last, held
           to issue 11's targets for half precision: <= 3 levels max and <= 0.5 level mean
           8-bit, plus max |diff| <= 2 pre-clamp against gross errors (fp16 activations, not
           only fp16 operands, measured 0.30-0.78 on CPU: above the README's 0.5 for operand
           rounding alone). Exit status 1 on any mismatch.
``time``   times the network per frame at ``--sizes``, batch 1, after warm-up, as the median
           of ``--frames`` frames, two ways: end to end (host 8-bit HxWx3 frame in, host 8-bit
           frame out, synchronous, like ``stylestream bench``'s ms_per_frame) and kernel only
           (input already on the device as float NCHW, CUDA events around the forward pass;
           wall clock on CPU). Variants (``--variants``):
             fp32        PyTorch defaults (convolutions in TF32 on Ampere and later)
             fp32-bench  the same with torch.backends.cudnn.benchmark = True
             fp16-cl     fp16 weights and activations, channels-last, cudnn.benchmark = True
           With ``--json`` prints one JSON object per (size, variant) line.

Examples::

    python3 scripts/torch_reference.py check --models ../shared/models
    python3 scripts/torch_reference.py check --models ../shared/models --device cuda --fp16
    python3 scripts/torch_reference.py time --device cuda --sizes 1920x1080,1280x720,640x360 --json

Dependencies: scripts/requirements-torch.txt (torch, numpy, safetensors, pillow).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import load_file

STYLES = ("udnie", "wave", "scream", "wreck")
GOLDEN_SIZES = ((64, 48), (256, 144))  # (W, H)
EPS = 1e-3
# shared/REFERENCE.md: 126,144 multiply-adds per output pixel, 2 FLOP each.
MACS_PER_OUTPUT_PIXEL = 126_144


def same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one dimension of size n."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class SameConv(nn.Module):
    """nn.Conv2d without bias, with TensorFlow 'SAME' zero padding for the actual input size."""

    def __init__(self, cin: int, cout: int, k: int, stride: int):
        super().__init__()
        self.k, self.stride = k, stride
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pt, pb = same_pad(h, self.k, self.stride)
        pl, pr = same_pad(w, self.k, self.stride)
        if self.stride == 1 and pt == pb and pl == pr:
            # Symmetric: let the convolution pad (one kernel, no extra copy).
            return F.conv2d(x, self.conv.weight, stride=1, padding=(pt, pl))
        return self.conv(F.pad(x, (pl, pr, pt, pb)))


class UpConv(nn.Module):
    """TF conv2d_transpose 3x3 stride 2 'SAME': ConvTranspose2d(padding=0), keep 2H x 2W."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.conv(x)[..., : 2 * h, : 2 * w]


class Norm(nn.Module):
    """Instance norm with the learned per-channel scale and shift (biased variance)."""

    def __init__(self, c: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(c))
        self.shift = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.scale, bias=self.shift, eps=EPS)


class TransformNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = SameConv(3, 32, 9, 1), Norm(32)
        self.conv2, self.in2 = SameConv(32, 64, 3, 2), Norm(64)
        self.conv3, self.in3 = SameConv(64, 128, 3, 2), Norm(128)
        self.res = nn.ModuleList(
            nn.ModuleDict(
                {"conv1": SameConv(128, 128, 3, 1), "in1": Norm(128), "conv2": SameConv(128, 128, 3, 1), "in2": Norm(128)}
            )
            for _ in range(5)
        )
        self.deconv1, self.in4 = UpConv(128, 64), Norm(64)
        self.deconv2, self.in5 = UpConv(64, 32), Norm(32)
        self.conv4, self.in6 = SameConv(32, 3, 9, 1), Norm(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: NCHW RGB in [0, 255]; returns the pre-clamp output, NCHW."""
        x = F.relu(self.in1(self.conv1(x)))
        x = F.relu(self.in2(self.conv2(x)))
        x = F.relu(self.in3(self.conv3(x)))
        for r in self.res:
            h = F.relu(r["in1"](r["conv1"](x)))
            x = x + r["in2"](r["conv2"](h))
        x = F.relu(self.in4(self.deconv1(x)))
        x = F.relu(self.in5(self.deconv2(x)))
        x = self.in6(self.conv4(x))
        return torch.tanh(x) * 150.0 + 127.5

    def load(self, path: Path) -> "TransformNet":
        t = load_file(str(path))
        own = {
            "conv1.weight": self.conv1.conv.weight, "in1.scale": self.in1.scale, "in1.shift": self.in1.shift,
            "conv2.weight": self.conv2.conv.weight, "in2.scale": self.in2.scale, "in2.shift": self.in2.shift,
            "conv3.weight": self.conv3.conv.weight, "in3.scale": self.in3.scale, "in3.shift": self.in3.shift,
            "deconv1.weight": self.deconv1.conv.weight, "in4.scale": self.in4.scale, "in4.shift": self.in4.shift,
            "deconv2.weight": self.deconv2.conv.weight, "in5.scale": self.in5.scale, "in5.shift": self.in5.shift,
            "conv4.weight": self.conv4.conv.weight, "in6.scale": self.in6.scale, "in6.shift": self.in6.shift,
        }
        for k, r in enumerate(self.res, start=1):
            for conv, norm in (("conv1", "in1"), ("conv2", "in2")):
                own[f"res{k}.{conv}.weight"] = r[conv].conv.weight
                own[f"res{k}.{norm}.scale"] = r[norm].scale
                own[f"res{k}.{norm}.shift"] = r[norm].shift
        missing = sorted(set(own) - set(t))
        extra = sorted(set(t) - set(own))
        if missing or extra:
            raise SystemExit(f"{path}: tensors missing {missing}, unexpected {extra}")
        with torch.no_grad():
            for name, p in own.items():
                if tuple(p.shape) != t[name].shape:
                    raise SystemExit(f"{path}: {name} has shape {t[name].shape}, expected {tuple(p.shape)}")
                p.copy_(torch.from_numpy(t[name].astype(np.float32)))
        return self


def set_tf32(enabled: bool) -> None:
    """Allows or forbids TF32 in convolutions and matmuls (old and new PyTorch spellings)."""
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_u8(y: torch.Tensor) -> torch.Tensor:
    """Pre-clamp NCHW output -> HWC uint8, floor(clamp(y, 0, 255) + 0.5) (the golden rounding)."""
    return torch.floor(y[0].float().clamp(0, 255) + 0.5).to(torch.uint8).permute(1, 2, 0)


def prepare(net: TransformNet, device: torch.device, variant: str) -> tuple[TransformNet, torch.dtype, torch.memory_format]:
    net = net.to(device).eval()
    if variant == "fp16-cl":
        net = net.half().to(memory_format=torch.channels_last)
        return net, torch.float16, torch.channels_last
    return net, torch.float32, torch.contiguous_format


def run_frame(net, rgb_u8: np.ndarray, device, dtype, fmt) -> np.ndarray:
    """Host uint8 HxWx3 in, host uint8 HxWx3 out: the whole per-frame path."""
    x = torch.from_numpy(rgb_u8).to(device, non_blocking=False)
    x = x.permute(2, 0, 1).unsqueeze(0).to(dtype).contiguous(memory_format=fmt)
    with torch.inference_mode():
        y = net(x)
    return to_u8(y).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------


def check(args) -> int:
    device = torch.device(args.device)
    golden = args.models / "golden"
    variants = ["fp32"] + (["fp16-cl"] if args.fp16 else [])
    set_tf32(False)  # the fp32 check is real fp32
    failures = 0
    for style in STYLES:
        for variant in variants:
            net, dtype, fmt = prepare(TransformNet().load(args.models / f"{style}.safetensors"), device, variant)
            for w, h in GOLDEN_SIZES:
                rgb = np.asarray(Image.open(golden / f"input_{w}x{h}.png").convert("RGB"))
                want = np.fromfile(golden / f"{style}_{w}x{h}.f32", dtype="<f4").reshape(h, w, 3)
                want8 = np.asarray(Image.open(golden / f"{style}_{w}x{h}.png").convert("RGB")).astype(np.int16)
                x = torch.from_numpy(rgb.copy()).to(device).permute(2, 0, 1).unsqueeze(0).to(dtype).contiguous(memory_format=fmt)
                with torch.inference_mode():
                    y = net(x)
                got = y[0].float().permute(1, 2, 0).cpu().numpy()
                got8 = to_u8(y).cpu().numpy().astype(np.int16)
                diff = float(np.abs(got - want).max())
                lv = np.abs(got8 - want8)
                max_lv, mean_lv, n_diff = int(lv.max()), float(lv.mean()), int((lv > 0).sum())
                if variant == "fp32":
                    ok = diff <= 0.01 and max_lv <= 1 and n_diff * 1000 <= lv.size
                    rule = "max|d|<=0.01, <=1 level in <=0.1% of values"
                else:
                    ok = diff <= 2.0 and max_lv <= 3 and mean_lv <= 0.5
                    rule = "<=3 levels max, <=0.5 level mean, max|d|<=2"
                failures += not ok
                print(
                    f"{'ok  ' if ok else 'FAIL'} {style:<6} {w}x{h:<4} {variant:<8} max|d| {diff:.5f}  8-bit: max {max_lv} "
                    f"level(s), {n_diff} of {lv.size} values differ, mean {mean_lv:.4f}  ({rule})"
                )
    print(f"{len(STYLES) * len(GOLDEN_SIZES) * len(variants) - failures} passed, {failures} failed")
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------------------------


def synthetic_frame(w: int, h: int) -> np.ndarray:
    """The same test card as `stylestream bench` (src/frame.rs RgbFrame::test_card)."""
    x = np.arange(w, dtype=np.int64)[None, :]
    y = np.arange(h, dtype=np.int64)[:, None]
    checker = np.where(((x // 16) + (y // 16)) % 2 == 0, 40, 0)
    r = np.minimum(x * 255 // max(w, 1) + checker, 255)
    g = np.broadcast_to(y * 255 // max(h, 1), (h, w))
    b = ((x + y) * 7) % 256
    return np.stack([np.broadcast_to(r, (h, w)), g, np.broadcast_to(b, (h, w))], axis=-1).astype(np.uint8)


def median_ms(fn, frames: int) -> float:
    times = []
    for _ in range(frames):
        times.append(fn())
    return statistics.median(times)


def time_variant(model_path: Path, device: torch.device, variant: str, w: int, h: int, frames: int, warmup: int) -> dict:
    set_tf32_default()
    torch.backends.cudnn.benchmark = variant in ("fp32-bench", "fp16-cl")
    net, dtype, fmt = prepare(TransformNet().load(model_path), device, variant)
    frame = synthetic_frame(w, h)

    def e2e() -> float:
        t = time.perf_counter()
        run_frame(net, frame, device, dtype, fmt)  # .cpu() waits for the GPU
        return (time.perf_counter() - t) * 1e3

    x_dev = torch.from_numpy(frame).to(device).permute(2, 0, 1).unsqueeze(0).to(dtype).contiguous(memory_format=fmt)

    def kernels() -> float:
        with torch.inference_mode():
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                net(x_dev)
                end.record()
                end.synchronize()
                return start.elapsed_time(end)
            t = time.perf_counter()
            net(x_dev)
            return (time.perf_counter() - t) * 1e3

    t0 = time.perf_counter()
    for _ in range(warmup):  # cudnn.benchmark autotunes here
        e2e()
    sync(device)
    warmup_ms = (time.perf_counter() - t0) * 1e3
    ms = median_ms(e2e, frames)
    kms = median_ms(kernels, frames)
    return {
        "engine": "pytorch",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "variant": variant,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if variant != "fp16-cl" else None,
        "width": w,
        "height": h,
        "frames": frames,
        "ms_per_frame": ms,
        "fps": 1e3 / ms,
        "kernel_ms": kms,
        "gflops": 2 * MACS_PER_OUTPUT_PIXEL * w * h / (ms * 1e6),
        "warmup_ms": warmup_ms,
    }


_TF32_DEFAULT = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)


def set_tf32_default() -> None:
    """PyTorch's own defaults, as found at import (convolutions TF32, matmuls not)."""
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = _TF32_DEFAULT


def timing(args) -> int:
    device = torch.device(args.device)
    model = args.models / f"{args.style}.safetensors"
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        for variant in args.variants.split(","):
            r = time_variant(model, device, variant, w, h, args.frames, args.warmup)
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print(
                    f"{w}x{h} {variant:<10} {r['ms_per_frame']:8.2f} ms/frame end to end ({r['fps']:.1f} fps), "
                    f"{r['kernel_ms']:8.2f} ms kernels, {r['gflops']:.0f} GFLOP/s effective",
                    flush=True,
                )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    default_models = next((p for p in (Path("shared/models"), Path("../shared/models")) if p.is_dir()), Path("shared/models"))
    for name in ("check", "time"):
        p = sub.add_parser(name)
        p.add_argument("--models", type=Path, default=default_models, help="folder with <style>.safetensors and golden/")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    c = sub.choices["check"]
    c.add_argument("--fp16", action="store_true", help="also check fp16 channels-last")
    t = sub.choices["time"]
    t.add_argument("--style", default="udnie")
    t.add_argument("--sizes", default="640x360")
    t.add_argument("--variants", default="fp32,fp32-bench,fp16-cl")
    t.add_argument("--frames", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    return check(args) if args.mode == "check" else timing(args)


if __name__ == "__main__":
    sys.exit(main())
