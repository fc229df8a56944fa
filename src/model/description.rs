//! The network as data: a declarative list of layers read from `pipelines/networks/*.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The TensorFlow variant used by the shared pretrained models.
pub const TRANSFORMNET_TF: &str = include_str!("../../pipelines/networks/transformnet-tf.toml");
/// The PyTorch / ONNX-model-zoo variant.
pub const TRANSFORMNET_TORCH: &str = include_str!("../../pipelines/networks/transformnet-torch.toml");

/// A whole network: input conventions, layers in execution order, output transform.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkDescription {
    pub name: String,
    /// Channels of the input frame (3: RGB).
    pub input_channels: u32,
    /// Factor applied to the 8-bit input values (1.0: feed 0..255 as they are).
    pub input_scale: f32,
    pub output: OutputTransform,
    pub layers: Vec<Layer>,
}

/// What turns the last layer's activation into pixel values (before clamping to 0..255).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "transform", rename_all = "snake_case")]
pub enum OutputTransform {
    /// `y = tanh(x) * scale + offset`.
    Tanh { scale: f32, offset: f32 },
    /// `y = sigmoid(x) * scale + offset` (imported ONNX graphs ending in Sigmoid).
    Sigmoid { scale: f32, offset: f32 },
    /// `y = x * scale + offset` (imported ONNX graphs whose output is, e.g., 0..1 times 255).
    Linear { scale: f32, offset: f32 },
    /// `y = x`; display clamps to 0..255.
    Clamp,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Cross-correlation, OIHW weights `[out, in, k, k]`; optional nearest upsampling first.
    Conv,
    /// TensorFlow `conv2d_transpose`, stride 2, output `2H x 2W`, IOHW weights `[in, out, k, k]`.
    ConvTranspose,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// TensorFlow 'SAME' zero padding: total `max((ceil(n/s)-1)*s + k - n, 0)`, the odd pixel
    /// after (so asymmetric (0, 1) for 3x3 stride 2 on even sizes).
    Same,
    /// Reflection padding of `k / 2` on every side (PyTorch `ReflectionPad2d`).
    Reflect,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    None,
    Relu,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Norm {
    /// Only instance normalisation exists so far.
    pub kind: NormKind,
    /// Tensor names of the learned per-channel scale (gamma) and shift (beta).
    pub scale: String,
    pub shift: String,
    /// Added to the biased variance inside the square root.
    pub eps: f32,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    Instance,
}

/// One layer: `activation(norm(op(input) + bias)) + residual`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub name: String,
    pub op: Op,
    /// Tensor name of the weights.
    pub weight: String,
    /// Tensor name of the bias, if the layer has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<String>,
    pub in_channels: u32,
    pub out_channels: u32,
    pub kernel: u32,
    pub stride: u32,
    /// Nearest-neighbour upsampling factor applied to the input before a `conv`.
    #[serde(default = "one")]
    pub upsample: u32,
    pub padding: Padding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<Norm>,
    pub activation: Activation,
    /// Name of an earlier layer whose output is added after norm and activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<String>,
}

fn one() -> u32 {
    1
}

/// Shape of an activation: channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub c: u32,
    pub h: u32,
    pub w: u32,
}

