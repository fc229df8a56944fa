//! Add, Sub, Mul and Div nodes on image activations (input scaling, bias folding, residual
//! adds, the output transform's scale and offset), and the output transform's Tanh, Sigmoid
//! and Clip.

use super::{activation, bad, optional_constant, Act, Builder, Func, Src, Sym, Val};
use crate::model::description::Activation;
use crate::model::onnx::fold::attr;
use crate::model::onnx::proto::Node;
use crate::model::onnx::OnnxError;

impl Builder {
    /// Tanh or Sigmoid: the function of the output transform, straight after the last layer.
    pub(super) fn squash(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let func = if node.op_type == "Tanh" { Func::Tanh } else { Func::Sigmoid };
        match a.sym {
            Sym::Src(Src::Layer { .. }) => {
                let idx = self.open_layer(node, &a)?;
                let stage = self.state[idx].stage;
                Ok(Val::A(Act { sym: Sym::Out { idx, stage, func, scale: 1.0, offset: 0.0 }, ..a }))
            }
            Sym::Out { idx, stage, func: Func::None, scale, offset } if scale == 1.0 && offset == 0.0 => {
                Ok(Val::A(Act { sym: Sym::Out { idx, stage, func, scale, offset }, ..a }))
            }
            _ => Err(bad(node, "only one Tanh or Sigmoid, straight after the last layer, is supported")),
        }
    }

    /// Clip: only the output's final clamp to the display range.
    pub(super) fn clip(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let (lo, hi) = if self.opset < 11 {
            (
                attr(node, "min").and_then(|a| a.f).unwrap_or(f32::MIN) as f64,
                attr(node, "max").and_then(|a| a.f).unwrap_or(f32::MAX) as f64,
            )
        } else {
            let get = |i, what| -> Result<Option<f64>, OnnxError> {
                Ok(optional_constant(node, args, i, what)?.and_then(|c| c.uniform()))
            };
            (get(1, "min")?.unwrap_or(f64::MIN), get(2, "max")?.unwrap_or(f64::MAX))
        };
        if lo > 0.0 || hi < 255.0 {
            return Err(bad(
                node,
                format!("Clip to [{lo}, {hi}] is narrower than the display range [0, 255]; only the output's final clamp is supported"),
            ));
        }
        self.output_op(node, a, 1.0, 0.0)
    }

    /// Starts or extends the output transform `func(x) * scale + offset` with `* mul + add`.
    pub(super) fn output_op(&mut self, node: &Node<'_>, a: Act, mul: f64, add: f64) -> Result<Val, OnnxError> {
        let sym = match a.sym {
            Sym::Src(Src::Layer { .. }) => {
                let idx = self.open_layer(node, &a)?;
                Sym::Out { idx, stage: self.state[idx].stage, func: Func::None, scale: mul, offset: add }
            }
            Sym::Out { idx, stage, func, scale, offset } => {
                Sym::Out { idx, stage, func, scale: scale * mul, offset: offset * mul + add }
            }
            _ => return Err(bad(node, "only the network's output may be transformed here")),
        };
        Ok(Val::A(Act { sym, ..a }))
    }

