#!/usr/bin/env python3
"""Small ONNX style networks for stylestream's importer tests, and ONNX Runtime as the oracle.

    python3 tests/onnx/models.py build DIR        # writes the models below into DIR
    python3 tests/onnx/models.py run MODEL.onnx IN.rgb W H OUT.f32
        # IN.rgb: W*H*3 bytes (RGB8, row-major); OUT.f32: ORT's output as HWC little-endian f32

Every model has random weights (fixed seeds) at reduced width (8/16/32 channels, 2 residual
blocks) in one of the two TransformNet variants (shared/models/README.md):

* torch_zoo.onnx / torch_zoo_224.onnx: the PyTorch / ONNX-zoo variant as the zoo ships it
  (opset 9: Pad reflect with a `pads` attribute, Conv with bias, InstanceNormalization eps 1e-5,
  Relu, Upsample with a constant scales input, residual Add, no output clamp); the first with a
  symbolic H x W input, the second fixed at 224 x 224 like the zoo files.
* torch_export.onnx / torch_export_224.onnx: the same variant written the way torch.onnx.export
  writes it at opset 13: Constant nodes, Pad with a pads input, Resize whose `sizes` are
  computed in the graph (Shape -> Gather -> Cast -> Mul -> Floor -> Cast -> Unsqueeze ->
  Concat, with a Div and a Slice), input divided by 255 (first conv scaled to match), a folded
  BatchNormalization after the last conv, and Clip(0, 255) at the end.
* torch_plain.safetensors + torch_plain.toml: torch_zoo's weights and description in the plain
  format (PyTorch state-dict names), for the "same weights, same output" test.
* tf_same.onnx: the TensorFlow variant (opset 13): Conv auto_pad SAME_UPPER, no biases,
  ConvTranspose pads [0, 0, 1, 1], InstanceNormalization eps 1e-3, Tanh * 150 + 127.5; symbolic size.
* tf_fixed_64x48.onnx: the same weights with explicit TF-SAME pads computed for a fixed 64x48
  input and ConvTranspose pads 0 followed by a Slice to 2H x 2W.
* tf_sigmoid.onnx: tf_same with Sigmoid * 255 as output transform.
* unsupported.onnx: torch_zoo plus a LeakyRelu and a Softplus node (must be refused).
* cycle.onnx, missing_initializer.onnx, huge_dims.onnx: broken copies of torch_zoo.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTHS = (8, 16, 32)
RES_BLOCKS = 2


class G:
    """Collects nodes and initializers."""

    def __init__(self, seed: int):
        self.nodes, self.inits, self.n = [], [], 0
        self.rng = np.random.default_rng(seed)
        self.weights: dict[str, np.ndarray] = {}  # plain-format tensors, state-dict names

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, name: str, arr) -> str:
        arr = np.asarray(arr)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs, name: str | None = None, n_out: int = 1, **attrs) -> str:
        name = name or self.name(op)
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def const(self, arr) -> str:
        """A Constant node, as torch.onnx.export writes scalars and small vectors."""
        name = self.name("Constant")
        out = f"{name}_out"
        self.nodes.append(helper.make_node("Constant", [], [out], name=name, value=numpy_helper.from_array(np.asarray(arr))))
        return out

    def rand(self, *shape, scale=1.0):
        return (self.rng.uniform(-1, 1, size=shape) * scale).astype(np.float32)

    def conv_w(self, o, i, k):
        return self.rand(o, i, k, k, scale=np.sqrt(3.0 / (i * k * k)))

    def norm(self, c):
        return (1.0 + self.rand(c, scale=0.5)).astype(np.float32), self.rand(c, scale=0.5)


def torch_variant(style: str, seed: int = 1, fixed: int | None = None) -> tuple[onnx.ModelProto, dict, list]:
    """style 'zoo' (opset 9) or 'export' (opset 13, torch.onnx.export shape arithmetic)."""
    g = G(seed)
    opset = 9 if style == "zoo" else 13
    layers = []  # (name, op, in, out, k, stride, upsample, norm?, relu?, residual)

    def pad(x, p):
        if opset < 11:
            return g.node("Pad", [x], mode="reflect", pads=[0, 0, p, p, 0, 0, p, p])
        return g.node("Pad", [x, g.const(np.array([0, 0, p, p, 0, 0, p, p], dtype=np.int64))], mode="reflect")

    def upsample(x):
        if style == "zoo":
            return g.node("Upsample", [x, g.init(g.name("scales"), np.array([1, 1, 2, 2], dtype=np.float32))], mode="nearest")
        shape = g.node("Shape", [x])
        factor = g.node("Div", [g.const(np.array(4.0, dtype=np.float32)), g.const(np.array(2.0, dtype=np.float32))])
        dims = []
        for axis in (2, 3):
            d = g.node("Gather", [shape, g.const(np.array(axis, dtype=np.int64))], axis=0)
            d = g.node("Cast", [d], to=TensorProto.FLOAT)
            d = g.node("Mul", [d, factor])
            d = g.node("Floor", [d])
            d = g.node("Cast", [d], to=TensorProto.INT64)
            dims.append(g.node("Unsqueeze", [d, g.const(np.array([0], dtype=np.int64))]))
        nc = g.node("Slice", [shape, g.const(np.array([0], dtype=np.int64)), g.const(np.array([2], dtype=np.int64)), g.const(np.array([0], dtype=np.int64))])
        sizes = g.node("Concat", [nc] + dims, axis=0)
        return g.node("Resize", [x, "", "", sizes], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def conv(x, name, cin, cout, k, stride, up=False, norm=True, relu=True, input_scale=1.0):
        if up:
            x = upsample(x)
        x = pad(x, k // 2)
        w = g.conv_w(cout, cin, k)
        b = g.rand(cout, scale=0.5)
        if not norm:  # the last layer: spread the output over the 0..255 range, like a trained net
            w, b = w * 60.0, (b * 20.0 + 127.5).astype(np.float32)
        g.weights[f"{name}.conv2d.weight"] = w
        g.weights[f"{name}.conv2d.bias"] = b
        x = g.node("Conv", [x, g.init(f"{name}.conv2d.weight", w * input_scale), g.init(f"{name}.conv2d.bias", b)],
                   name=f"{name}/Conv", kernel_shape=[k, k], strides=[stride, stride], pads=[0, 0, 0, 0])
        if norm:
            s, sh = g.norm(cout)
            iname = name.replace("conv", "in") if "." not in name else name.replace(".conv", ".in")
            g.weights[f"{iname}.weight"], g.weights[f"{iname}.bias"] = s, sh
            x = g.node("InstanceNormalization", [x, g.init(f"{iname}.weight", s), g.init(f"{iname}.bias", sh)], epsilon=1e-5)
        if relu:
            x = g.node("Relu", [x])
        layers.append(dict(name=name, cin=cin, cout=cout, k=k, stride=stride, up=up, norm=norm, relu=relu))
        return x

    a, b, c = WIDTHS
    x = "input1"
    scale = 1.0
    if style == "export":
        x = g.node("Div", [x, g.const(np.array(255.0, dtype=np.float32))])
        scale = 255.0
    x = conv(x, "conv1", 3, a, 9, 1, input_scale=scale)
    x = conv(x, "conv2", a, b, 3, 2)
    x = conv(x, "conv3", b, c, 3, 2)
    for r in range(1, RES_BLOCKS + 1):
        skip = x
        h = conv(x, f"res{r}.conv1", c, c, 3, 1)
        h = conv(h, f"res{r}.conv2", c, c, 3, 1, relu=False)
        layers[-1]["residual"] = layers[-3]["name"]
        x = g.node("Add", [h, skip])
    x = conv(x, "deconv1", c, b, 3, 1, up=True)
    x = conv(x, "deconv2", b, a, 3, 1, up=True)
    x = conv(x, "deconv3", a, 3, 9, 1, norm=False, relu=False)
    if style == "export":
        mean, var = g.rand(3, scale=0.2), (1.0 + g.rand(3, scale=0.5)).astype(np.float32)
        s, sh = g.norm(3)
        bn = [g.init("bn.scale", s), g.init("bn.bias", sh), g.init("bn.mean", mean), g.init("bn.var", var)]
        x = g.node("BatchNormalization", [x] + bn, epsilon=1e-5)
        x = g.node("Clip", [x, g.const(np.array(0.0, dtype=np.float32)), g.const(np.array(255.0, dtype=np.float32))])
    hw = [fixed, fixed] if fixed else ["height", "width"]
    graph = helper.make_graph(
        g.nodes, f"transformnet_torch_{style}",
        [helper.make_tensor_value_info("input1", TensorProto.FLOAT, [1, 3] + hw)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3] + hw)],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="stylestream-tests")
    model.ir_version = 4 if opset < 11 else 7
    onnx.checker.check_model(model)
    return model, g.weights, layers


def same_pad(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def tf_variant(seed: int = 2, fixed: tuple[int, int] | None = None, output: str = "tanh") -> onnx.ModelProto:
    """The TensorFlow variant; `fixed` = (H, W) writes explicit pads for that size."""
    g = G(seed)
    a, b, c = WIDTHS
    size = list(fixed) if fixed else None

    def conv(x, name, cin, cout, k, stride, relu=True):
        w = g.conv_w(cout, cin, k)
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride])
        if size:
            (t, bo), (l, r) = same_pad(size[0], k, stride), same_pad(size[1], k, stride)
            attrs["pads"] = [t, l, bo, r]
            size[0], size[1] = -(-size[0] // stride), -(-size[1] // stride)
        else:
            attrs["auto_pad"] = "SAME_UPPER"
        x = g.node("Conv", [x, g.init(f"{name}.weight", w)], name=name, **attrs)
        s, sh = g.norm(cout)
        x = g.node("InstanceNormalization", [x, g.init(f"{name}.scale", s), g.init(f"{name}.shift", sh)], epsilon=1e-3)
        return g.node("Relu", [x]) if relu else x

    def deconv(x, name, cin, cout):
        w = g.rand(cin, cout, 3, 3, scale=np.sqrt(3.0 / (cin * 9)))
        if size:
            x = g.node("ConvTranspose", [x, g.init(f"{name}.weight", w)], name=name, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 0, 0])
            size[0], size[1] = 2 * size[0], 2 * size[1]
            x = g.node("Slice", [x, g.const(np.array([0, 0], dtype=np.int64)), g.const(np.array(size, dtype=np.int64)), g.const(np.array([2, 3], dtype=np.int64))])
        else:
            x = g.node("ConvTranspose", [x, g.init(f"{name}.weight", w)], name=name, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
        s, sh = g.norm(cout)
        x = g.node("InstanceNormalization", [x, g.init(f"{name}.scale", s), g.init(f"{name}.shift", sh)], epsilon=1e-3)
        return g.node("Relu", [x])

    x = conv("input", "conv1", 3, a, 9, 1)
    x = conv(x, "conv2", a, b, 3, 2)
    x = conv(x, "conv3", b, c, 3, 2)
    for r in range(1, RES_BLOCKS + 1):
        h = conv(x, f"res{r}.conv1", c, c, 3, 1)
        h = conv(h, f"res{r}.conv2", c, c, 3, 1, relu=False)
        x = g.node("Add", [x, h])
    x = deconv(x, "deconv1", c, b)
    x = deconv(x, "deconv2", b, a)
    x = conv(x, "conv4", a, 3, 9, 1, relu=False)
    if output == "tanh":
        x = g.node("Add", [g.node("Mul", [g.node("Tanh", [x]), g.const(np.array(150.0, dtype=np.float32))]), g.const(np.array(127.5, dtype=np.float32))])
    else:
        x = g.node("Mul", [g.node("Sigmoid", [x]), g.const(np.array(255.0, dtype=np.float32))])
    hw = list(fixed) if fixed else ["h", "w"]
    graph = helper.make_graph(
        g.nodes, "transformnet_tf",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3] + hw)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3] + hw)],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="stylestream-tests")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_toml(path: Path, layers: list) -> None:
    out = ['name = "transformnet-torch-small"', "input_channels = 3", "input_scale = 1.0", "", "[output]", 'transform = "clamp"']
    for l in layers:
        n = l["name"]
        iname = n.replace("conv", "in") if "." not in n else n.replace(".conv", ".in")
        out += ["", "[[layers]]", f'name = "{n}"', 'op = "conv"', f'weight = "{n}.conv2d.weight"', f'bias = "{n}.conv2d.bias"',
                f"in_channels = {l['cin']}", f"out_channels = {l['cout']}", f"kernel = {l['k']}", f"stride = {l['stride']}",
                f"upsample = {2 if l['up'] else 1}", 'padding = "reflect"']
        if l["norm"]:
            out.append(f'norm = {{ kind = "instance", scale = "{iname}.weight", shift = "{iname}.bias", eps = 1e-05 }}')
        out.append(f'activation = "{"relu" if l["relu"] else "none"}"')
        if l.get("residual"):
            out.append(f'residual = "{l["residual"]}"')
    path.write_text("\n".join(out) + "\n")


def build(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    zoo, weights, layers = torch_variant("zoo")
    onnx.save(zoo, out / "torch_zoo.onnx")
    onnx.save(torch_variant("zoo", fixed=224)[0], out / "torch_zoo_224.onnx")
    onnx.save(torch_variant("export", seed=3)[0], out / "torch_export.onnx")
    onnx.save(torch_variant("export", seed=3, fixed=224)[0], out / "torch_export_224.onnx")
    write_safetensors(out / "torch_plain.safetensors", weights)
    write_toml(out / "torch_plain.toml", layers)
    onnx.save(tf_variant(), out / "tf_same.onnx")
    onnx.save(tf_variant(fixed=(48, 64)), out / "tf_fixed_64x48.onnx")
    onnx.save(tf_variant(output="sigmoid"), out / "tf_sigmoid.onnx")
    bad = onnx.ModelProto()
    bad.CopyFrom(zoo)
    last = bad.graph.output[0].name
    bad.graph.node.append(helper.make_node("LeakyRelu", [last], ["leaky"], name="my_leaky_relu", alpha=0.1))
    bad.graph.node.append(helper.make_node("Softplus", ["leaky"], ["soft"], name="my_softplus"))
    bad.graph.output[0].name = "soft"
    onnx.save(bad, out / "unsupported.onnx")
    # Broken graphs the importer must refuse with a clear error (written without the checker).
    cyc = onnx.ModelProto()
    cyc.CopyFrom(zoo)
    n0, n1 = cyc.graph.node[0], cyc.graph.node[1]
    n0.input[0] = n1.output[0]  # the first Pad now reads the first Conv's output: a cycle
    onnx.save(cyc, out / "cycle.onnx")
    missing = onnx.ModelProto()
    missing.CopyFrom(zoo)
    missing.graph.initializer.pop(0)  # conv1's weights
    onnx.save(missing, out / "missing_initializer.onnx")
    huge = onnx.ModelProto()
    huge.CopyFrom(zoo)
    t = huge.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 40, 1 << 40, 3, 3])  # declared 10^24 elements, 8 KB of data
    onnx.save(huge, out / "huge_dims.onnx")


def run(model: str, rgb: str, w: int, h: int, out: str) -> None:
    import onnxruntime as ort

    x = np.frombuffer(Path(rgb).read_bytes(), dtype=np.uint8).reshape(h, w, 3).astype(np.float32)
    x = x.transpose(2, 0, 1)[None]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    Path(out).write_bytes(np.ascontiguousarray(y[0].transpose(1, 2, 0), dtype="<f4").tobytes())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "build":
        build(Path(sys.argv[2]))
    elif len(sys.argv) == 7 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        sys.exit(__doc__)
