//! The network plan: everything a frame needs, built once per (model, frame size) — pipelines,
//! weights, activation buffers, bind groups — so that a frame costs one upload, one submit and
//! one readback.
//!
//! Tensors are HWC, stored at the plan's precision (`StoragePrecision`); the input is tensor 0
//! and layer `i` writes tensor `i + 1`. Their buffers are reused by lifetime (`slots`).
//!
//! Files: `build` puts a plan together (buffers, the `Builder` and its helpers), one file per op
//! adds that op's steps (`conv`, `norm`, `unpack`, `pack`), `slots` assigns buffers, `run`
//! uploads, encodes, submits and reads back.
//!
//! Instance norm is fused where the data flow allows. Statistics: the wide subgroup conv kernel
//! writes per-tile Welford partials of its output in its epilogue (no statistics pass); other
//! kernels are followed by the statistics pass. A small finalize merges the partials into
//! per-channel coefficients (a, b), and when the next layer is a convolution that is
//! the tensor's only reader, that convolution applies `a * x + b` (and the ReLU) to every real
//! tap as it loads its input (padding stays zero), so the tensor is never rewritten. A tensor
//! that is also a residual input, the network output, or the input of a transposed conv is
//! normalised in place by one apply pass, which also adds the residual. `run_to_layer`
//! normalises a deferred tensor on demand (the same apply pass, recorded but not run per frame).
//!
//! Activations larger than the device's largest storage binding (a 32-channel 1080p tensor is
//! 265 MB, lavapipe binds 128 MiB) are processed in row bands: every dispatch binds only the
//! rows it reads and writes, at an offset aligned down to the device's alignment, and passes
//! the remaining element shift in its parameters.

mod build;
mod conv;
mod coop;
#[cfg(test)]
mod layout_tests;
mod norm;
mod pack;
mod run;
pub use run::InFlight;
mod slots;
mod unpack;

use super::context::{scoped, GpuContext};
use super::kernels::Kernel;
use super::precision::{Precision, SelfCheck, StoragePrecision};
use super::select::{Source as VariantSource, Variant};
use super::GpuError;
use crate::model::description::{NetworkDescription, Shape};
use crate::model::weights::Weights;

/// Invocations per workgroup of the 1-D kernels.
const WG_1D: u32 = 256;

/// One kernel over the whole tensor: one dispatch per row band.
struct Step {
    label: String,
    kernel: Kernel,
    pipeline: wgpu::ComputePipeline,
    dispatches: Vec<(wgpu::BindGroup, [u32; 3])>,
}

/// A run of a frame: the styled pixels and, when asked for, the float output.
#[derive(Debug, Clone)]
pub struct FrameOutput {
    /// RGB8, `width x height x 3`.
    pub rgb: Vec<u8>,
    /// HWC f32 before clamping, `width x height x 3` (empty unless requested).
    pub values: Vec<f32>,
}

/// GPU time of one kernel over one frame, summed over layers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTime {
    pub kernel: String,
    pub ms: f64,
}

/// A tensor's place: its slot (buffer) and shape.
#[derive(Clone, Copy)]
struct TensorRef {
    slot: usize,
    shape: Shape,
}

/// A bound range of a tensor's rows.
struct Window {
    offset: u64,
    size: u64,
    shift: u32,
}

pub struct NetworkPlan {
    device: wgpu::Device,
    queue: wgpu::Queue,
    width: u32,
    height: u32,
    work: (u32, u32),
    input: wgpu::Buffer,
    steps: Vec<Step>,
    /// For each layer, the number of steps after which its output is complete (but, for a
    /// layer whose norm the next convolution applies, not yet normalised: see `materialize`).
    layer_done: Vec<usize>,
    /// For each layer whose norm is deferred to the next convolution, the apply pass that
    /// normalises its output in place (run by `run_to_layer` only).
    materialize: Vec<Option<Step>>,
    tensors: Vec<TensorRef>,
    slots: Vec<wgpu::Buffer>,
    out_f32: wgpu::Buffer,
    out_rgb: wgpu::Buffer,
    staging_rgb: wgpu::Buffer,
    staging_f32: wgpu::Buffer,
    timing: Option<Timing>,
    /// What activations and weights are stored as (the precision prelude of every kernel).
    precision: StoragePrecision,
    /// The kernel set, and how it was chosen.
    variant: (Variant, VariantSource),
    /// Per-frame upload and readback buffers of batched runs, grown to the largest batch seen.
    /// Buffers of batches not in flight (`submit` takes them, `InFlight::read` gives them back).
    batch_io: std::sync::Arc<std::sync::Mutex<Vec<BatchIo>>>,
}

/// One frame's own buffers in a batch: its RGB8 upload and its readback.
struct BatchIo {
    input: wgpu::Buffer,
    staging: wgpu::Buffer,
}

