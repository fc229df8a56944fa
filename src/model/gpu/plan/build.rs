//! Putting a plan together: its buffers, the `Builder` that the op files add steps with, and the
//! builder's helpers (parameter and weight buffers, binding windows, row bands, pipelines).

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use super::norm::NormScratch;
use super::slots::assign_slots;
use super::{staging, storage, tensor_bytes, NetworkPlan, Step, TensorRef, Timing, Window};
use crate::model::description::{Activation, NetworkDescription, Op, Shape};
use crate::model::geometry::working_size;
use crate::model::gpu::context::GpuContext;
use crate::model::gpu::kernels::{Kernel, Overrides};
use crate::model::gpu::precision::StoragePrecision;
use crate::model::gpu::select::{Source as VariantSource, Variant};
use crate::model::gpu::weights::gpu_channels;
use crate::model::gpu::GpuError;
use crate::model::weights::Weights;

/// Builds plans; holds what is shared while building.
pub(super) struct Builder<'a> {
    pub(super) ctx: &'a GpuContext,
    pub(super) variant: Variant,
    pub(super) tensors: Vec<TensorRef>,
    pub(super) slots: &'a [wgpu::Buffer],
    pub(super) steps: Vec<Step>,
    /// Per layer: its norm / activation is applied by the next convolution as it loads.
    pub(super) defer: Vec<bool>,
    /// The deferred coefficients (and ReLU) of the previous layer, for the next convolution.
    pub(super) pending: Option<(wgpu::Buffer, bool)>,
    pub(super) materialize: Vec<Option<Step>>,
    /// A 16-byte buffer bound where a kernel's optional input is unused.
    pub(super) placeholder: wgpu::Buffer,
    /// The same for an optional read-write output (a buffer cannot be bound both ways at once).
    pub(super) placeholder_rw: wgpu::Buffer,
    /// The norm partials the last convolution wrote in its epilogue, and their chunk count.
    pub(super) epilogue_stats: Option<(wgpu::Buffer, u32)>,
    /// What activations and weights are stored as: every kernel is loaded at this precision.
    pub(super) precision: StoragePrecision,
}

/// Texels per row of a weight texture (`wld` in conv2d_subgroup.wgsl).
const WEIGHT_TEXTURE_WIDTH: u32 = 4096;

impl NetworkPlan {
    /// Builds the network at `precision` with kernel set `variant` (outside an error scope:
    /// callers wrap it in one, see `with_variant`).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::model::gpu) fn build(
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

impl<'a> Builder<'a> {
    pub(super) fn device(&self) -> &wgpu::Device {
        &self.ctx.device
    }

    pub(super) fn uniform<T: Pod>(&self, value: &T) -> wgpu::Buffer {
        self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    pub(super) fn init(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        let data = if data.is_empty() { &[0f32][..] } else { data };
        self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// A storage buffer of `data` rounded to f16 (nearest, ties to even), padded to 4 bytes.
    pub(super) fn init_f16(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
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
    pub(super) fn weight_texture(&self, label: &str, data: &[f32]) -> Result<wgpu::TextureView, GpuError> {
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
    pub(super) fn window(&self, t: TensorRef, r0: u32, r1: u32) -> Window {
        let elem = self.precision.bytes();
        let row = t.shape.w as u64 * t.shape.c as u64 * elem;
        let start = r0 as u64 * row;
        let offset = start / self.ctx.offset_alignment * self.ctx.offset_alignment;
        // Whole 4-byte words: with f16 values a window can end mid-word (the slot has room).
        let size = ((r1 - r0).max(1) as u64 * row + (start - offset)).div_ceil(4) * 4;
        Window { offset, size, shift: ((start - offset) / elem) as u32 }
    }

    pub(super) fn binding(&self, t: TensorRef, w: &Window) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.slots[t.slot],
            offset: w.offset,
            size: std::num::NonZeroU64::new(w.size),
        })
    }

    /// Splits `rows` output rows into the fewest equal bands whose windows (as computed by
    /// `windows(r0, r1)`, in bytes) all fit one binding.
    pub(super) fn bands(
        &self,
        rows: u32,
        what: &str,
        windows: impl Fn(u32, u32) -> Vec<u64>,
    ) -> Result<Vec<(u32, u32)>, GpuError> {
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

    pub(super) fn push_groups(
        &mut self,
        label: String,
        kernel: Kernel,
        overrides: &Overrides,
        groups: Vec<(Vec<wgpu::BindGroupEntry<'_>>, [u32; 3])>,
    ) {
        self.push_entry(label, kernel, "main", overrides, groups)
    }

    /// Adds a step: one pipeline, one bind group and dispatch per band.
    pub(super) fn push_entry(
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
    pub(super) fn step(
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
            .map(|(e, wg)| {
                let desc = wgpu::BindGroupDescriptor { label: Some(&label), layout: &layout, entries: &e };
                (self.ctx.device.create_bind_group(&desc), wg)
            })
            .collect();
        Step { label, kernel, pipeline, dispatches }
    }
}
