//! The network plan: everything a frame needs, built once per (model, frame size) — pipelines,
//! weights, activation buffers, bind groups — so that a frame costs one upload, one submit and
//! one readback.
//!
//! Activation buffers are reused by lifetime: tensors are HWC f32 (f16 in f16 plans, see
//! `StoragePrecision`), the input is tensor 0 and layer `i` writes tensor `i + 1`. A tensor is live
//! from the layer that writes it to the last layer that reads it (its successor, a residual
//! add, or the output packing). Each tensor takes
//! a free slot (one whose tensor is no longer live), and a slot's buffer is as large as the
//! largest tensor it ever holds. The TransformNet needs three slots (a residual block keeps
//! its input, its middle and its output alive together).
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

use std::collections::BTreeMap;
use std::sync::mpsc;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

mod conv;
mod norm;
mod pack;
mod unpack;

use norm::NormScratch;

use super::context::{scoped, GpuContext, Precision};
use super::kernels::{Kernel, Overrides};
use super::precision::StoragePrecision;
use super::select::{Source as VariantSource, Variant};
use super::weights::gpu_channels;
use super::GpuError;
use crate::model::description::{Activation, NetworkDescription, Op, Shape};
use crate::model::geometry::working_size;
use crate::model::weights::Weights;

/// The f16 accuracy bound (8-bit levels against f32 or the golden outputs): the largest
/// difference of any value, and the mean difference over all values.
pub const F16_MAX_LEVELS: u8 = 3;
pub const F16_MEAN_LEVELS: f64 = 0.5;
/// Frame size of the f16 self-check of `Precision::Auto`.
const SELF_CHECK_SIZE: (u32, u32) = (64, 48);

/// An f16 plan against the f32 plan on the same input: 8-bit level differences.
#[derive(Debug, Clone, Copy)]
pub struct SelfCheck {
    pub max_levels: u8,
    pub mean_levels: f64,
}

impl SelfCheck {
    /// Within `F16_MAX_LEVELS` and `F16_MEAN_LEVELS`.
    pub fn passes(&self) -> bool {
        self.max_levels <= F16_MAX_LEVELS && self.mean_levels <= F16_MEAN_LEVELS
    }
}

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
    batch_io: std::sync::Mutex<Vec<BatchIo>>,
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

/// Builds plans; holds what is shared while building.
struct Builder<'a> {
    ctx: &'a GpuContext,
    variant: Variant,
    tensors: Vec<TensorRef>,
    slots: &'a [wgpu::Buffer],
    steps: Vec<Step>,
    /// Per layer: its norm / activation is applied by the next convolution as it loads.
    defer: Vec<bool>,
    /// The deferred coefficients (and ReLU) of the previous layer, for the next convolution.
    pending: Option<(wgpu::Buffer, bool)>,
    materialize: Vec<Option<Step>>,
    /// A 16-byte buffer bound where a kernel's optional input is unused.
    placeholder: wgpu::Buffer,
    /// The same for an optional read-write output (a buffer cannot be bound both ways at once).
    placeholder_rw: wgpu::Buffer,
    /// The norm partials the last convolution wrote in its epilogue, and their chunk count.
    epilogue_stats: Option<(wgpu::Buffer, u32)>,
    /// What activations and weights are stored as: every kernel is loaded at this precision.
    precision: StoragePrecision,
}

/// Bytes of a tensor of `len` values, rounded up to whole 4-byte words (binding sizes are).
fn tensor_bytes(len: u64, precision: StoragePrecision) -> u64 {
    (len * precision.bytes()).div_ceil(4) * 4
}

impl NetworkPlan {
    /// Builds the whole network for frames of `width x height`.
    pub fn new(
        ctx: &GpuContext,
        desc: &NetworkDescription,
        weights: &Weights,
        width: u32,
        height: u32,
    ) -> Result<Self, GpuError> {
        if width == 0 || height == 0 {
            return Err(GpuError::FrameSize { width, height, reason: "width and height must be at least 1".into() });
        }
        let precision = match ctx.precision {
            Precision::F32 => StoragePrecision::F32,
            Precision::F16 if ctx.f16 => StoragePrecision::F16,
            Precision::F16 => return Err(GpuError::NoF16 { adapter: ctx.adapter.to_string() }),
            Precision::Auto => Self::auto_precision(ctx, desc, weights)?,
        };
        let (variant, source) = super::select::choose(ctx, desc, weights, width, height, precision)?;
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
        scoped(&ctx.device, "building the network plan", || Self::build(ctx, desc, weights, width, height, precision, variant))?
    }

