//! Where the cooperative-matrix GEMMs (`conv2d_coop`, `conv_transpose2d_coop`) take a layer of
//! the `coop` kernel set, with what specialisation, and their dispatch geometry (see
//! shaders/gemm_coop.wgsl). The 9x9 layers stay on the register-blocked kernels: the first has 3
//! input channels (4 with padding, where a stage of the GEMM takes 16 or 32 of one tap), the
//! last 3 output channels (where a tile has 64).

use super::build::Builder;
use crate::model::description::{Layer, Op, Shape};
use crate::model::gpu::kernels::Kernel;
use crate::model::gpu::precision::StoragePrecision;
use crate::model::gpu::weights::narrow;

/// Pixels and output channels of a GEMM workgroup's tile (`TM`, `TN` in gemm_coop.wgsl).
pub(super) const TILE: (u32, u32) = (64, 64);

/// One layer as a cooperative-matrix GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CoopGemm {
    pub(super) kernel: Kernel,
    /// The device's subgroup size (override `SG`: a workgroup is 4 subgroups).
    pub(super) subgroup: u32,
    /// Input channels per stage of the depth (override `TK`): 32 where they divide in_c, else 16.
    pub(super) tk: u32,
}

impl Builder<'_> {
    /// The GEMM that runs layer `l` (input shape `input`) in this plan, if any: in f16 plans of the
    /// `coop` set on a device with cooperative matrices, the convolutions with 16 or more output
    /// channels and the transposed convolutions, where the input channels are a multiple of 16.
    pub(super) fn coop_gemm(&self, l: &Layer, input: Shape) -> Option<CoopGemm> {
        let subgroup = *self.ctx.coop.as_ref().ok()?;
        if !self.variant.coop() || self.precision != StoragePrecision::F16 || !input.c.is_multiple_of(16) {
            return None;
        }
        let kernel = match l.op {
            Op::Conv if !narrow(l) => Kernel::Conv2dCoop,
            Op::Conv => return None,
            Op::ConvTranspose => Kernel::ConvTranspose2dCoop,
        };
        Some(CoopGemm { kernel, subgroup, tk: if input.c.is_multiple_of(32) { 32 } else { 16 } })
    }
}

impl CoopGemm {
    /// Workgroups of output rows `[r0, r1)` of an output of shape `out`: (x, output channel
    /// tiles, z) with x * z pixel tiles (x at most 65,535); for the transposed conv z is 4 times
    /// that, one set per output phase, each as many as the largest phase needs.
    pub(super) fn workgroups(&self, out: Shape, r0: u32, r1: u32) -> [u32; 3] {
        let pixels = match self.kernel {
            Kernel::ConvTranspose2dCoop => phase_pixels(out.w, r0, r1).into_iter().max().unwrap_or(0),
            _ => (r1 - r0) * out.w,
        };
        let tiles = pixels.div_ceil(TILE.0).max(1);
        let x = tiles.min(65_535);
        let z = tiles.div_ceil(x);
        let phases = if self.kernel == Kernel::ConvTranspose2dCoop { 4 } else { 1 };
        [x, out.c.div_ceil(TILE.1), phases * z]
    }
}

/// Output pixels of each phase (py, px) = (0, 0), (0, 1), (1, 0), (1, 1) among rows `[r0, r1)`
/// of a `width`-column output: rows of parity py times columns of parity px.
pub(super) fn phase_pixels(width: u32, r0: u32, r1: u32) -> [u32; 4] {
    let rows = |py: u32| (r0..r1).filter(|r| r % 2 == py).count() as u32;
    let cols = |px: u32| (width + 1 - px) / 2;
    [rows(0) * cols(0), rows(0) * cols(1), rows(1) * cols(0), rows(1) * cols(1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_cover_every_output_pixel_once() {
        for (w, r0, r1) in [(8u32, 0u32, 6u32), (7, 1, 6), (1, 0, 1), (5, 3, 4)] {
            let p = phase_pixels(w, r0, r1);
            assert_eq!(p.iter().sum::<u32>(), w * (r1 - r0), "{w} x [{r0}, {r1}): {p:?}");
        }
        assert_eq!(phase_pixels(1, 0, 2), [1, 0, 1, 0]);
    }

    #[test]
    fn workgroups_cover_the_largest_phase() {
        let out = Shape { c: 32, h: 144, w: 256 };
        let g = CoopGemm { kernel: Kernel::ConvTranspose2dCoop, subgroup: 32, tk: 32 };
        // 72 x 128 pixels per phase: 144 tiles of 64, one output channel tile, 4 phases.
        assert_eq!(g.workgroups(out, 0, 144), [144, 1, 4]);
        let c = CoopGemm { kernel: Kernel::Conv2dCoop, ..g };
        assert_eq!(c.workgroups(Shape { c: 128, h: 36, w: 64 }, 0, 36), [36, 2, 1]);
    }
}
