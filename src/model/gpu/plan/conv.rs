//! The convolution op (`conv2d`, `conv2d_subgroup`, `conv2d_tiled`, `conv_transpose2d`,
//! `conv_transpose2d_subgroup`, and the cooperative-matrix GEMMs `conv2d_coop`,
//! `conv_transpose2d_coop` whose geometry is in `coop`): its parameter struct, the rows each
//! output band reads, the kernel and entry point per layer and its dispatch geometry.

use bytemuck::{Pod, Zeroable};

use super::build::Builder;
use super::norm::NormScratch;
use super::{entry, storage};
use crate::model::description::{Activation, Layer, NetworkDescription, Op, Padding, Shape};
use crate::model::gpu::kernels::{Kernel, Overrides};
use crate::model::gpu::precision::StoragePrecision;
use crate::model::gpu::weights::{block_channels, blocked, blocked_bias, blocked_wino, narrow};
use crate::model::gpu::GpuError;
use crate::model::weights::Weights;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct ConvParams {
    pub(super) in_w: u32,
    pub(super) in_h: u32,
    pub(super) in_c: u32,
    pub(super) in_row0: u32,
    pub(super) out_w: u32,
    pub(super) out_h: u32,
    pub(super) out_c: u32,
    pub(super) out_row0: u32,
    pub(super) band_rows: u32,
    pub(super) in_shift: u32,
    pub(super) out_shift: u32,
    pub(super) oc_blocks: u32,
    pub(super) pad_top: i32,
    pub(super) pad_left: i32,
    /// First workgroup of this band in the layer's epilogue statistics (conv2d_subgroup STATS).
    pub(super) stats_base: u32,
    /// Width of a workgroup's tile in pixel groups (`grid` in conv_common.wgsl; `tile_width`).
    pub(super) tile_w: u32,
}

/// Where a convolution kernel reads its weights (binding 2).
enum WeightsIn {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Builder<'_> {
    /// Input rows `[a, b)` that output rows `[r0, r1)` of `layer` read.
    pub(super) fn input_rows(layer: &Layer, input: Shape, r0: u32, r1: u32) -> (u32, u32) {
        let k = layer.kernel as i64;
        let n = input.h as i64;
        match layer.op {
            Op::ConvTranspose => {
                let a = ((r0 as i64 - k + 1).max(0) + 1) / 2;
                let b = ((r1 as i64 - 1) / 2 + 1).min(n);
                (a.min(b) as u32, b as u32)
            }
            Op::Conv => {
                let (s, up) = (layer.stride as i64, layer.upsample as i64);
                let pt = layer.pad_before(input.h) as i64;
                let virt = n * up;
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                for v in (r0 as i64 * s - pt)..((r1 as i64 - 1) * s - pt + k) {
                    let m = match layer.padding {
                        Padding::Same if !(0..virt).contains(&v) => continue,
                        Padding::Same => v,
                        Padding::Reflect => (if v < 0 {
                            -v
                        } else if v >= virt {
                            2 * (virt - 1) - v
                        } else {
                            v
                        })
                        .clamp(0, virt - 1),
                    };
                    lo = lo.min(m / up);
                    hi = hi.max(m / up);
                }
                if lo > hi {
                    (0, 1)
                } else {
                    (lo as u32, hi as u32 + 1)
                }
            }
        }
    }