struct Timing {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    period_ns: f64,
}

/// Bytes of a tensor of `len` values, rounded up to whole 4-byte words (binding sizes are).
fn tensor_bytes(len: u64, precision: StoragePrecision) -> u64 {
    (len * precision.bytes()).div_ceil(4) * 4
}

impl NetworkPlan {
    /// Builds the whole network for frames of `width x height`, with the device's precision and
    /// kernel choice.
    pub fn new(
        ctx: &GpuContext,
        desc: &NetworkDescription,
        weights: &Weights,
        width: u32,
        height: u32,
    ) -> Result<Self, GpuError> {
        Self::new_as(ctx, desc, weights, width, height, (ctx.precision, ctx.kernels))
    }

    /// [`NetworkPlan::new`] with a precision and kernel choice of its own (a segment of a cut
    /// video runs as its plan says, whatever the device's defaults).
    pub fn new_as(
        ctx: &GpuContext,
        desc: &NetworkDescription,
        weights: &Weights,
        width: u32,
        height: u32,
        (asked, kernels): (Precision, super::KernelChoice),
    ) -> Result<Self, GpuError> {
        if width == 0 || height == 0 {
            return Err(GpuError::FrameSize { width, height, reason: "width and height must be at least 1".into() });
        }
        let precision = super::precision::resolve(ctx, asked, desc, weights)?;
        let (variant, source) = super::select::choose(ctx, kernels, desc, weights, width, height, precision)?;
        let mut plan = Self::with_variant(ctx, desc, weights, width, height, precision, variant)?;
        plan.variant.1 = source;
        Ok(plan)
    }

    /// Builds the network with kernel set `variant` (see `select`).
    pub(super) fn with_variant(
        ctx: &GpuContext,
        desc: &NetworkDescription,
        weights: &Weights,
        width: u32,
        height: u32,
        precision: StoragePrecision,
        variant: Variant,
    ) -> Result<Self, GpuError> {
        scoped(&ctx.device, "building the network plan", || {
            Self::build(ctx, desc, weights, width, height, precision, variant)
        })?
    }

    /// What a plan of `width x height` would run on this device with the device's choice:
    /// `Precision::Auto` and the kernel choice resolved to a precision and a forced kernel set,
    /// without building the plan (so several machines can be told to run exactly that).
    pub fn resolve_choice(
        ctx: &GpuContext,
        desc: &NetworkDescription,
        weights: &Weights,
        width: u32,
        height: u32,
    ) -> Result<(Precision, super::KernelChoice), GpuError> {
        let precision = super::precision::resolve(ctx, ctx.precision, desc, weights)?;
        let (variant, _) = super::select::choose(ctx, ctx.kernels, desc, weights, width, height, precision)?;
        Ok((precision.into(), super::KernelChoice::of(variant)))
    }

    /// Runs one fixed pseudo-random 64x48 frame through an f32 and an f16 plan of the network
    /// and compares their 8-bit outputs. Needs a device with SHADER_F16 (`has_f16`). The check
    /// `Precision::Auto` makes (see `precision`).
    pub fn f16_self_check(
        ctx: &GpuContext,
        desc: &NetworkDescription,
        weights: &Weights,
    ) -> Result<SelfCheck, GpuError> {
        super::precision::f16_self_check(ctx, desc, weights)
    }

    /// The kernel set this plan runs, and whether it was forced, a default, timed now or cached.
    pub fn variant(&self) -> (Variant, VariantSource) {
        self.variant
    }

    /// The precision this plan stores activations and weights in (`Precision::Auto` resolved).
    pub fn precision(&self) -> Precision {
        self.precision.into()
    }

    /// The frame size this plan was built for.
    pub fn frame_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The size the network runs at (see `model::geometry`).
    pub fn working_size(&self) -> (u32, u32) {
        self.work
    }

    /// Number of dispatches per frame (row bands count separately).
    pub fn dispatch_count(&self) -> usize {
        self.steps.iter().map(|s| s.dispatches.len()).sum()
    }
}

fn storage(device: &wgpu::Device, label: &str, size: u64, extra: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(16),
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

fn staging(device: &wgpu::Device, label: &str, size: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(16),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Folds a 1-D count of workgroups into (x, y) within the per-dimension limit.
fn fold(workgroups: u32) -> [u32; 3] {
    let x = workgroups.clamp(1, 65535);
    [x, workgroups.div_ceil(x).max(1), 1]
}

/// A deterministic RGB8 frame of pseudo-random pixels (xorshift from `seed`), for self-checks
/// and timings that must not depend on a picture's content.
pub(super) fn noise_frame(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..width as usize * height as usize * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}

fn entry(binding: u32, resource: wgpu::BindingResource<'_>) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource }
}