    /// The kernel set this plan runs, and whether it was forced, a default, timed now or cached.
    pub fn variant(&self) -> (Variant, VariantSource) {
        self.variant
    }

    /// `Precision::Auto`: f32 on CPU adapters and without SHADER_F16; elsewhere f16 when the
    /// self-check passes.
    fn auto_precision(ctx: &GpuContext, desc: &NetworkDescription, weights: &Weights) -> Result<StoragePrecision, GpuError> {
        if ctx.cpu {
            return Ok(StoragePrecision::F32);
        }
        if !ctx.f16 {
            tracing::info!(adapter = %ctx.adapter, "precision auto: f32 (the adapter has no SHADER_F16)");
            return Ok(StoragePrecision::F32);
        }
        let check = Self::f16_self_check(ctx, desc, weights)?;
        if check.passes() {
            tracing::info!(adapter = %ctx.adapter, max_levels = check.max_levels, mean_levels = check.mean_levels, "precision auto: f16 (self-check passed)");
            Ok(StoragePrecision::F16)
        } else {
            tracing::warn!(
                adapter = %ctx.adapter,
                max_levels = check.max_levels,
                mean_levels = check.mean_levels,
                "precision auto: f32 (the f16 self-check differs from f32 by more than {F16_MAX_LEVELS} levels max or {F16_MEAN_LEVELS} mean)"
            );
            Ok(StoragePrecision::F32)
        }
    }

    /// Runs one fixed pseudo-random 64x48 frame through an f32 and an f16 plan of the network
    /// and compares their 8-bit outputs. Needs a device with SHADER_F16 (`has_f16`).
    pub fn f16_self_check(ctx: &GpuContext, desc: &NetworkDescription, weights: &Weights) -> Result<SelfCheck, GpuError> {
        if !ctx.f16 {
            return Err(GpuError::NoF16 { adapter: ctx.adapter.to_string() });
        }
        let (w, h) = SELF_CHECK_SIZE;
        let frame = noise_frame(w, h, 0x9e37_79b9_7f4a_7c15);
        let run = |precision: StoragePrecision| -> Result<Vec<u8>, GpuError> {
            let variant = super::select::default_variant(ctx);
            let build = || Self::build(ctx, desc, weights, w, h, precision, variant);
            let plan = scoped(&ctx.device, "building the f16 self-check plan", build)??;
            Ok(plan.run(&frame)?.rgb)
        };
        let (full, halved) = (run(StoragePrecision::F32)?, run(StoragePrecision::F16)?);
        Ok(level_diff(&full, &halved))
    }

    /// The precision this plan stores activations and weights in (`Precision::Auto` resolved).
    pub fn precision(&self) -> Precision {
        match self.precision {
            StoragePrecision::F32 => Precision::F32,
            StoragePrecision::F16 => Precision::F16,
        }
    }

    fn build(
        ctx: &GpuContext,
        desc: &NetworkDescription,
        weights: &Weights,
        width: u32,
        height: u32,
        precision: StoragePrecision,
        variant: Variant,
    ) -> Result<Self, GpuError> {
        let device = &ctx.device;
        let (ww, wh) = working_size(desc, width, height);
        // The input tensor is RGB0: the conv kernels read channels four at a time.
        let mut shapes = vec![Shape { c: gpu_channels(desc.input_channels), h: wh, w: ww }];
        shapes.extend(desc.shapes(wh, ww));
        if let Some(l) = desc.layers.iter().skip(1).find(|l| l.in_channels % 4 != 0) {
            return Err(GpuError::Unsupported(format!(
                "layer `{}` has {} input channels; the GPU kernels need a multiple of 4",
                l.name, l.in_channels
            )));
        }
        let slot_of = assign_slots(desc, &shapes);
        let n_slots = slot_of.iter().max().map_or(0, |m| m + 1);
        let mut slot_bytes = vec![0u64; n_slots];
        for (t, s) in shapes.iter().enumerate() {
            slot_bytes[slot_of[t]] = slot_bytes[slot_of[t]].max(tensor_bytes(s.len() as u64, precision));
        }
        for (t, s) in shapes.iter().enumerate() {
            let need = tensor_bytes(s.len() as u64, precision);
            let name = if t == 0 { "input".to_string() } else { desc.layers[t - 1].name.clone() };
            let too_big = need > ctx.max_buffer || (s.c == 3 && need > ctx.max_binding);
            if too_big {
                let limit = if s.c == 3 { ctx.max_binding } else { ctx.max_buffer };
                return Err(GpuError::FrameTooLarge {
                    width,
                    height,
                    tensor: name,
                    need_mib: need as f64 / 1048576.0,
                    limit_mib: limit as f64 / 1048576.0,
                    adapter: ctx.adapter.name.clone(),
                });
            }
        }
        let slots: Vec<wgpu::Buffer> = slot_bytes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("activation slot {i}")),
                    size: size.max(16),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let tensors: Vec<TensorRef> =
            shapes.iter().enumerate().map(|(t, &shape)| TensorRef { slot: slot_of[t], shape }).collect();