    pub(super) fn layer(
        &mut self,
        index: usize,
        l: &Layer,
        desc: &NetworkDescription,
        weights: &Weights,
        scratch: &NormScratch,
    ) -> Result<(), GpuError> {
        let (tin, tout) = (self.tensors[index], self.tensors[index + 1]);
        let (is, os) = (tin.shape, tout.shape);
        // The previous layer's deferred norm, applied by this convolution as it loads.
        let pending = self.pending.take();
        if pending.is_some() && l.op != Op::Conv {
            return Err(GpuError::Unsupported(format!("layer `{}` cannot apply the previous layer's norm", l.name)));
        }
        let norm_in = pending.as_ref().map_or(&self.placeholder, |(c, _)| c).clone();
        let narrow = narrow(l);
        // The tiled implicit GEMM (tile TM x TN) takes the K x K layers with 16k input channels.
        let tile = self.variant.tile().filter(|_| l.op == Op::Conv && !narrow && is.c % 16 == 0);
        // The cooperative-matrix GEMMs take the layers they fit; the others run on the subgroup
        // kernels where the device has subgroups (plain ones elsewhere).
        let coop = self.coop_gemm(l, is);
        let subgroups = self.variant.subgroups() || (self.variant.coop() && self.ctx.subgroups);
        let kernel = match (l.op, coop) {
            (_, Some(g)) => g.kernel,
            (Op::Conv, None) if tile.is_some() => Kernel::Conv2dTiled,
            (Op::Conv, None) if subgroups => Kernel::Conv2dSubgroup,
            (Op::Conv, None) => Kernel::Conv2d,
            (Op::ConvTranspose, None) if subgroups => Kernel::ConvTranspose2dSubgroup,
            (Op::ConvTranspose, None) => Kernel::ConvTranspose2d,
        };
        // The subgroup kernel slides a window of input pixels along each kernel row (its narrow
        // tile, stride 1 only, is then 16 pixels wide, not 32); the wide 3 x 3 stride-1 ones take
        // Winograd F(2, 3) along the row.
        let slide = kernel == Kernel::Conv2dSubgroup && l.stride == 1;
        let wino = slide && !narrow && l.kernel == 3;
        let blocked_weights =
            if wino { blocked_wino(l, weights.get(&l.weight)) } else { blocked(l, weights.get(&l.weight)) };
        // The subgroup kernels read their weights from a texture, the others from a storage
        // buffer (f16 in f16 plans).
        let label = format!("{} weights", l.name);
        let weights_in = if matches!(kernel, Kernel::Conv2dSubgroup | Kernel::ConvTranspose2dSubgroup) {
            WeightsIn::Texture(self.weight_texture(&label, &blocked_weights)?)
        } else if self.precision == StoragePrecision::F16 {
            WeightsIn::Buffer(self.init_f16(&label, &blocked_weights))
        } else {
            WeightsIn::Buffer(self.init(&label, &blocked_weights))
        };
        let bbuf = self.init(&format!("{} bias", l.name), &blocked_bias(l, l.bias.as_ref().map(|b| weights.get(b))));
        let oc_blocks = l.out_channels.div_ceil(block_channels(l));
        let pxn = match (narrow, slide) {
            _ if wino => 4,
            (true, true) => 16,
            (true, false) => 32,
            (false, _) => 8,
        };
        let bands = self.bands(os.h, &l.name, |r0, r1| {
            let (a, b) = Self::input_rows(l, is, r0, r1);
            vec![self.window(tin, a, b).size, self.window(tout, r0, r1).size]
        })?;
        // The wide subgroup kernel and the GEMMs compute their output's norm statistics in their
        // epilogue.
        let epilogue = ((kernel == Kernel::Conv2dSubgroup && !narrow) || coop.is_some())
            && l.norm.is_some()
            && self.variant.fused_norm();
        let cols = match l.op {
            Op::Conv => os.w.div_ceil(pxn),
            Op::ConvTranspose => os.w.div_ceil(2).div_ceil(pxn),
        };
        // z: the oc block, and for the transposed kernels the column parity (and, in the
        // subgroup one, the row parity: each parity's rows are then half the band).
        let (z, row_split) = match kernel {
            Kernel::ConvTranspose2dSubgroup => (4 * oc_blocks, 2),
            // main_narrow_slide: two output rows per invocation.
            _ if slide && narrow => (oc_blocks, 2),
            Kernel::ConvTranspose2d => (2 * oc_blocks, 1),
            _ => (oc_blocks, 1),
        };
        // The subgroup kernels return at once from a subgroup with no row in the band.
        let idle_exit = matches!(kernel, Kernel::Conv2dSubgroup | Kernel::ConvTranspose2dSubgroup);
        let tw = tile_width(cols, os.h.div_ceil(row_split), idle_exit);
        let workgroups = |r0: u32, r1: u32| match (coop, tile) {
            (Some(g), _) => g.workgroups(os, r0, r1),
            (None, Some((tm, tn))) => {
                // TM-pixel tiles over x (and z past 65,535 of them), TN-channel tiles over y.
                let tiles = ((r1 - r0) * os.w).div_ceil(tm);
                let x = tiles.min(65_535);
                [x, os.c.div_ceil(tn), tiles.div_ceil(x)]
            }
            (None, None) => [cols.div_ceil(tw), (r1 - r0).div_ceil(row_split).div_ceil(64 / tw), z],
        };
        let mut groups = Vec::new();
        let mut params_bufs = Vec::new();
        let mut stats_base = 0u32;
        for &(r0, r1) in &bands {
            let (a, b) = Self::input_rows(l, is, r0, r1);
            let (win, wout) = (self.window(tin, a, b), self.window(tout, r0, r1));
            params_bufs.push((
                self.uniform(&ConvParams {
                    in_w: is.w,
                    in_h: is.h,
                    in_c: is.c,
                    in_row0: a,
                    out_w: os.w,
                    out_h: os.h,
                    out_c: os.c,
                    out_row0: r0,
                    band_rows: r1 - r0,
                    in_shift: win.shift,
                    out_shift: wout.shift,
                    oc_blocks,
                    pad_top: l.pad_before(is.h) as i32,
                    pad_left: l.pad_before(is.w) as i32,
                    stats_base,
                    tile_w: tw,
                }),
                win,
                wout,
                (r0, r1),
            ));
            let [x, y, z] = workgroups(r0, r1);
            // The subgroup kernel's partials are per workgroup (x, y), the GEMMs' per pixel
            // tile (x, z).
            stats_base += if coop.is_some() { x * z } else { x * y };
        }
        // One partial per 8 invocations (see conv2d_subgroup.wgsl `write_stats`), or two per
        // pixel tile of the GEMMs (gemm_coop.wgsl `partials`).
        let chunks = if coop.is_some() { 2 * stats_base } else { 8 * stats_base };
        let stats = if epilogue {
            let bytes = chunks as u64 * os.c as u64 * 16;
            storage(self.device(), &format!("{} norm partials", l.name), bytes, wgpu::BufferUsages::empty())
        } else {
            self.placeholder_rw.clone()
        };
        let entry_point = match (narrow, slide) {
            _ if wino => "main_wino",
            (true, true) => "main_narrow_slide",
            (true, false) => "main_narrow",
            (false, _) => "main",
        };
        let with_stats = (kernel == Kernel::Conv2dSubgroup && !narrow) || coop.is_some();
        let mut overrides: Overrides = match l.op {
            Op::Conv => vec![
                ("K", l.kernel as f64),
                ("REFLECT", (l.padding == Padding::Reflect) as u32 as f64),
                ("STRIDE", l.stride as f64),
                ("UPSAMPLE", l.upsample as f64),
                ("NORM_IN", pending.is_some() as u32 as f64),
                ("NORM_RELU", pending.as_ref().is_some_and(|(_, relu)| *relu) as u32 as f64),
                // 3 input channels (only a first layer: one group, its 4th channel padding)
                // or a narrow block of 3 output channels: the padding's products skipped.
                ("IN3", (l.in_channels == 3) as u32 as f64),
                ("OUT3", (narrow && l.out_channels == 3) as u32 as f64),
            ],
            Op::ConvTranspose => vec![("K", l.kernel as f64)],
        };
        if kernel == Kernel::Conv2dSubgroup {
            overrides.push(("STATS", epilogue as u32 as f64));
        }
        if let Some((tm, tn)) = tile {
            overrides.extend([("TM", tm as f64), ("TN", tn as f64)]);
        }
        if let Some(g) = coop {
            overrides.extend([("SG", g.subgroup as f64), ("TK", g.tk as f64), ("STATS", epilogue as u32 as f64)]);
        }
        for (params, win, wout, (r0, r1)) in &params_bufs {
            groups.push((
                vec![
                    entry(0, params.as_entire_binding()),
                    entry(1, self.binding(tin, win)),
                    match &weights_in {
                        WeightsIn::Texture(view) => entry(2, wgpu::BindingResource::TextureView(view)),
                        WeightsIn::Buffer(buf) => entry(2, buf.as_entire_binding()),
                    },
                    entry(3, bbuf.as_entire_binding()),
                    entry(4, self.binding(tout, wout)),
                ]
                .into_iter()
                .chain((l.op == Op::Conv).then(|| entry(5, norm_in.as_entire_binding())))
                .chain(with_stats.then(|| entry(6, stats.as_entire_binding())))
                .collect(),
                workgroups(*r0, *r1),
            ));
        }
        self.push_entry(format!("{}:{}", l.name, kernel.name()), kernel, entry_point, &overrides, groups);
        if epilogue {
            self.epilogue_stats = Some((stats, chunks));
        }

        match &l.norm {
            Some(n) => {
                let residual = l.residual.as_ref().and_then(|r| desc.layer_index(r)).map(|j| self.tensors[j + 1]);
                self.norm(index, l, weights.get(&n.scale), weights.get(&n.shift), n.eps, residual, scratch)?;
            }
            None => {
                if l.activation == Activation::Relu || l.residual.is_some() {
                    // Identity norm (a = 1, b = 0) carries the activation and the residual add.
                    let c = l.out_channels as usize;
                    let residual = l.residual.as_ref().and_then(|r| desc.layer_index(r)).map(|j| self.tensors[j + 1]);
                    self.apply(index, l, &vec![1.0; c], &vec![0.0; c], residual)?;
                }
            }
        }
        Ok(())
    }
}

