//! Weight layouts for the GPU kernels.
//!
//! Convolution weights are regrouped into blocks of `OCB4 * 4` output channels so that one
//! invocation reads the weights of all its output channels for one (tap, input channel) as
//! `OCB4` consecutive vec4s: `[oc_block][ky][kx][ic][OCB4 * 4]`, zero-filled past `out_c`.

use crate::model::description::{Layer, Op};

/// Vec4 groups of output channels per invocation for a layer with `out_c` channels.
/// At least 2: with 1 (32 pixels per invocation) lavapipe computed wrong results for the
/// 9x9 32->3 layer (seen with Mesa 22.3; not investigated further).
pub(super) fn ocb4(out_c: u32) -> u32 {
    if out_c >= 16 {
        4
    } else {
        2
    }
}

/// Regroups OIHW (conv) or IOHW (conv_transpose) weights into the kernel's block layout.
pub(super) fn blocked(layer: &Layer, w: &[f32]) -> Vec<f32> {
    let (k, cin, cout) = (layer.kernel as usize, layer.in_channels as usize, layer.out_channels as usize);
    let ocb = ocb4(layer.out_channels) as usize * 4;
    let blocks = cout.div_ceil(ocb);
    let mut out = vec![0f32; blocks * k * k * cin * ocb];
    for oc in 0..cout {
        for ic in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    let src = match layer.op {
                        Op::Conv => ((oc * cin + ic) * k + ky) * k + kx,
                        Op::ConvTranspose => ((ic * cout + oc) * k + ky) * k + kx,
                    };
                    let (b, o) = (oc / ocb, oc % ocb);
                    out[(((b * k + ky) * k + kx) * cin + ic) * ocb + o] = w[src];
                }
            }
        }
    }
    out
}

/// The bias padded to whole blocks (zeros when the layer has none).
pub(super) fn blocked_bias(layer: &Layer, bias: Option<&[f32]>) -> Vec<f32> {
    let ocb = ocb4(layer.out_channels) as usize * 4;
    let mut out = vec![0f32; (layer.out_channels as usize).div_ceil(ocb) * ocb];
    if let Some(b) = bias {
        out[..b.len()].copy_from_slice(b);
    }
    out
}