        let input = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("input rgb8"),
            size: (width as u64 * height as u64 * 3).div_ceil(4) * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pixels = width as u64 * height as u64;
        let out_f32 = storage(device, "output f32", pixels * 12, wgpu::BufferUsages::COPY_SRC);
        let out_rgb = storage(device, "output rgb8", pixels * 4, wgpu::BufferUsages::COPY_SRC);
        let staging_rgb = staging(device, "staging rgb8", pixels * 4);
        let staging_f32 = staging(device, "staging f32", pixels * 12);

        let defer = deferrable(desc, variant.fused_norm());
        let placeholder = storage(device, "unused binding", 16, wgpu::BufferUsages::empty());
        let mut b = Builder {
            ctx,
            variant,
            tensors,
            slots: &slots,
            steps: Vec::new(),
            materialize: (0..desc.layers.len()).map(|_| None).collect(),
            defer,
            pending: None,
            placeholder,
            placeholder_rw: storage(device, "unused output", 16, wgpu::BufferUsages::empty()),
            epilogue_stats: None,
            precision,
        };
        b.unpack(&input, width, height, desc.input_scale);
        let mut layer_done = Vec::with_capacity(desc.layers.len());
        let norm_scratch = NormScratch::new(device, &b.tensors);
        for (i, l) in desc.layers.iter().enumerate() {
            b.layer(i, l, desc, weights, &norm_scratch)?;
            layer_done.push(b.steps.len());
        }
        b.pack(&desc.output, &out_f32, &out_rgb, width, height);