/// The width tw (in pixel groups) of a workgroup's tile of 64 invocations, tw x 64 / tw with tw
/// in 8, 4, 2, 1 (`ConvParams::tile_w`, the prelude's `grid`): the one that runs the fewest
/// invocations over `groups` pixel groups per row and `rows` rows, the widest on a tie
/// (square-ish tiles share input rows).
/// Columns past the right edge run as idle lanes beside real ones; rows past the band's end cost
/// whole tiles, or with `idle_exit` (the subgroup kernels, which return from a subgroup with no
/// row in the band) only the rows of a partly idle subgroup, of 8 lanes (lavapipe's size).
/// At 640x360 the 160-pixel activations' deepest stride-2 conv has 20 groups per row: 8 wide ran
/// 24 of them, 4 wide runs 20.
pub(super) fn tile_width(groups: u32, rows: u32, idle_exit: bool) -> u32 {
    [8u32, 4, 2, 1]
        .into_iter()
        .min_by_key(|&tw| {
            let step = if idle_exit { 8 / tw } else { 64 / tw };
            u64::from(groups.div_ceil(tw) * tw) * u64::from(rows.div_ceil(step) * step)
        })
        .unwrap_or(8)
}

#[cfg(test)]
mod tests {
    use super::tile_width;

    #[test]
    fn tile_width_leaves_the_fewest_idle_lanes() {
        // 640x360: conv3 (20 groups of 8 pixels) and deconv1 (20 of 8 column pairs) take 4;
        // the residual convs (40 groups of 4) keep 8.
        assert_eq!(tile_width(20, 90, true), 4);
        assert_eq!(tile_width(40, 90, true), 8);
        // Narrow frames: 5 groups fit a column of tiles 1 wide exactly.
        assert_eq!(tile_width(5, 24, true), 1);
        // Without the idle exit a 1-wide tile's 64 rows count: 23 rows run 64 there, 24 in
        // tiles 8 wide (8 groups).
        assert_eq!(tile_width(5, 23, false), 8);
        // Ties go to the widest.
        assert_eq!(tile_width(16, 16, false), 8);
        assert_eq!(tile_width(1, 1, true), 8);
    }
}
