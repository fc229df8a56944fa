//! Weight layouts for the GPU kernels.
//!
//! Convolution weights are regrouped into blocks of output channels (16, or 4 for the narrow
//! kernel) so that one invocation reads the weights of all its output channels for one
//! (tap, input channel) as consecutive vec4s: `[oc_block][ky][kx][ic][block]`, zero-filled
//! past `out_c`.

use crate::model::description::{Layer, Op};

/// Whether a layer uses the narrow conv kernel (4 output channels x 32 pixels per invocation)
/// rather than the wide one (16 x 8): layers with fewer than 16 output channels, such as the
/// final 32 -> 3 layer, which would otherwise compute 13 zero channels of every 16.
pub(super) fn narrow(layer: &Layer) -> bool {
    layer.op == Op::Conv && layer.out_channels < 16
}

/// Output channels per weight block.
pub(super) fn block_channels(layer: &Layer) -> u32 {
    if narrow(layer) {
        4
    } else {
        16
    }
}

/// Input channels as the kernels see them: rounded up to a multiple of 4 (vec4 loads).
pub(super) fn gpu_channels(c: u32) -> u32 {
    c.div_ceil(4) * 4
}

/// Regroups OIHW (conv) or IOHW (conv_transpose) weights into the kernel's block layout, with
/// the input channels zero-padded to `gpu_channels`.
pub(super) fn blocked(layer: &Layer, w: &[f32]) -> Vec<f32> {
    let (k, cin, cout) = (layer.kernel as usize, layer.in_channels as usize, layer.out_channels as usize);
    let cin_pad = gpu_channels(layer.in_channels) as usize;
    let ocb = block_channels(layer) as usize;
    let blocks = cout.div_ceil(ocb);
    let mut out = vec![0f32; blocks * k * k * cin_pad * ocb];
    for oc in 0..cout {
        for ic in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    let src = match layer.op {
                        Op::Conv => ((oc * cin + ic) * k + ky) * k + kx,
                        Op::ConvTranspose => ((ic * cout + oc) * k + ky) * k + kx,
                    };
                    let (b, o) = (oc / ocb, oc % ocb);
                    out[(((b * k + ky) * k + kx) * cin_pad + ic) * ocb + o] = w[src];
                }
            }
        }
    }
    out
}

/// `blocked` for `conv2d_subgroup`'s `main_wino` (3 x 3, wide blocks): each kernel row's 3 taps
/// g0, g1, g2 become the 4 of Winograd F(2, 3), g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2:
/// `[oc_block][ky][4][ic][16]`.
pub(super) fn blocked_wino(layer: &Layer, w: &[f32]) -> Vec<f32> {
    let b = blocked(layer, w);
    let row = gpu_channels(layer.in_channels) as usize * block_channels(layer) as usize;
    let mut out = Vec::with_capacity(b.len() / 3 * 4);
    for taps in b.chunks_exact(3 * row) {
        let (g0, rest) = taps.split_at(row);
        let (g1, g2) = rest.split_at(row);
        out.extend_from_slice(g0);
        out.extend(g0.iter().zip(g1).zip(g2).map(|((a, b), c)| (a + b + c) * 0.5));
        out.extend(g0.iter().zip(g1).zip(g2).map(|((a, b), c)| (a - b + c) * 0.5));
        out.extend_from_slice(g2);
    }
    out
}

/// The bias padded to whole blocks (zeros when the layer has none).
pub(super) fn blocked_bias(layer: &Layer, bias: Option<&[f32]>) -> Vec<f32> {
    let ocb = block_channels(layer) as usize;
    let mut out = vec![0f32; (layer.out_channels as usize).div_ceil(ocb) * ocb];
    if let Some(b) = bias {
        out[..b.len()].copy_from_slice(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::description::{Activation, Padding};

    /// Winograd F(2, 3) with `blocked_wino`'s taps gives the direct 3-tap products.
    #[test]
    fn winograd_taps_reproduce_the_direct_convolution_of_a_pixel_pair() {
        let layer = Layer {
            name: "c".into(),
            op: Op::Conv,
            kernel: 3,
            stride: 1,
            upsample: 1,
            padding: Padding::Reflect,
            in_channels: 1,
            out_channels: 16,
            weight: "w".into(),
            bias: None,
            norm: None,
            activation: Activation::None,
            residual: None,
        };
        // OIHW, one input channel: channel o's row ky is (o + ky, 2 - o * 0.5, 0.25 * ky).
        let w: Vec<f32> = (0..16)
            .flat_map(|o| (0..3).flat_map(move |ky| [(o + ky) as f32, 2.0 - o as f32 * 0.5, 0.25 * ky as f32]))
            .collect();
        let t = blocked_wino(&layer, &w);
        assert_eq!(t.len(), 3 * 4 * 4 * 16);
        let d = [0.5f32, -1.25, 2.0, 3.5];
        for ky in 0..3 {
            // Tap j of row ky, input channel 0 (of 4), output channel o.
            let g = |j: usize, o: usize| t[((ky * 4 + j) * 4) * 16 + o];
            for o in 0..16 {
                let row = &w[(o * 3 + ky) * 3..][..3];
                let direct0 = row[0] * d[0] + row[1] * d[1] + row[2] * d[2];
                let direct1 = row[0] * d[1] + row[1] * d[2] + row[2] * d[3];
                let m1 = g(1, o) * (d[1] + d[2]);
                let m2 = g(2, o) * (d[2] - d[1]);
                let y0 = g(0, o) * (d[0] - d[2]) + m1 + m2;
                let y1 = m1 - m2 - g(3, o) * (d[1] - d[3]);
                assert!((y0 - direct0).abs() < 1e-4, "row {ky} channel {o}: {y0} vs {direct0}");
                assert!((y1 - direct1).abs() < 1e-4, "row {ky} channel {o}: {y1} vs {direct1}");
            }
        }
    }
}