impl Shape {
    pub fn len(&self) -> usize {
        self.c as usize * self.h as usize * self.w as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// TensorFlow 'SAME' padding (before, after) for one dimension of `n` pixels, kernel `k`,
/// stride `s`. The odd pixel goes after:
///
/// ```
/// use stylestream::model::description::same_pad;
/// assert_eq!(same_pad(256, 9, 1), (4, 4));
/// assert_eq!(same_pad(256, 3, 2), (0, 1)); // asymmetric: not PyTorch's padding=1
/// assert_eq!(same_pad(255, 3, 2), (1, 1));
/// ```
pub fn same_pad(n: u32, k: u32, s: u32) -> (u32, u32) {
    let out = n.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(n);
    (total / 2, total - total / 2)
}

impl Layer {
    /// Output height or width for an input dimension `n`.
    pub fn out_dim(&self, n: u32) -> u32 {
        match self.op {
            Op::ConvTranspose => 2 * n,
            Op::Conv => {
                let n = n * self.upsample;
                match self.padding {
                    Padding::Same => n.div_ceil(self.stride),
                    Padding::Reflect => (n + 2 * (self.kernel / 2) - self.kernel) / self.stride + 1,
                }
            }
        }
    }

    /// Padding (top/left) applied before the first tap, for an input dimension `n`.
    pub fn pad_before(&self, n: u32) -> u32 {
        match self.padding {
            Padding::Same => same_pad(n * self.upsample, self.kernel, self.stride).0,
            Padding::Reflect => self.kernel / 2,
        }
    }

    /// Expected weight tensor shape.
    pub fn weight_shape(&self) -> [usize; 4] {
        let (i, o, k) = (self.in_channels as usize, self.out_channels as usize, self.kernel as usize);
        match self.op {
            Op::Conv => [o, i, k, k],
            Op::ConvTranspose => [i, o, k, k],
        }
    }
}

impl NetworkDescription {
    /// Parses and validates a description.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ModelError> {
        let desc: Self = toml::from_str(text)
            .map_err(|e| ModelError::Description { origin: origin.to_string(), reason: e.to_string() })?;
        desc.validate(origin)?;
        Ok(desc)
    }

    /// Reads a description file.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ModelError::Read { path: path.to_path_buf(), source: e })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// A built-in description by name (`transformnet-tf`, `transformnet-torch`), or a file path.
    pub fn load(name_or_path: &str) -> Result<Self, ModelError> {
        match name_or_path {
            "transformnet-tf" => Self::from_toml(TRANSFORMNET_TF, "transformnet-tf"),
            "transformnet-torch" => Self::from_toml(TRANSFORMNET_TORCH, "transformnet-torch"),
            path => Self::from_file(Path::new(path)),
        }
    }

    /// Checks the structure: channel chain, unique names, residual shapes, supported ops.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::Description { origin: origin.to_string(), reason };
        if self.layers.is_empty() {
            return Err(bad("the network has no layers".into()));
        }
        if !self.input_scale.is_finite() || self.input_scale <= 0.0 {
            return Err(bad(format!("input_scale = {} must be a positive number", self.input_scale)));
        }
        if let OutputTransform::Tanh { scale, offset }
        | OutputTransform::Sigmoid { scale, offset }
        | OutputTransform::Linear { scale, offset } = self.output
        {
            if !scale.is_finite() || !offset.is_finite() {
                return Err(bad("output scale and offset must be finite".into()));
            }
        }
        if self.input_channels != 3 {
            return Err(bad(format!("input_channels = {}: only RGB (3) is supported", self.input_channels)));
        }
        let last = &self.layers[self.layers.len() - 1];
        if last.out_channels != 3 {
            return Err(bad(format!("the last layer `{}` must output 3 channels", last.name)));
        }
        let mut channels = self.input_channels;
        // Shape relation to the input, as (channels, downscale numerator, denominator).
        let mut scale = (1u32, 1u32);
        let mut seen: Vec<(&str, u32, (u32, u32))> = Vec::new();
        for l in &self.layers {
            let name = l.name.as_str();
            if seen.iter().any(|(n, _, _)| *n == name) {
                return Err(bad(format!("layer name `{name}` is used twice")));
            }
            if l.in_channels != channels {
                return Err(bad(format!(
                    "layer `{name}` expects {} input channels but receives {channels}",
                    l.in_channels
                )));
            }
            if l.kernel == 0 || l.kernel > 11 || l.kernel % 2 == 0 {
                return Err(bad(format!("layer `{name}`: kernel {} must be odd, 1..=11", l.kernel)));
            }
            if !(1..=2).contains(&l.stride) || !(1..=2).contains(&l.upsample) {
                return Err(bad(format!("layer `{name}`: stride and upsample must be 1 or 2")));
            }
            if l.op == Op::ConvTranspose && (l.stride != 2 || l.padding != Padding::Same || l.upsample != 1) {
                return Err(bad(format!(
                    "layer `{name}`: conv_transpose supports stride 2, padding \"same\", no upsample"
                )));
            }
            if let Some(n) = &l.norm {
                if !n.eps.is_finite() || n.eps <= 0.0 {
                    return Err(bad(format!("layer `{name}`: norm eps must be > 0")));
                }
            }
            scale = match l.op {
                Op::ConvTranspose => (scale.0 * 2, scale.1),
                Op::Conv => (scale.0 * l.upsample, scale.1 * l.stride),
            };
            let g = gcd(scale.0, scale.1);
            scale = (scale.0 / g, scale.1 / g);
            if let Some(r) = &l.residual {
                match seen.iter().find(|(n, _, _)| n == r) {
                    None => return Err(bad(format!("layer `{name}`: residual `{r}` is not an earlier layer"))),
                    Some((_, c, s)) if *c != l.out_channels || *s != scale => {
                        return Err(bad(format!("layer `{name}`: residual `{r}` has a different shape")))
                    }
                    _ => {}
                }
            }
            channels = l.out_channels;
            seen.push((name, channels, scale));
        }
        if scale != (1, 1) {
            return Err(bad("the output size must equal the input size".into()));
        }
        Ok(())
    }

