//! InstanceNormalization, BatchNormalization and Relu nodes: what follows a convolution inside
//! its layer (a norm, folded into the weights for batch norm, then the activation).

use super::{activation, bad, constant, Builder, Val};
use crate::model::description::{Activation, Norm, NormKind, Op};
use crate::model::onnx::fold::{attr, attr_i};
use crate::model::onnx::proto::Node;
use crate::model::onnx::OnnxError;

impl Builder {
    /// InstanceNormalization: the norm of the newest layer.
    pub(super) fn instance_norm(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let idx = self.open_layer(node, &a)?;
        let l = &self.layers[idx];
        if l.norm.is_some() || l.activation != Activation::None || l.residual.is_some() {
            return Err(bad(node, format!("layer `{}` already has a norm, activation or residual before it", l.name)));
        }
        let c = a.shape[1] as usize;
        let scale = constant(node, args, 1, "scale")?.as_f32();
        let shift = constant(node, args, 2, "B")?.as_f32();
        if scale.len() != c || shift.len() != c {
            return Err(bad(node, format!("scale and B must have {c} values")));
        }
        let eps = attr(node, "epsilon").and_then(|a| a.f).unwrap_or(1e-5);
        let name = l.name.clone();
        let (sn, hn) = (format!("{name}.norm.scale"), format!("{name}.norm.shift"));
        self.tensors.insert(sn.clone(), scale);
        self.tensors.insert(hn.clone(), shift);
        self.layers[idx].norm = Some(Norm { kind: NormKind::Instance, scale: sn, shift: hn, eps });
        Ok(self.bump(idx, a.shape))
    }

    /// BatchNormalization: folded into the newest layer's weights and bias.
    pub(super) fn batch_norm(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let idx = self.open_layer(node, &a)?;
        let l = &self.layers[idx];
        if l.norm.is_some() || l.activation != Activation::None || l.residual.is_some() {
            let why = format!(
                "a BatchNormalization is folded into its convolution, but layer `{}` already has a norm, activation or residual",
                l.name
            );
            return Err(bad(node, why));
        }
        if attr_i(node, "training_mode").unwrap_or(0) != 0 {
            return Err(bad(node, "training mode is not supported"));
        }
        let c = l.out_channels as usize;
        let get = |i, what| -> Result<Vec<f64>, OnnxError> {
            let v = constant(node, args, i, what)?.as_f64();
            if v.len() == c {
                Ok(v)
            } else {
                Err(bad(node, format!("{what} must have {c} values")))
            }
        };
        let (scale, b, mean, var) = (get(1, "scale")?, get(2, "B")?, get(3, "mean")?, get(4, "var")?);
        let eps = attr(node, "epsilon").and_then(|a| a.f).unwrap_or(1e-5) as f64;
        let mul: Vec<f64> = (0..c).map(|o| scale[o] / (var[o] + eps).sqrt()).collect();
        if mul.iter().any(|m| !m.is_finite()) {
            return Err(bad(node, "variance + epsilon must be positive"));
        }
        // y = (conv(x) + bias - mean) * mul + B: scale the output channels' weights.
        let (wname, op, ic) = (l.weight.clone(), l.op, l.in_channels as usize);
        let k2 = (l.kernel * l.kernel) as usize;
        if let Some(w) = self.tensors.get_mut(&wname) {
            for (i, v) in w.iter_mut().enumerate() {
                let o = match op {
                    Op::Conv => i / (ic * k2),
                    Op::ConvTranspose => (i / k2) % c,
                };
                *v = (*v as f64 * mul[o]) as f32;
            }
        }
        let name = l.name.clone();
        let old = l.bias.as_ref().and_then(|n| self.tensors.get(n)).cloned().unwrap_or_else(|| vec![0.0; c]);
        let bias: Vec<f32> = (0..c).map(|o| ((old[o] as f64 - mean[o]) * mul[o] + b[o]) as f32).collect();
        self.tensors.insert(format!("{name}.bias"), bias);
        self.layers[idx].bias = Some(format!("{name}.bias"));
        Ok(self.bump(idx, a.shape))
    }

    /// Relu: the activation of the newest layer.
    pub(super) fn relu(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let idx = self.open_layer(node, &a)?;
        let l = &mut self.layers[idx];
        if l.activation != Activation::None || l.residual.is_some() {
            return Err(bad(node, format!("layer `{}` already has an activation or a residual add", l.name)));
        }
        l.activation = Activation::Relu;
        Ok(self.bump(idx, a.shape))
    }
}