    pub(super) fn arithmetic(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let op = node.op_type.as_str();
        let (x, y) = match (args.first().copied().flatten(), args.get(1).copied().flatten()) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(bad(node, "needs two inputs")),
        };
        match (x, y) {
            (Val::A(a), Val::A(b)) if op == "Add" => self.residual(node, *a, *b),
            (Val::A(_), Val::A(_)) => {
                Err(bad(node, format!("{op} of two activations is not supported (only a residual Add)")))
            }
            (Val::A(a), Val::C(c)) | (Val::C(c), Val::A(a)) => {
                let const_first = matches!(x, Val::C(_));
                let a = *a;
                // Input scaling: x * s or x / s, before the first layer.
                if let Sym::Src(Src::Input { scale }) = a.sym {
                    let s = c.uniform().filter(|s| *s > 0.0 && s.is_finite());
                    return match (op, s, const_first) {
                        ("Mul", Some(s), _) => Ok(Val::A(Act { sym: Sym::Src(Src::Input { scale: scale * s as f32 }), ..a })),
                        ("Div", Some(s), false) => Ok(Val::A(Act { sym: Sym::Src(Src::Input { scale: scale / s as f32 }), ..a })),
                        _ => Err(bad(
                            node,
                            "input preprocessing other than multiplying or dividing by one positive constant is not supported",
                        )),
                    };
                }
                // A scalar or per-channel ([1, C, 1, 1] / [C, 1, 1]) constant added straight
                // after a conv, before any norm or activation: part of its bias.
                if let Sym::Src(Src::Layer { idx, .. }) = a.sym {
                    let l = &self.layers[idx];
                    let oc = l.out_channels as usize;
                    let conv_stage = l.norm.is_none() && l.activation == Activation::None && l.residual.is_none();
                    let r = c.dims.len();
                    let per_channel = c.len() == 1
                        || ((3..=4).contains(&r)
                            && c.dims[r - 3] == oc
                            && c.dims[r - 2] == 1
                            && c.dims[r - 1] == 1
                            && c.len() == oc);
                    if (op == "Add" || (op == "Sub" && !const_first)) && conv_stage && per_channel {
                        let idx = self.open_layer(node, &a)?;
                        let sign = if op == "Sub" { -1.0 } else { 1.0 };
                        let name = self.layers[idx].name.clone();
                        let old = self.layers[idx].bias.as_ref().and_then(|n| self.tensors.get(n)).cloned();
                        let old = old.unwrap_or_else(|| vec![0.0; oc]);
                        let add = c.as_f32();
                        let bias = (0..oc).map(|o| old[o] + sign * add[if add.len() == 1 { 0 } else { o }]).collect();
                        self.tensors.insert(format!("{name}.bias"), bias);
                        self.layers[idx].bias = Some(format!("{name}.bias"));
                        return Ok(self.bump(idx, a.shape));
                    }
                }
                let Some(v) = c.uniform().filter(|v| v.is_finite()) else {
                    return Err(bad(
                        node,
                        format!("{op} by a per-channel or per-pixel constant is only supported as a conv bias"),
                    ));
                };
                match (op, const_first) {
                    ("Mul", _) => self.output_op(node, a, v, 0.0),
                    ("Add", _) => self.output_op(node, a, 1.0, v),
                    ("Sub", false) => self.output_op(node, a, 1.0, -v),
                    ("Sub", true) => self.output_op(node, a, -1.0, v),
                    ("Div", false) if v != 0.0 => self.output_op(node, a, 1.0 / v, 0.0),
                    _ => Err(bad(node, format!("{op} with the constant as divisor-of-image is not supported"))),
                }
            }
            (Val::C(_), Val::C(_)) => Err(bad(node, "internal: constant operands should have been folded")),
        }
    }

    /// `layer + earlier layer`: the residual of the newest layer.
    pub(super) fn residual(&mut self, node: &Node<'_>, a: Act, b: Act) -> Result<Val, OnnxError> {
        let layer_of = |x: &Act| match x.sym {
            Sym::Src(Src::Layer { idx, stage }) => Some((idx, stage)),
            _ => None,
        };
        let (Some(pa), Some(pb)) = (layer_of(&a), layer_of(&b)) else {
            return Err(bad(node, "an Add of two activations must add two layer outputs (a residual)"));
        };
        let (main, skip, shape) = if pa.0 > pb.0 { (pa, pb, a.shape) } else { (pb, pa, b.shape) };
        let main_act = if pa.0 > pb.0 { a } else { b };
        let idx = self.open_layer(node, &main_act)?;
        if idx + 1 != self.layers.len() {
            return Err(bad(node, "the residual must be added to the newest layer"));
        }
        // The skip value must be the final state of its layer.
        if self.state[skip.0].stage != skip.1 || self.state[skip.0].crop.is_some() {
            return Err(bad(node, "the residual source is not the final output of its layer"));
        }
        if a.shape != b.shape {
            return Err(bad(node, format!("shapes {:?} and {:?} differ", a.shape, b.shape)));
        }
        let _ = main;
        let skip_name = self.layers[skip.0].name.clone();
        let l = &mut self.layers[idx];
        if l.residual.is_some() {
            return Err(bad(node, format!("layer `{}` already has a residual", l.name)));
        }
        l.residual = Some(skip_name);
        Ok(self.bump(idx, shape))
    }
}
