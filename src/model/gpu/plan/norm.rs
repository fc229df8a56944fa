//! Instance norm (`instance_norm_stats`, `instance_norm_finalize`, `instance_norm_apply`):
//! their parameter structs, the shared partials buffer, and the passes with their dispatch
//! geometry (statistics per row band and chunk, one finalize, apply per band or deferred to the
//! next convolution's loads).

use bytemuck::{Pod, Zeroable};

use super::build::Builder;
use super::{entry, fold, storage, TensorRef, WG_1D};
use crate::model::description::{Activation, Layer};
use crate::model::gpu::kernels::Kernel;
use crate::model::gpu::GpuError;

/// Pixels per workgroup of the instance-norm statistics kernel.
pub(super) const STATS_CHUNK_PIXELS: u32 = 4096;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct StatsParams {
    pub(super) channels: u32,
    pub(super) pixels: u32,
    pub(super) chunk_pixels: u32,
    pub(super) chunk_base: u32,
    pub(super) shift: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct FinalizeParams {
    pub(super) channels: u32,
    pub(super) chunks: u32,
    pub(super) eps: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct ApplyParams {
    pub(super) channels: u32,
    pub(super) count: u32,
    pub(super) shift: u32,
    pub(super) residual_shift: u32,
}

/// Scratch shared by all norm layers: the Welford partials.
pub(super) struct NormScratch {
    partials: wgpu::Buffer,
}

impl NormScratch {
    pub(super) fn new(device: &wgpu::Device, tensors: &[TensorRef]) -> Self {
        // Enough partials for the largest tensor even when cut into single-row bands.
        let mut most = 16u64;
        for t in &tensors[1..] {
            let chunks = t.shape.h as u64 * (t.shape.w as u64).div_ceil(STATS_CHUNK_PIXELS as u64)
                + (t.shape.h as u64 * t.shape.w as u64).div_ceil(STATS_CHUNK_PIXELS as u64);
            most = most.max(chunks * t.shape.c as u64 * 16);
        }
        Self { partials: storage(device, "norm partials", most, wgpu::BufferUsages::empty()) }
    }
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm(
        &mut self,
        index: usize,
        l: &Layer,
        scale: &[f32],
        shift: &[f32],
        eps: f32,
        residual: Option<TensorRef>,
        scratch: &NormScratch,
    ) -> Result<(), GpuError> {
        let t = self.tensors[index + 1];
        let s = t.shape;
        // Statistics: from the convolution's epilogue, or a pass of their own.
        let (partials, chunks) = match self.epilogue_stats.take() {
            Some(done) => done,
            None => (scratch.partials.clone(), self.stats(l, t, scratch)?),
        };
        let params = self.uniform(&FinalizeParams { channels: s.c, chunks, eps, _pad: 0 });
        // Each layer has its own coefficients: a deferred norm is read by the next layer.
        let coef = storage(
            self.device(),
            &format!("{} norm coefficients", l.name),
            s.c as u64 * 8,
            wgpu::BufferUsages::empty(),
        );
        let (sbuf, hbuf) = (self.init("norm scale", scale), self.init("norm shift", shift));
        let groups = vec![(
            vec![
                entry(0, params.as_entire_binding()),
                entry(1, partials.as_entire_binding()),
                entry(2, sbuf.as_entire_binding()),
                entry(3, hbuf.as_entire_binding()),
                entry(4, coef.as_entire_binding()),
            ],
            [s.c.div_ceil(64), 1, 1],
        )];
        self.push_groups(format!("{}:instance_norm_finalize", l.name), Kernel::InstanceNormFinalize, &vec![], groups);
        self.apply_coef(index, l, &coef, residual)
    }

    /// Adds the statistics pass over tensor `t` (band by band, into consecutive chunks of the
    /// partials buffer); returns the number of chunks.
    pub(super) fn stats(&mut self, l: &Layer, t: TensorRef, scratch: &NormScratch) -> Result<u32, GpuError> {
        let s = t.shape;
        let bands = self.bands(s.h, &l.name, |r0, r1| vec![self.window(t, r0, r1).size])?;
        let mut groups = Vec::new();
        let mut chunk_base = 0u32;
        let mut keep = Vec::new();
        for &(r0, r1) in &bands {
            let w = self.window(t, r0, r1);
            let pixels = (r1 - r0) * s.w;
            let chunks = pixels.div_ceil(STATS_CHUNK_PIXELS);
            let params = self.uniform(&StatsParams {
                channels: s.c,
                pixels,
                chunk_pixels: STATS_CHUNK_PIXELS,
                chunk_base,
                shift: w.shift,
                _pad: [0; 3],
            });
            chunk_base += chunks;
            keep.push((params, w, chunks));
        }
        let vec4 = s.c.is_multiple_of(4);
        let placeholder = self.placeholder.clone();
        for (params, w, chunks) in &keep {
            let x4 = if vec4 { self.binding(t, w) } else { placeholder.as_entire_binding() };
            groups.push((
                vec![
                    entry(0, params.as_entire_binding()),
                    entry(1, self.binding(t, w)),
                    entry(2, scratch.partials.as_entire_binding()),
                    entry(3, x4),
                ],
                [*chunks, s.c.div_ceil(4), 1],
            ));
        }
        let overrides = vec![("VEC4", vec4 as u32 as f64)];
        self.push_groups(format!("{}:instance_norm_stats", l.name), Kernel::InstanceNormStats, &overrides, groups);
        Ok(chunk_base)
    }

    /// Activation and residual without a norm: fixed coefficients.
    pub(super) fn apply(
        &mut self,
        index: usize,
        l: &Layer,
        a: &[f32],
        b: &[f32],
        residual: Option<TensorRef>,
    ) -> Result<(), GpuError> {
        let coef: Vec<f32> = a.iter().zip(b).flat_map(|(a, b)| [*a, *b]).collect();
        let buf = self.init("identity coefficients", &coef);
        self.apply_coef(index, l, &buf, residual)
    }

    pub(super) fn apply_coef(
        &mut self,
        index: usize,
        l: &Layer,
        coef: &wgpu::Buffer,
        residual: Option<TensorRef>,
    ) -> Result<(), GpuError> {
        let t = self.tensors[index + 1];
        let s = t.shape;
        let bands = self.bands(s.h, &l.name, |r0, r1| {
            let mut v = vec![self.window(t, r0, r1).size];
            if let Some(r) = residual {
                v.push(self.window(r, r0, r1).size);
            }
            v
        })?;
        let mut keep = Vec::new();
        for &(r0, r1) in &bands {
            let w = self.window(t, r0, r1);
            let rw = residual.map(|r| self.window(r, r0, r1));
            let count = (r1 - r0) * s.w * s.c;
            let params = self.uniform(&ApplyParams {
                channels: s.c,
                count,
                shift: w.shift,
                residual_shift: rw.as_ref().map_or(0, |w| w.shift),
            });
            keep.push((params, w, rw, count));
        }
        // Without a residual the residual binding is a tiny placeholder.
        let placeholder = self.init("no residual", &[0.0; 4]);
        // Four channels per invocation where the channels come in fours (all but RGB outputs).
        let (kernel, per) =
            if s.c.is_multiple_of(4) { (Kernel::InstanceNormApply4, 4) } else { (Kernel::InstanceNormApply, 1) };
        let mut groups = Vec::new();
        for (params, w, rw, count) in &keep {
            let res = match (residual, rw) {
                (Some(r), Some(rw)) => self.binding(r, rw),
                _ => placeholder.as_entire_binding(),
            };
            groups.push((
                vec![
                    entry(0, params.as_entire_binding()),
                    entry(1, coef.as_entire_binding()),
                    entry(2, self.binding(t, w)),
                    entry(3, res),
                ],
                fold((count / per).div_ceil(WG_1D)),
            ));
        }
        let overrides = vec![
            ("RELU", (l.activation == Activation::Relu) as u32 as f64),
            ("RESIDUAL", residual.is_some() as u32 as f64),
        ];
        let label = format!("{}:instance_norm_apply", l.name);
        let step = self.step(label, kernel, "main", &overrides, groups);
        if self.defer[index] {
            self.pending = Some((coef.clone(), l.activation == Activation::Relu));
            self.materialize[index] = Some(step);
        } else {
            self.steps.push(step);
        }
        Ok(())
    }
}
