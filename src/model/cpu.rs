//! CPU reference of every op and of the whole network: plain Rust written for clarity, used as
//! the oracle for the GPU kernels (f32 storage, f64 accumulation and statistics).

use super::description::{Activation, Layer, NetworkDescription, Op, OutputTransform, Padding};
use super::weights::Weights;

/// An activation in HWC layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c, data: vec![0.0; h * w * c] }
    }

    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(y * self.w + x) * self.c + c]
    }

    /// RGB8 pixels (row-major, 3 bytes each) as floats times `scale`.
    pub fn from_rgb8(h: usize, w: usize, rgb: &[u8], scale: f32) -> Self {
        Self { h, w, c: 3, data: rgb.iter().map(|&v| v as f32 * scale).collect() }
    }
}

/// Where a padded coordinate `v` of a dimension with `n` (virtual) pixels reads from, or
/// `None` for zero padding.
fn source(v: i64, n: i64, padding: Padding) -> Option<i64> {
    match padding {
        Padding::Same => (0..n).contains(&v).then_some(v),
        Padding::Reflect => {
            let r = if v < 0 {
                -v
            } else if v >= n {
                2 * (n - 1) - v
            } else {
                v
            };
            Some(r.clamp(0, n - 1))
        }
    }
}

/// Convolution (cross-correlation) with OIHW weights, optional nearest upsampling of the
/// input by `upsample` first, then padding, then stride.
pub fn conv2d(x: &Tensor, w: &[f32], bias: Option<&[f32]>, layer: &Layer) -> Tensor {
    let (k, s, up) = (layer.kernel as usize, layer.stride as usize, layer.upsample as usize);
    let (cin, cout) = (x.c, layer.out_channels as usize);
    let (oh, ow) = (layer.out_dim(x.h as u32) as usize, layer.out_dim(x.w as u32) as usize);
    let (pt, pl) = (layer.pad_before(x.h as u32) as i64, layer.pad_before(x.w as u32) as i64);
    let mut y = Tensor::zeros(oh, ow, cout);
    let mut acc = vec![0f64; cout];
    for oy in 0..oh {
        for ox in 0..ow {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for ky in 0..k {
                let vy = (oy * s + ky) as i64 - pt;
                let Some(iy) = source(vy, (x.h * up) as i64, layer.padding) else { continue };
                for kx in 0..k {
                    let vx = (ox * s + kx) as i64 - pl;
                    let Some(ix) = source(vx, (x.w * up) as i64, layer.padding) else { continue };
                    let (iy, ix) = (iy as usize / up, ix as usize / up);
                    for ic in 0..cin {
                        let v = x.at(iy, ix, ic) as f64;
                        for (oc, a) in acc.iter_mut().enumerate() {
                            *a += v * w[((oc * cin + ic) * k + ky) * k + kx] as f64;
                        }
                    }
                }
            }
            for (oc, a) in acc.iter().enumerate() {
                let b = bias.map_or(0.0, |b| b[oc] as f64);
                y.data[(oy * ow + ox) * cout + oc] = (a + b) as f32;
            }
        }
    }
    y
}

/// TensorFlow `conv2d_transpose`, stride 2, IOHW weights, output exactly `2H x 2W`:
/// `y[2i+dy, 2j+dx, o] += x[i, j, c] * w[c, o, dy, dx]`, dropping what falls outside.
pub fn conv_transpose2d(x: &Tensor, w: &[f32], bias: Option<&[f32]>, layer: &Layer) -> Tensor {
    let k = layer.kernel as usize;
    let (cin, cout) = (x.c, layer.out_channels as usize);
    let (oh, ow) = (2 * x.h, 2 * x.w);
    let mut y = vec![0f64; oh * ow * cout];
    for i in 0..x.h {
        for j in 0..x.w {
            for dy in 0..k {
                for dx in 0..k {
                    let (r, s) = (2 * i + dy, 2 * j + dx);
                    if r >= oh || s >= ow {
                        continue;
                    }
                    for c in 0..cin {
                        let v = x.at(i, j, c) as f64;
                        for o in 0..cout {
                            y[(r * ow + s) * cout + o] += v * w[((c * cout + o) * k + dy) * k + dx] as f64;
                        }
                    }
                }
            }
        }
    }
    let data = y.iter().enumerate().map(|(i, v)| (v + bias.map_or(0.0, |b| b[i % cout] as f64)) as f32).collect();
    Tensor { h: oh, w: ow, c: cout, data }
}

