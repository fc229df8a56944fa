//! Pad, Upsample and Resize nodes: what may stand in front of a convolution (reflection or
//! TensorFlow-'SAME' zero padding, nearest 2x upsampling), recorded on the conv's input.

use super::{activation, bad, constant, optional_constant, unfoldable, Act, Builder, PadMode, Src, Sym, Val};
use crate::model::onnx::fold::{attr, attr_ints, attr_s};
use crate::model::onnx::proto::Node;
use crate::model::onnx::OnnxError;

impl Builder {
    pub(super) fn pad(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let (src, upsample) = match a.sym {
            Sym::Src(s) => (s, 1),
            Sym::Pre { src, upsample, pad: None } => (src, upsample),
            _ => return Err(bad(node, "a Pad must come straight before a convolution (after an optional upsample)")),
        };
        let mode = attr_s(node, "mode").unwrap_or_else(|| "constant".into());
        let (pads, value) = if self.opset < 11 {
            let p =
                attr_ints(node, "pads").or_else(|| attr_ints(node, "paddings")).ok_or_else(|| bad(node, "no pads"))?;
            (p, attr(node, "value").and_then(|a| a.f).unwrap_or(0.0) as f64)
        } else {
            let p = constant(node, args, 1, "pads")?.as_i64("pads").map_err(|e| unfoldable(node, e))?;
            let v = optional_constant(node, args, 2, "constant_value")?.and_then(|c| c.uniform()).unwrap_or(0.0);
            let p = match optional_constant(node, args, 3, "axes")? {
                None => p,
                Some(axes) => {
                    let axes = axes.as_i64("axes").map_err(|e| unfoldable(node, e))?;
                    if p.len() != 2 * axes.len() {
                        return Err(bad(node, "pads and axes lengths disagree"));
                    }
                    let mut full = vec![0i64; 8];
                    for (i, &ax) in axes.iter().enumerate() {
                        let ax = if ax < 0 { ax + 4 } else { ax };
                        if !(0..4).contains(&ax) {
                            return Err(bad(node, format!("axis {ax} out of range")));
                        }
                        full[ax as usize] = p[i];
                        full[ax as usize + 4] = p[i + axes.len()];
                    }
                    full
                }
            };
            (p, v)
        };
        if pads.len() != 8
            || pads[0] != 0
            || pads[1] != 0
            || pads[4] != 0
            || pads[5] != 0
            || pads.iter().any(|&p| !(0..=64).contains(&p))
        {
            return Err(bad(
                node,
                format!("pads {pads:?}: only non-negative padding of height and width (up to 64) is supported"),
            ));
        }
        let mode = match mode.as_str() {
            "reflect" => PadMode::Reflect,
            "constant" if value == 0.0 => PadMode::Zero,
            "constant" => return Err(bad(node, format!("constant padding with {value} (only 0 is supported)"))),
            other => {
                return Err(bad(
                    node,
                    format!("{other} padding is not supported by the kernels (reflect and zero are)"),
                ))
            }
        };
        let p = [pads[2], pads[3], pads[6], pads[7]];
        if mode == PadMode::Reflect
            && (p[0] >= a.shape[2] || p[2] >= a.shape[2] || p[1] >= a.shape[3] || p[3] >= a.shape[3])
        {
            return Err(bad(node, "reflection pads must be smaller than the image"));
        }
        let shape = [a.shape[0], a.shape[1], a.shape[2] + p[0] + p[2], a.shape[3] + p[1] + p[3]];
        Ok(Val::A(Act { shape, sym: Sym::Pre { src, upsample, pad: Some((mode, p)) } }))
    }