        let timing = ctx.timestamps.then(|| {
            let count = 2 * b.steps.len() as u32;
            Timing {
                queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                }),
                resolve: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamp resolve"),
                    size: count as u64 * 8,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                staging: staging(device, "timestamp staging", count as u64 * 8),
                period_ns: ctx.queue.get_timestamp_period() as f64,
            }
        });

        let (steps, tensors, materialize) = (b.steps, b.tensors, b.materialize);
        Ok(Self {
            device: ctx.device.clone(),
            queue: ctx.queue.clone(),
            width,
            height,
            work: (ww, wh),
            input,
            steps,
            layer_done,
            materialize,
            tensors,
            slots,
            out_f32,
            out_rgb,
            staging_rgb,
            staging_f32,
            batch_io: Default::default(),
            precision,
            variant: (variant, VariantSource::Default),
            timing,
        })
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

    /// Styles one RGB8 frame (`width x height x 3` bytes).
    pub fn run(&self, rgb: &[u8]) -> Result<FrameOutput, GpuError> {
        self.run_inner(rgb, false, false)
    }

    /// Styles one frame and also returns the float output before clamping.
    pub fn run_with_values(&self, rgb: &[u8]) -> Result<FrameOutput, GpuError> {
        self.run_inner(rgb, true, false)
    }

    /// Styles one frame recording per-kernel timestamps (when the device has them; read them
    /// with `kernel_times`). Timestamp writes cost time on some adapters: `run` never does them.
    pub fn run_profiled(&self, rgb: &[u8]) -> Result<FrameOutput, GpuError> {
        self.run_inner(rgb, false, true)
    }

    fn run_inner(&self, rgb: &[u8], values: bool, profile: bool) -> Result<FrameOutput, GpuError> {
        let timing = self.timing.as_ref().filter(|_| profile);
        self.check_input(rgb)?;
        let mut out = FrameOutput { rgb: Vec::new(), values: Vec::new() };
        self.scoped("running a frame", || {
            self.upload(rgb);
            let mut enc = self.device.create_command_encoder(&Default::default());
            self.encode(&mut enc, self.steps.len(), timing);
            let pixels = self.width as u64 * self.height as u64;
            enc.copy_buffer_to_buffer(&self.out_rgb, 0, &self.staging_rgb, 0, pixels * 4);
            if values {
                enc.copy_buffer_to_buffer(&self.out_f32, 0, &self.staging_f32, 0, pixels * 12);
            }
            if let Some(t) = timing {
                let n = t.queries.count();
                enc.resolve_query_set(&t.queries, 0..n, &t.resolve, 0);
                enc.copy_buffer_to_buffer(&t.resolve, 0, &t.staging, 0, n as u64 * 8);
            }
            self.queue.submit([enc.finish()]);
        })?;
        let pixels = self.width as usize * self.height as usize;
        let bytes = self.read(&self.staging_rgb, pixels * 4)?;
        out.rgb = bytes.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        if values {
            out.values = bytemuck::cast_slice::<u8, f32>(&self.read(&self.staging_f32, pixels * 12)?).to_vec();
        }
        Ok(out)
    }

    /// Styles several frames with one GPU submission: each frame is uploaded to a buffer of its
    /// own, the whole network is recorded once per frame in one command buffer, and all results
    /// are read back after a single wait. Returns RGB8 per frame, in order. Amortises the
    /// submit/wait round trip over the batch; a failure fails the whole batch.
    pub fn run_batch(&self, frames: &[&[u8]]) -> Result<Vec<Vec<u8>>, GpuError> {
        if frames.len() <= 1 {
            return frames.iter().map(|f| self.run(f).map(|o| o.rgb)).collect();
        }
        for f in frames {
            self.check_input(f)?;
        }
        let mut io = self.batch_io.lock().map_err(|_| GpuError::Device {
            context: "running a batch".into(),
            reason: "an earlier batch panicked".into(),
        })?;
        let pixels = self.width as u64 * self.height as u64;
        while io.len() < frames.len() {
            io.push(BatchIo {
                input: self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("batch input rgb8"),
                    size: self.input.size(),
                    usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                staging: staging(&self.device, "batch staging rgb8", pixels * 4),
            });
        }
        self.scoped("running a batch of frames", || {
            let mut enc = self.device.create_command_encoder(&Default::default());
            for (f, io) in frames.iter().zip(io.iter()) {
                self.queue.write_buffer(&io.input, 0, &padded(f));
                enc.copy_buffer_to_buffer(&io.input, 0, &self.input, 0, self.input.size());
                self.encode(&mut enc, self.steps.len(), None);
                enc.copy_buffer_to_buffer(&self.out_rgb, 0, &io.staging, 0, pixels * 4);
            }
            self.queue.submit([enc.finish()]);
        })?;
        let buffers: Vec<&wgpu::Buffer> = io.iter().take(frames.len()).map(|b| &b.staging).collect();
        let bytes = self.read_all(&buffers, pixels as usize * 4)?;
        Ok(bytes.into_iter().map(|b| b.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()).collect())
    }

    /// Per-kernel GPU times of the last `run_profiled` frame, when timestamps are on.
    pub fn kernel_times(&self) -> Result<Option<Vec<KernelTime>>, GpuError> {
        let Some(t) = &self.timing else { return Ok(None) };
        let bytes = self.read(&t.staging, self.steps.len() * 16)?;
        let stamps: &[u64] = bytemuck::cast_slice(&bytes);
        let mut by_kernel: BTreeMap<&str, f64> = BTreeMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            let d = stamps[2 * i + 1].saturating_sub(stamps[2 * i]) as f64 * t.period_ns / 1e6;
            tracing::debug!(step = %step.label, ms = d, "step time");
            *by_kernel.entry(step.kernel.name()).or_default() += d;
        }
        Ok(Some(by_kernel.into_iter().map(|(k, ms)| KernelTime { kernel: k.to_string(), ms }).collect()))
    }

    /// Runs the frame up to and including layer `name` and returns that layer's output as HWC
    /// f32 at the working size (for layer-by-layer checks against a reference).
    pub fn run_to_layer(&self, rgb: &[u8], layer: usize) -> Result<Vec<f32>, GpuError> {
        self.check_input(rgb)?;
        let Some(&done) = self.layer_done.get(layer) else {
            return Err(GpuError::UnknownLayer(format!("#{layer}")));
        };
        let t = self.tensors[layer + 1];
        let bytes = tensor_bytes(t.shape.len() as u64, self.precision);
        let stage = staging(&self.device, "layer staging", bytes.max(4));
        self.scoped("running to a layer", || {
            self.upload(rgb);
            let mut enc = self.device.create_command_encoder(&Default::default());
            self.encode(&mut enc, done, None);
            if let Some(step) = self.materialize.get(layer).and_then(Option::as_ref) {
                encode_step(&mut enc, step, None);
            }
            enc.copy_buffer_to_buffer(&self.slots[t.slot], 0, &stage, 0, bytes);
            self.queue.submit([enc.finish()]);
        })?;
        let raw = self.read(&stage, bytes as usize)?;
        let n = t.shape.len();
        match self.precision {
            StoragePrecision::F16 => Ok(raw.chunks_exact(2).take(n).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
            StoragePrecision::F32 => Ok(bytemuck::cast_slice::<u8, f32>(&raw).to_vec()),
        }
    }

    fn check_input(&self, rgb: &[u8]) -> Result<(), GpuError> {
        let want = self.width as usize * self.height as usize * 3;
        if rgb.len() != want {
            return Err(GpuError::FrameSize {
                width: self.width,
                height: self.height,
                reason: format!("got {} bytes of RGB, expected {want}", rgb.len()),
            });
        }
        Ok(())
    }

    fn upload(&self, rgb: &[u8]) {
        self.queue.write_buffer(&self.input, 0, &padded(rgb));
    }

    fn encode(&self, enc: &mut wgpu::CommandEncoder, steps: usize, timing: Option<&Timing>) {
        for (i, step) in self.steps.iter().take(steps).enumerate() {
            encode_step(enc, step, timing.map(|t| (t, i as u32)));
        }
    }

    fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        scoped(&self.device, context, f)
    }

    /// Maps a staging buffer, waits for the GPU, copies the first `len` bytes out.
    fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u8>, GpuError> {
        Ok(self.read_all(&[buffer], len)?.pop().unwrap_or_default())
    }

    /// Maps several staging buffers, waits once for the GPU, copies the first `len` bytes of each.
    fn read_all(&self, buffers: &[&wgpu::Buffer], len: usize) -> Result<Vec<Vec<u8>>, GpuError> {
        let dev = |reason: String| GpuError::Device { context: "reading results back".into(), reason };
        let mut pending = Vec::with_capacity(buffers.len());
        for buffer in buffers {
            let (tx, rx) = mpsc::channel();
            buffer.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
            pending.push(rx);
        }
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| dev(e.to_string()))?;
        let mut out = Vec::with_capacity(buffers.len());
        for (buffer, rx) in buffers.iter().zip(pending) {
            rx.recv().map_err(|e| dev(e.to_string()))?.map_err(|e| dev(e.to_string()))?;
            let bytes = buffer.get_mapped_range(..).map_err(|e| dev(e.to_string()))?[..len].to_vec();
            buffer.unmap();
            out.push(bytes);
        }
        Ok(out)
    }
}

