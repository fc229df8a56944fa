//! Conv and ConvTranspose nodes: each one a layer of the description, with its padding,
//! upsampling and stride checked against what the kernels run; and the Slice that crops a
//! ConvTranspose output to 2H x 2W.

use super::{activation, bad, constant, optional_constant, unfoldable, EARLIER_STATE};
use super::{Act, Builder, LayerState, PadMode, PrePad, Src, Sym, Val};
use crate::model::description::{same_pad, Activation, Layer, Op, Padding};
use crate::model::onnx::fold::{self, attr, attr_i, attr_ints, attr_s, Const};
use crate::model::onnx::proto::Node;
use crate::model::onnx::OnnxError;

impl Builder {
    /// The source of a conv's input, with the upsampling and pads in front of it.
    pub(super) fn conv_input(&self, node: &Node<'_>, a: &Act) -> Result<(Src, u32, PrePad), OnnxError> {
        let (src, up, pad) = match a.sym {
            Sym::Src(s) => (s, 1, None),
            Sym::Pre { src, upsample, pad } => (src, upsample, pad),
            Sym::Out { .. } => {
                return Err(bad(
                    node,
                    "reads an output transform (Tanh/Mul/Add/Clip) between layers, which is not supported",
                ))
            }
        };
        match src {
            Src::Input { .. } if self.layers.is_empty() => {}
            Src::Input { .. } => return Err(bad(node, "reads the network input, but only the first layer may")),
            Src::Layer { idx, .. } if idx + 1 != self.layers.len() => {
                return Err(bad(
                    node,
                    "its input is not the previous layer's output (branching graphs are not supported)",
                ))
            }
            Src::Layer { idx, stage } => {
                if self.state[idx].crop.is_some() {
                    return Err(bad(node, "a ConvTranspose output must first be cropped to 2H x 2W"));
                }
                if !self.current(idx, stage) {
                    return Err(bad(node, EARLIER_STATE));
                }
            }
        }
        Ok((src, up, pad))
    }

    pub(super) fn layer_name(&mut self, node: &Node<'_>) -> String {
        let mut name = if node.name.is_empty() { format!("layer{}", self.layers.len()) } else { node.name.clone() };
        if !self.names.insert(name.clone()) {
            name = format!("{name}#{}", self.layers.len());
            self.names.insert(name.clone());
        }
        name
    }