    pub(super) fn upsample(&mut self, node: &Node<'_>, args: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let a = activation(node, args)?;
        let Sym::Src(src) = a.sym else {
            return Err(bad(node, "upsampling must come before padding, straight after a layer"));
        };
        if let Src::Layer { idx, stage } = src {
            if !self.current(idx, stage) || idx + 1 != self.layers.len() {
                return Err(bad(node, "its input is not the newest layer's output"));
            }
        }
        let mode = attr_s(node, "mode").unwrap_or_else(|| "nearest".into());
        if mode != "nearest" {
            return Err(bad(node, format!("mode `{mode}`: only nearest upsampling is supported")));
        }
        let (h, w) = (a.shape[2], a.shape[3]);
        let mut axes_note = String::new();
        let target: Vec<f64> = if node.op_type == "Upsample" {
            match attr(node, "scales") {
                Some(s) if !s.floats.is_empty() => s.floats.iter().map(|&v| v as f64).collect(),
                _ => constant(node, args, 1, "scales")?.as_f64(),
            }
        } else {
            let (si, zi) = if self.opset < 11 { (1, usize::MAX) } else { (2, 3) };
            let scales = optional_constant(node, args, si, "scales")?;
            let sizes = optional_constant(node, args, zi, "sizes")?;
            let mut v = match (scales, sizes) {
                (Some(s), _) => s.as_f64(),
                (None, Some(z)) => {
                    let z = z.as_f64();
                    let full = [a.shape[0] as f64, a.shape[1] as f64, h as f64, w as f64];
                    let off = 4usize.saturating_sub(z.len());
                    z.iter().enumerate().map(|(i, &n)| n / full[(i + off).min(3)]).collect()
                }
                (None, None) => return Err(bad(node, "neither scales nor sizes given")),
            };
            if let Some(axes) = attr_ints(node, "axes") {
                let mut full = vec![1.0; 4];
                for (i, &ax) in axes.iter().enumerate() {
                    let ax = if ax < 0 { ax + 4 } else { ax };
                    if let (Some(slot), Some(&s)) = (full.get_mut(ax as usize), v.get(i)) {
                        *slot = s;
                    }
                }
                v = full;
                axes_note = format!(" (axes {axes:?})");
            }
            let (ctm, nearest) = if self.opset < 11 {
                ("asymmetric".to_string(), "floor".to_string())
            } else {
                (
                    attr_s(node, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into()),
                    attr_s(node, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into()),
                )
            };
            if !nearest_is_repeat(&ctm, &nearest) {
                return Err(bad(node, format!(
                    "coordinate_transformation_mode `{ctm}` with nearest_mode `{nearest}` is not a plain 2x pixel repeat"
                )));
            }
            v
        };
        if target != [1.0, 1.0, 2.0, 2.0] {
            let why = format!(
                "scales {target:?}{axes_note} at {h}x{w}: only nearest 2x upsampling of height and width is supported"
            );
            return Err(bad(node, why));
        }
        Ok(Val::A(Act { shape: [a.shape[0], a.shape[1], 2 * h, 2 * w], sym: Sym::Pre { src, upsample: 2, pad: None } }))
    }
}

/// Whether Resize's coordinate rule, at scale 2, maps output pixel i to input pixel i / 2
/// (checked at several input sizes).
fn nearest_is_repeat(ctm: &str, nearest: &str) -> bool {
    [2usize, 3, 8, 9].iter().all(|&n| {
        let n_in = n as f64;
        (0..2 * n).all(|i| {
            let i = i as f64;
            let x = match ctm {
                "half_pixel" | "pytorch_half_pixel" => (i + 0.5) / 2.0 - 0.5,
                "asymmetric" => i / 2.0,
                "tf_half_pixel_for_nn" => (i + 0.5) / 2.0,
                "align_corners" => i * (n_in - 1.0) / (2.0 * n_in - 1.0),
                _ => return false,
            };
            let r = match nearest {
                "floor" => x.floor(),
                "ceil" => x.ceil(),
                "round_prefer_floor" => {
                    if x.fract() == 0.5 {
                        x.floor()
                    } else {
                        x.round()
                    }
                }
                "round_prefer_ceil" => {
                    if x.fract() == 0.5 {
                        x.ceil()
                    } else {
                        x.round()
                    }
                }
                _ => return false,
            };
            r.clamp(0.0, n_in - 1.0) == (i / 2.0).floor()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_modes_that_repeat_pixels() {
        assert!(nearest_is_repeat("asymmetric", "floor"));
        assert!(nearest_is_repeat("half_pixel", "round_prefer_floor"));
        assert!(nearest_is_repeat("pytorch_half_pixel", "round_prefer_ceil"));
        assert!(!nearest_is_repeat("asymmetric", "ceil"));
        // align_corners rounds to the repeat too at scale 2 (x = j + (n-1-j)/(2n-1)); ceil does not.
        assert!(nearest_is_repeat("align_corners", "round_prefer_floor"));
        assert!(!nearest_is_repeat("align_corners", "ceil"));
        assert!(!nearest_is_repeat("half_pixel", "floor"));
    }
}