/// Records one step as one compute pass (with timestamps `2i`, `2i + 1` when timing).
fn encode_step(enc: &mut wgpu::CommandEncoder, step: &Step, timing: Option<(&Timing, u32)>) {
    let timestamp_writes = timing.map(|(t, i)| wgpu::ComputePassTimestampWrites {
        query_set: &t.queries,
        beginning_of_pass_write_index: Some(2 * i),
        end_of_pass_write_index: Some(2 * i + 1),
    });
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&step.label), timestamp_writes });
    pass.set_pipeline(&step.pipeline);
    for (bg, [x, y, z]) in &step.dispatches {
        pass.set_bind_group(0, bg, &[]);
        pass.dispatch_workgroups(*x, *y, *z);
    }
}

/// For each layer, whether its norm / activation can be applied by the next layer as it loads
/// its input instead of by an apply pass: the layer has one, adds no residual itself, its
/// output is read by the next layer only (not a residual input, not the network output), and
/// the next layer is a convolution (the transposed conv kernel does not take a norm).
fn deferrable(desc: &NetworkDescription, enabled: bool) -> Vec<bool> {
    let n = desc.layers.len();
    (0..n)
        .map(|i| {
            let l = &desc.layers[i];
            let applies = l.norm.is_some() || l.activation == Activation::Relu;
            let skip_source = desc.layers.iter().any(|m| m.residual.as_deref() == Some(l.name.as_str()));
            enabled && applies && l.residual.is_none() && !skip_source && i + 1 < n && desc.layers[i + 1].op == Op::Conv
        })
        .collect()
}