    /// Frame sizes must be a multiple of this for the network to map W x H to W x H exactly.
    pub fn size_multiple(&self) -> u32 {
        let mut m = 1;
        let mut down = 1u32;
        for l in &self.layers {
            if l.op == Op::Conv && l.stride > 1 {
                down *= l.stride;
                m = m.max(down);
            }
            if l.op == Op::ConvTranspose || l.upsample > 1 {
                down = (down / 2).max(1);
            }
        }
        m
    }

    /// The smallest working dimension the network accepts: reflection padding needs every
    /// padded activation to be larger than its padding. A multiple of `size_multiple`.
    pub fn min_size(&self) -> u32 {
        let m = self.size_multiple();
        // The input dimension is `down` times the dimension at the current layer's input.
        let mut down = 1u32;
        let mut need = 1u32;
        for l in &self.layers {
            if l.padding == Padding::Reflect {
                need = need.max((l.kernel / 2 + 1).div_ceil(l.upsample) * down);
            }
            match l.op {
                Op::Conv => down = (down * l.stride / l.upsample).max(1),
                Op::ConvTranspose => down = (down / 2).max(1),
            }
        }
        need.div_ceil(m) * m
    }

    /// Shapes of every layer's output for an input of `h x w`.
    pub fn shapes(&self, h: u32, w: u32) -> Vec<Shape> {
        let mut s = Shape { c: self.input_channels, h, w };
        self.layers
            .iter()
            .map(|l| {
                s = Shape { c: l.out_channels, h: l.out_dim(s.h), w: l.out_dim(s.w) };
                s
            })
            .collect()
    }

    /// Multiply-adds per output pixel (126,144 for the TensorFlow TransformNet).
    pub fn macs_per_pixel(&self) -> f64 {
        let (mut h, mut w) = (64u32, 64u32);
        let mut total = 0f64;
        for l in &self.layers {
            let (oh, ow) = (l.out_dim(h), l.out_dim(w));
            let taps = match l.op {
                // Each input pixel feeds k*k outputs, averaged over the 4 output phases.
                Op::ConvTranspose => (l.kernel * l.kernel) as f64 / 4.0,
                Op::Conv => (l.kernel * l.kernel) as f64,
            };
            total += oh as f64 * ow as f64 * taps * l.in_channels as f64 * l.out_channels as f64;
            (h, w) = (oh, ow);
        }
        total / (64.0 * 64.0)
    }

    /// Index of a layer by name.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_description_matches_the_published_cost() {
        let d = NetworkDescription::load("transformnet-tf").unwrap();
        assert_eq!(d.layers.len(), 16);
        assert_eq!(d.size_multiple(), 4);
        assert_eq!(d.macs_per_pixel(), 126_144.0);
        let s = d.shapes(144, 256);
        assert_eq!(s[2], Shape { c: 128, h: 36, w: 64 });
        assert_eq!(*s.last().unwrap(), Shape { c: 3, h: 144, w: 256 });
    }

    #[test]
    fn torch_description_matches_the_published_cost() {
        let d = NetworkDescription::load("transformnet-torch").unwrap();
        assert_eq!(d.macs_per_pixel(), 153_792.0);
        assert_eq!(d.min_size(), 8);
        assert_eq!(*d.shapes(48, 64).last().unwrap(), Shape { c: 3, h: 48, w: 64 });
    }

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(same_pad(10, 9, 1), (4, 4));
        assert_eq!(same_pad(10, 3, 2), (0, 1));
        assert_eq!(same_pad(11, 3, 2), (1, 1));
    }

    #[test]
    fn bad_descriptions_are_refused_with_the_layer_named() {
        let text = TRANSFORMNET_TF.replace("in_channels = 32\n", "in_channels = 31\n");
        let e = NetworkDescription::from_toml(&text, "x").unwrap_err().to_string();
        assert!(e.contains("conv2") && e.contains("31"), "{e}");
        let text = TRANSFORMNET_TF.replace("residual = \"conv3\"", "residual = \"conv9\"");
        let e = NetworkDescription::from_toml(&text, "x").unwrap_err().to_string();
        assert!(e.contains("conv9"), "{e}");
        let text = TRANSFORMNET_TF.replace("stride = 1\n", "stride = 1\nfoo = 2\n");
        let e = NetworkDescription::from_toml(&text, "x").unwrap_err().to_string();
        assert!(e.contains("foo"), "{e}");
    }
}