    /// Common checks of Conv and ConvTranspose attributes; returns (kernel, stride).
    pub(super) fn conv_attrs(&self, node: &Node<'_>, w: &Const) -> Result<(u32, u32), OnnxError> {
        if w.dims.len() != 4 || w.dims[2] != w.dims[3] || w.dims[2].is_multiple_of(2) || w.dims[2] > 11 {
            return Err(bad(
                node,
                format!("weights of shape {:?}: square odd 2-D kernels up to 11 are supported", w.dims),
            ));
        }
        if attr_i(node, "group").unwrap_or(1) != 1 {
            return Err(bad(node, "grouped convolutions are not supported"));
        }
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(bad(node, "dilated convolutions are not supported"));
        }
        if attr_ints(node, "kernel_shape").is_some_and(|k| k.iter().any(|&v| v as usize != w.dims[2])) {
            return Err(bad(node, "kernel_shape does not match the weights"));
        }
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let s = strides.first().copied().unwrap_or(1);
        if strides.len() != 2 || strides[1] != s || !(1..=2).contains(&s) {
            return Err(bad(node, format!("strides {strides:?}: equal strides of 1 or 2 are supported")));
        }
        Ok((w.dims[2] as u32, s as u32))
    }

    pub(super) fn bias(
        &self,
        node: &Node<'_>,
        args: &[Option<&Val>],
        oc: usize,
    ) -> Result<Option<Vec<f32>>, OnnxError> {
        match optional_constant(node, args, 2, "bias")? {
            None => Ok(None),
            Some(b) if b.len() == oc => Ok(Some(b.as_f32())),
            Some(b) => Err(bad(node, format!("bias has {} values, expected {oc}", b.len()))),
        }
    }

    pub(super) fn push_layer(
        &mut self,
        node: &Node<'_>,
        mut layer: Layer,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        src: Src,
    ) -> usize {
        let name = self.layer_name(node);
        layer.name = name.clone();
        layer.weight = format!("{name}.weight");
        self.tensors.insert(layer.weight.clone(), weight);
        if let Some(b) = bias {
            layer.bias = Some(format!("{name}.bias"));
            self.tensors.insert(format!("{name}.bias"), b);
        }
        match src {
            Src::Input { scale } => self.input_scale = Some(scale),
            Src::Layer { idx, .. } => self.state[idx].closed = true,
        }
        self.layers.push(layer);
        self.state.push(LayerState::default());
        self.layers.len() - 1
    }

    pub(super) fn conv(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let (src, up, pre_pad) = self.conv_input(node, &a)?;
        let w = constant(node, args, 1, "weights")?;
        let (k, s) = self.conv_attrs(node, w)?;
        let (oc, ic) = (w.dims[0], w.dims[1]);
        if ic as i64 != a.shape[1] {
            return Err(bad(node, format!("weights expect {ic} input channels, the input has {}", a.shape[1])));
        }
        // The image before the Pad node (after upsampling).
        let (n_h, n_w) = match pre_pad {
            Some((_, p)) => (a.shape[2] - p[0] - p[2], a.shape[3] - p[1] - p[3]),
            None => (a.shape[2], a.shape[3]),
        };
        let conv_pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
        if conv_pads.len() != 4 || conv_pads.iter().any(|&p| p < 0) {
            return Err(bad(node, format!("pads {conv_pads:?} are not 2-D")));
        }
        let auto = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let same = |n: i64| same_pad(n as u32, k, s);
        let conv_pads: [i64; 4] = match auto.as_str() {
            "NOTSET" | "" => [conv_pads[0], conv_pads[1], conv_pads[2], conv_pads[3]],
            "VALID" => [0; 4],
            "SAME_UPPER" if pre_pad.is_none() => {
                let (h, w) = (same(n_h), same(n_w));
                [h.0 as i64, w.0 as i64, h.1 as i64, w.1 as i64]
            }
            other => return Err(bad(node, format!("auto_pad {other} is not supported here"))),
        };
        let half = (k / 2) as i64;
        let padding = match pre_pad {
            Some((PadMode::Reflect, p)) if conv_pads == [0; 4] && p == [half; 4] => Padding::Reflect,
            Some((PadMode::Reflect, p)) => {
                return Err(bad(
                    node,
                    format!(
                        "reflection pads {p:?} with conv pads {conv_pads:?}: \
                         only reflection of kernel/2 = {half} on every side is supported"
                    ),
                ))
            }
            zero => {
                let p = zero.map_or([0; 4], |(_, p)| p);
                let total = [p[0] + conv_pads[0], p[1] + conv_pads[1], p[2] + conv_pads[2], p[3] + conv_pads[3]];
                let (h, w) = (same(n_h), same(n_w));
                if total == [h.0 as i64, w.0 as i64, h.1 as i64, w.1 as i64] {
                    Padding::Same
                } else {
                    return Err(bad(node, format!(
                        "zero padding {total:?} (top, left, bottom, right) at {n_h}x{n_w} is neither TensorFlow 'SAME' ({h:?}, {w:?}) \
                         nor reflection: not supported by the kernels"
                    )));
                }
            }
        };
        let weight = w.as_f32();
        let bias = self.bias(node, args, oc)?;
        let layer = Layer {
            name: String::new(),
            op: Op::Conv,
            weight: String::new(),
            bias: None,
            in_channels: ic as u32,
            out_channels: oc as u32,
            kernel: k,
            stride: s,
            upsample: up,
            padding,
            norm: None,
            activation: Activation::None,
            residual: None,
        };
        // ONNX's output size; the description's rule must agree with it at the probe size.
        let out = |n: i64| (n + if padding == Padding::Reflect { 2 * half } else { 0 } - k as i64) / s as i64 + 1;
        let (oh, ow) = match pre_pad {
            Some(_) => (out(n_h), out(n_w)),
            None => {
                let t = conv_pads;
                (
                    (a.shape[2] + t[0] + t[2] - k as i64) / s as i64 + 1,
                    (a.shape[3] + t[1] + t[3] - k as i64) / s as i64 + 1,
                )
            }
        };
        let (dh, dw) = (layer.out_dim((n_h / up as i64) as u32) as i64, layer.out_dim((n_w / up as i64) as u32) as i64);
        if (oh, ow) != (dh, dw) {
            return Err(bad(node, format!("output {oh}x{ow} differs from the layer rule's {dh}x{dw}")));
        }
        let idx = self.push_layer(node, layer, weight, bias, src);
        Ok(Val::A(Act { shape: [1, oc as i64, oh, ow], sym: Sym::Src(Src::Layer { idx, stage: 0 }) }))
    }

    pub(super) fn conv_transpose(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let (src, up, pad) = self.conv_input(node, &a)?;
        if up != 1 || pad.is_some() {
            return Err(bad(node, "upsampling or padding before a ConvTranspose is not supported"));
        }
        let w = constant(node, args, 1, "weights")?;
        let (k, s) = self.conv_attrs(node, w)?;
        let (ic, oc) = (w.dims[0], w.dims[1]);
        if ic as i64 != a.shape[1] {
            return Err(bad(node, format!("weights expect {ic} input channels, the input has {}", a.shape[1])));
        }
        if s != 2 || k < 3 {
            return Err(bad(node, "ConvTranspose must have stride 2 and a kernel of at least 3"));
        }
        if attr(node, "output_shape").is_some() || attr_s(node, "auto_pad").is_some_and(|v| v != "NOTSET") {
            return Err(bad(node, "output_shape and auto_pad are not supported; give explicit pads"));
        }
        if attr_ints(node, "output_padding").is_some_and(|p| p.iter().any(|&v| v != 0)) {
            return Err(bad(node, "output_padding is not supported"));
        }
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
        let e = k as i64 - 2;
        let (h, w2) = (a.shape[2], a.shape[3]);
        let crop = match pads.as_slice() {
            [0, 0, b, r] if *b == e && *r == e => None,
            [0, 0, 0, 0] => Some((2 * h, 2 * w2)),
            _ => {
                return Err(bad(node, format!(
                    "pads {pads:?}: TensorFlow's conv2d_transpose (output 2H x 2W) is pads [0, 0, {e}, {e}], or pads 0 and a Slice"
                )))
            }
        };
        let weight = w.as_f32();
        let bias = self.bias(node, args, oc)?;
        let layer = Layer {
            name: String::new(),
            op: Op::ConvTranspose,
            weight: String::new(),
            bias: None,
            in_channels: ic as u32,
            out_channels: oc as u32,
            kernel: k,
            stride: 2,
            upsample: 1,
            padding: Padding::Same,
            norm: None,
            activation: Activation::None,
            residual: None,
        };
        let idx = self.push_layer(node, layer, weight, bias, src);
        self.state[idx].crop = crop;
        let extra = if crop.is_some() { e } else { 0 };
        Ok(Val::A(Act {
            shape: [1, oc as i64, 2 * h + extra, 2 * w2 + extra],
            sym: Sym::Src(Src::Layer { idx, stage: 0 }),
        }))
    }

    /// A Slice of an activation: only the crop of a ConvTranspose to 2H x 2W.
    pub(super) fn crop(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let Sym::Src(Src::Layer { idx, stage }) = a.sym else {
            return Err(bad(node, "a Slice of the image is only supported as the crop after a ConvTranspose"));
        };
        let Some((th, tw)) = self.state[idx].crop.filter(|_| self.current(idx, stage)) else {
            return Err(bad(node, "a Slice of the image is only supported as the crop after a ConvTranspose"));
        };
        let consts: Vec<Option<&Const>> =
            args.iter().map(|a| a.and_then(|v| if let Val::C(c) = v { Some(c) } else { None })).collect();
        let (starts, ends, axes, steps) =
            fold::slice_args(node, &consts, self.opset).map_err(|e| unfoldable(node, e))?;
        let mut kept = a.shape.map(|d| (0..d as usize).collect::<Vec<_>>());
        for k in 0..starts.len() {
            let ax = axes.as_ref().map_or(k as i64, |x| x[k]);
            let ax = if ax < 0 { ax + 4 } else { ax };
            if !(0..4).contains(&ax) {
                return Err(bad(node, format!("axis {ax} out of range")));
            }
            let step = steps.as_ref().map_or(1, |s| s[k]);
            kept[ax as usize] =
                fold::slice_indices(a.shape[ax as usize], starts[k], ends[k], step).map_err(|e| unfoldable(node, e))?;
        }
        let prefix = |v: &Vec<usize>, n: i64| v.len() as i64 == n && v.iter().enumerate().all(|(i, &x)| i == x);
        if !(prefix(&kept[0], a.shape[0])
            && prefix(&kept[1], a.shape[1])
            && prefix(&kept[2], th)
            && prefix(&kept[3], tw))
        {
            return Err(bad(
                node,
                format!("this Slice does not keep the top-left {th}x{tw} of the ConvTranspose output"),
            ));
        }
        self.state[idx].crop = None;
        Ok(self.bump(idx, [a.shape[0], a.shape[1], th, tw]))
    }
}