/// RGB8 bytes padded with zeros to a multiple of 4 (buffer writes are 4-byte aligned).
fn padded(rgb: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let pad = (4 - rgb.len() % 4) % 4;
    if pad == 0 {
        std::borrow::Cow::Borrowed(rgb)
    } else {
        let mut v = rgb.to_vec();
        v.resize(rgb.len() + pad, 0);
        std::borrow::Cow::Owned(v)
    }
}

/// Which slot each tensor uses; see the module documentation for the rule.
fn assign_slots(desc: &NetworkDescription, shapes: &[Shape]) -> Vec<usize> {
    let n = shapes.len();
    // last_use[t]: index of the last layer reading tensor t (n - 1 = the output packing).
    let mut last_use: Vec<usize> = (0..n).map(|t| t.min(n - 1)).collect();
    last_use[n - 1] = n - 1;
    for (i, l) in desc.layers.iter().enumerate() {
        if let Some(j) = l.residual.as_ref().and_then(|r| desc.layer_index(r)) {
            last_use[j + 1] = last_use[j + 1].max(i);
        }
    }
    let mut slot_of = vec![0usize; n];
    // occupant[s]: the tensor currently in slot s.
    let mut occupant: Vec<usize> = Vec::new();
    for t in 0..n {
        // Tensor t is written by layer t - 1 (the input by the upload, "layer -1").
        let free = occupant.iter().position(|&o| t >= 1 && last_use[o] < t - 1);
        let s = match free {
            Some(s) => s,
            None => {
                occupant.push(t);
                occupant.len() - 1
            }
        };
        occupant[s] = t;
        slot_of[t] = s;
    }
    slot_of
}

/// Texels per row of a weight texture (`wld` in conv2d_subgroup.wgsl).
const WEIGHT_TEXTURE_WIDTH: u32 = 4096;

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

impl<'a> Builder<'a> {
    fn device(&self) -> &wgpu::Device {
        &self.ctx.device
    }