/// Instance normalisation per channel over H and W: biased variance, eps inside the root.
pub fn instance_norm(x: &mut Tensor, scale: &[f32], shift: &[f32], eps: f32) {
    let n = (x.h * x.w) as f64;
    for c in 0..x.c {
        let values = || x.data.iter().skip(c).step_by(x.c).map(|&v| v as f64);
        let mean = values().sum::<f64>() / n;
        let var = values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let a = scale[c] as f64 / (var + eps as f64).sqrt();
        let b = shift[c] as f64 - mean * a;
        for v in x.data.iter_mut().skip(c).step_by(x.c) {
            *v = (a * *v as f64 + b) as f32;
        }
    }
}

pub fn relu(x: &mut Tensor) {
    x.data.iter_mut().for_each(|v| *v = v.max(0.0));
}

pub fn add(x: &mut Tensor, other: &Tensor) {
    x.data.iter_mut().zip(&other.data).for_each(|(a, b)| *a += b);
}

/// The output transform, before clamping (the values the golden `.f32` files hold).
pub fn output_transform(x: &Tensor, t: &OutputTransform) -> Tensor {
    let f = |v: f32| match t {
        OutputTransform::Tanh { scale, offset } => ((v as f64).tanh() * *scale as f64 + *offset as f64) as f32,
        OutputTransform::Sigmoid { scale, offset } => {
            ((1.0 / (1.0 + (-(v as f64)).exp())) * *scale as f64 + *offset as f64) as f32
        }
        OutputTransform::Linear { scale, offset } => (v as f64 * *scale as f64 + *offset as f64) as f32,
        OutputTransform::Clamp => v,
    };
    Tensor { data: x.data.iter().map(|&v| f(v)).collect(), ..*x }
}

/// Display rule: `floor(clamp(y, 0, 255) + 0.5)`.
pub fn to_rgb8(y: &Tensor) -> Vec<u8> {
    y.data.iter().map(|&v| (v.clamp(0.0, 255.0) + 0.5).floor() as u8).collect()
}

/// One layer: op, bias, norm, activation (the residual is added by `forward`).
pub fn layer(x: &Tensor, l: &Layer, weights: &Weights) -> Tensor {
    let bias = l.bias.as_ref().map(|b| weights.get(b));
    let mut y = match l.op {
        Op::Conv => conv2d(x, weights.get(&l.weight), bias, l),
        Op::ConvTranspose => conv_transpose2d(x, weights.get(&l.weight), bias, l),
    };
    if let Some(n) = &l.norm {
        instance_norm(&mut y, weights.get(&n.scale), weights.get(&n.shift), n.eps);
    }
    if l.activation == Activation::Relu {
        relu(&mut y);
    }
    y
}

/// The whole network on an input at its working size; returns every layer's output and the
/// transformed output (before clamping).
pub fn forward(desc: &NetworkDescription, weights: &Weights, input: &Tensor) -> (Vec<Tensor>, Tensor) {
    let mut outs: Vec<Tensor> = Vec::with_capacity(desc.layers.len());
    for l in &desc.layers {
        let x = outs.last().unwrap_or(input);
        let mut y = layer(x, l, weights);
        if let Some(r) = &l.residual {
            if let Some(i) = desc.layer_index(r) {
                add(&mut y, &outs[i]);
            }
        }
        outs.push(y);
    }
    let last = outs.last().unwrap_or(input);
    let y = output_transform(last, &desc.output);
    (outs, y)
}
