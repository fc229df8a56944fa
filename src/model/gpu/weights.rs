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

/// The bias padded to whole blocks (zeros when the layer has none).
pub(super) fn blocked_bias(layer: &Layer, bias: Option<&[f32]>) -> Vec<f32> {
    let ocb = block_channels(layer) as usize;
    let mut out = vec![0f32; (layer.out_channels as usize).div_ceil(ocb) * ocb];
    if let Some(b) = bias {
        out[..b.len()].copy_from_slice(b);
    }
    out
}