    fn uniform<T: Pod>(&self, value: &T) -> wgpu::Buffer {
        self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    fn init(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        let data = if data.is_empty() { &[0f32][..] } else { data };
        self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// A storage buffer of `data` rounded to f16 (nearest, ties to even), padded to 4 bytes.
    fn init_f16(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        let mut bits: Vec<u16> = data.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        while bits.is_empty() || !bits.len().is_multiple_of(2) {
            bits.push(0);
        }
        self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(&bits),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// A texture of `data`'s f32 bits as `Rgba32Uint`, one vec4 per texel, `WEIGHT_TEXTURE_WIDTH`
    /// texels per row (what `conv2d_subgroup`'s `wld` reads); rounded to f16 values first in an
    /// f16 plan.
    fn weight_texture(&self, label: &str, data: &[f32]) -> Result<wgpu::TextureView, GpuError> {
        let texels = data.len().div_ceil(4).max(1);
        let rows = texels.div_ceil(WEIGHT_TEXTURE_WIDTH as usize);
        let max = self.device().limits().max_texture_dimension_2d;
        if rows > max as usize || WEIGHT_TEXTURE_WIDTH > max {
            return Err(GpuError::Unsupported(format!(
                "`{label}` needs a {WEIGHT_TEXTURE_WIDTH} x {rows} texture; the adapter allows {max} x {max}"
            )));
        }
        let mut bits: Vec<u32> = data
            .iter()
            .map(|&v| match self.precision {
                StoragePrecision::F16 => half::f16::from_f32(v).to_f32(),
                StoragePrecision::F32 => v,
            })
            .map(f32::to_bits)
            .collect();
        bits.resize(rows * WEIGHT_TEXTURE_WIDTH as usize * 4, 0);
        let texture = self.device().create_texture_with_data(
            &self.ctx.queue,
            &wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d { width: WEIGHT_TEXTURE_WIDTH, height: rows as u32, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Uint,
                usage: wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            bytemuck::cast_slice(&bits),
        );
        Ok(texture.create_view(&wgpu::TextureViewDescriptor::default()))
    }

    /// The binding window of rows `[r0, r1)` of tensor `t`.
    fn window(&self, t: TensorRef, r0: u32, r1: u32) -> Window {
        let elem = self.precision.bytes();
        let row = t.shape.w as u64 * t.shape.c as u64 * elem;
        let start = r0 as u64 * row;
        let offset = start / self.ctx.offset_alignment * self.ctx.offset_alignment;
        // Whole 4-byte words: with f16 values a window can end mid-word (the slot has room).
        let size = ((r1 - r0).max(1) as u64 * row + (start - offset)).div_ceil(4) * 4;
        Window { offset, size, shift: ((start - offset) / elem) as u32 }
    }

    fn binding(&self, t: TensorRef, w: &Window) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.slots[t.slot],
            offset: w.offset,
            size: std::num::NonZeroU64::new(w.size),
        })
    }

    /// Splits `rows` output rows into the fewest equal bands whose windows (as computed by
    /// `windows(r0, r1)`, in bytes) all fit one binding.
    fn bands(&self, rows: u32, what: &str, windows: impl Fn(u32, u32) -> Vec<u64>) -> Result<Vec<(u32, u32)>, GpuError> {
        for n in 1..=rows.max(1) {
            let h = rows.div_ceil(n);
            let bands: Vec<(u32, u32)> = (0..rows).step_by(h as usize).map(|r0| (r0, (r0 + h).min(rows))).collect();
            if bands.iter().all(|&(a, b)| windows(a, b).iter().all(|&s| s <= self.ctx.max_binding)) {
                return Ok(bands);
            }
        }
        Err(GpuError::Device {
            context: format!("planning {what}"),
            reason: format!("one row does not fit a {} byte storage binding", self.ctx.max_binding),
        })
    }

    fn push_groups(&mut self, label: String, kernel: Kernel, overrides: &Overrides, groups: Vec<(Vec<wgpu::BindGroupEntry<'_>>, [u32; 3])>) {
        self.push_entry(label, kernel, "main", overrides, groups)
    }

    /// Adds a step: one pipeline, one bind group and dispatch per band.
    fn push_entry(
        &mut self,
        label: String,
        kernel: Kernel,
        entry: &'static str,
        overrides: &Overrides,
        groups: Vec<(Vec<wgpu::BindGroupEntry<'_>>, [u32; 3])>,
    ) {
        let step = self.step(label, kernel, entry, overrides, groups);
        self.steps.push(step);
    }

    /// A step: one pipeline, one bind group and dispatch per band.
    fn step(
        &self,
        label: String,
        kernel: Kernel,
        entry: &'static str,
        overrides: &Overrides,
        groups: Vec<(Vec<wgpu::BindGroupEntry<'_>>, [u32; 3])>,
    ) -> Step {
        let pipeline = self.ctx.pipelines().get(&self.ctx.device, kernel, self.precision, entry, overrides);
        let layout = pipeline.get_bind_group_layout(0);
        let dispatches = groups
            .into_iter()
            .map(|(e, wg)| (self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&label), layout: &layout, entries: &e }), wg))
            .collect();
        Step { label, kernel, pipeline, dispatches }
    }
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

/// 8-bit level differences of two frames of the same size: largest and mean.
pub fn level_diff(a: &[u8], b: &[u8]) -> SelfCheck {
    let max_levels = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
    let sum: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    SelfCheck { max_levels, mean_levels: sum as f64 / a.len().max(1) as f64 }
}

fn entry(binding: u32, resource: wgpu::BindingResource<'_>) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource }
}

#[cfg(test)]
mod layout_tests {
    //! The parameter structs written here and the uniform structs the shaders read agree: every
    //! named WGSL member sits at the offset of the Rust field of the same name, and the sizes
    //! match (naga's reflection of each kernel; no GPU needed).
    use super::conv::ConvParams;
    use super::norm::{ApplyParams, FinalizeParams, StatsParams};
    use super::pack::PackParams;
    use super::unpack::UnpackParams;
    use crate::model::gpu::{Kernel, StoragePrecision};

    /// (Rust struct name, size, named fields with their offsets).
    type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

    macro_rules! layout {
        ($t:ident { $($f:ident),* $(,)? }) => {
            (stringify!($t), std::mem::size_of::<$t>(), vec![$((stringify!($f), std::mem::offset_of!($t, $f))),*])
        };
    }

    fn rust_layouts() -> Vec<Layout> {
        vec![
            layout!(ConvParams { in_w, in_h, in_c, in_row0, out_w, out_h, out_c, out_row0, band_rows, in_shift, out_shift, oc_blocks, pad_top, pad_left, stats_base, tile_w }),
            layout!(StatsParams { channels, pixels, chunk_pixels, chunk_base, shift }),
            layout!(FinalizeParams { channels, chunks, eps }),
            layout!(ApplyParams { channels, count, shift, residual_shift }),
            layout!(UnpackParams { src_w, src_h, dst_w, dst_h, scale }),
            layout!(PackParams { src_w, dst_w, dst_h, scale, offset }),
        ]
    }

    #[test]
    fn rust_parameter_structs_match_the_shaders_uniform_structs() {
        let layouts = rust_layouts();
        let mut checked = 0;
        for k in Kernel::ALL {
            // The uniform structs are the same at both precisions: f32 is checked.
            let module = naga::front::wgsl::parse_str(&k.module_source(StoragePrecision::F32))
                .unwrap_or_else(|e| panic!("{}: {e}", k.file_name()));
            let uniform = module
                .global_variables
                .iter()
                .find(|(_, g)| g.space == naga::AddressSpace::Uniform)
                .unwrap_or_else(|| panic!("{} has no uniform parameters", k.file_name()))
                .1;
            let ty = &module.types[uniform.ty];
            let (naga::TypeInner::Struct { members, span }, Some(name)) = (&ty.inner, ty.name.as_deref()) else {
                panic!("{}: the uniform is not a named struct", k.file_name());
            };
            let (_, size, fields) = layouts
                .iter()
                .find(|(n, _, _)| *n == name)
                .unwrap_or_else(|| panic!("{}: no Rust struct named {name}", k.file_name()));
            assert_eq!(*span as usize, *size, "{}: {name} is {span} bytes in WGSL, {size} in Rust", k.file_name());
            let mut seen = Vec::new();
            for m in members {
                let Some(member) = m.name.as_deref().filter(|n| !n.starts_with('_')) else { continue };
                let offset = fields
                    .iter()
                    .find(|(f, _)| *f == member)
                    .map(|(_, o)| *o)
                    .unwrap_or_else(|| panic!("{}: {name}.{member} has no Rust field", k.file_name()));
                assert_eq!(m.offset as usize, offset, "{}: {name}.{member} at {} in WGSL, {offset} in Rust", k.file_name(), m.offset);
                seen.push(member);
                checked += 1;
            }
            for (f, _) in fields {
                assert!(seen.contains(f), "{}: Rust {name}.{f} is not read by the shader's struct", k.file_name());
            }
        }
        eprintln!("{checked} uniform members of {} kernels checked", Kernel::ALL.len());
        assert!(checked >= 6 * 15, "only {checked} members checked");
    }

    #[test]
    fn a_moved_field_is_caught() {
        // The check can fail: a WGSL struct with two members swapped does not match.
        let src = "struct ApplyParams { count: u32, channels: u32, shift: u32, residual_shift: u32 }\n\
                   @group(0) @binding(0) var<uniform> p: ApplyParams;\n@compute @workgroup_size(1) fn main() { _ = p.count; }";
        let module = naga::front::wgsl::parse_str(src).unwrap();
        let (_, _, fields) = rust_layouts().into_iter().find(|(n, _, _)| *n == "ApplyParams").unwrap();
        let ty = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("ApplyParams")).unwrap().1;
        let naga::TypeInner::Struct { members, .. } = &ty.inner else { panic!() };
        let agree = members.iter().all(|m| fields.iter().any(|(f, o)| Some(*f) == m.name.as_deref() && *o == m.offset as usize));
        assert!(!agree);
    }
}
