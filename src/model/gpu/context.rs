//! One wgpu device: adapter choice, the limits we ask for, and error capture.

use std::sync::{Arc, Mutex, MutexGuard};

use super::kernels::PipelineCache;
use super::precision::Precision;
use super::GpuError;

/// How to pick and configure the device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Index into the adapters found (Vulkan/Metal/DX12; `WGPU_BACKEND` overrides the set).
    /// `None`: the first one (a discrete GPU is preferred when there are several).
    pub adapter: Option<usize>,
    /// Cap on one storage-buffer binding, below the adapter's own limit. Activations larger than
    /// this are processed in row bands; tests use it to exercise banding at small sizes.
    pub max_binding_bytes: Option<u64>,
    /// Record per-kernel GPU times with timestamp queries when the adapter has them.
    pub timestamps: bool,
    /// Do not use the subgroup kernel variants even where the adapter has subgroups.
    pub no_subgroups: bool,
    /// Compile the shaders with naga's runtime checks (index clamps, loop bounds). By default
    /// they are compiled trusted, without them: the kernels compute every index inside the
    /// bound window themselves (tests compare checked and trusted runs bit for bit, at sizes
    /// with partial tiles and row bands), and storage buffers stay protected by the driver's
    /// robust buffer access.
    pub checked_shaders: bool,
    /// Unfused instance norm, for comparison: a statistics pass after every convolution (not
    /// the conv's epilogue) and an apply pass for every norm (not the next conv's loads).
    pub unfused_norm: bool,
    /// Storage precision of the convolution weights (see `Precision`).
    pub precision: Precision,
    /// How each plan's kernel set is chosen (see `select`).
    pub kernels: super::KernelChoice,
}

/// What the adapter is, for logs and benchmark reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// A device and its queue, with the limits that were granted.
pub struct GpuContext {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    pub(super) adapter: AdapterSummary,
    /// Largest storage binding we use (the adapter's limit or the configured cap).
    pub(super) max_binding: u64,
    pub(super) max_buffer: u64,
    pub(super) offset_alignment: u64,
    pub(super) timestamps: bool,
    /// Subgroups of a multiple of 8 invocations are available: use the `*_subgroup` kernels.
    pub(super) subgroups: bool,
    /// Compiled pipelines of this device, shared by every plan built on it (another frame size
    /// or another model reuses them). Bounded: one entry per (kernel, entry point, overrides),
    /// and the network has a fixed, small set of those.
    pipelines: Mutex<PipelineCache>,
    /// See `GpuOptions::unfused_norm`.
    pub(super) unfused_norm: bool,
    /// See `GpuOptions::kernels`.
    pub(super) kernels: super::KernelChoice,
    /// See `GpuOptions::precision`.
    pub(super) precision: Precision,
    /// The device was created with SHADER_F16 (the adapter has it and f16 may be used).
    pub(super) f16: bool,
    /// A CPU adapter (lavapipe, WARP, ...): `Precision::Auto` means f32 there.
    pub(super) cpu: bool,
    /// The device has EXPERIMENTAL_COOPERATIVE_MATRIX (and SUBGROUP) enabled for the `coop`
    /// kernels: their subgroup size; or why not (see `coop::probe`).
    pub(super) coop: Result<u32, String>,
}

/// Devices opened by this process (a long-lived service opens one per worker, once).
static DEVICES_OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many GPU devices this process has opened so far.
pub fn devices_opened() -> u64 {
    DEVICES_OPENED.load(std::sync::atomic::Ordering::Relaxed)
}

impl GpuContext {
    /// Opens the chosen adapter and asks it for the largest buffers it can give.
    pub fn new(opts: &GpuOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::new_async(opts))
    }

    /// Lists the adapters that `new` can choose from.
    pub fn adapters() -> Vec<AdapterSummary> {
        pollster::block_on(async {
            let instance = instance();
            sorted_adapters(&instance).await.iter().map(summary).collect()
        })
    }

    async fn new_async(opts: &GpuOptions) -> Result<Self, GpuError> {
        let instance = instance();
        let mut adapters = sorted_adapters(&instance).await;
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter { backends: format!("{:?}", backends()) });
        }
        let index = opts.adapter.unwrap_or(0);
        if index >= adapters.len() {
            return Err(GpuError::AdapterIndex { index, count: adapters.len() });
        }
        let adapter = adapters.swap_remove(index);
        let info = summary(&adapter);
        let have = adapter.limits();
        let timestamps = opts.timestamps && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let raw = adapter.get_info();
        let subgroups = !opts.no_subgroups
            && adapter.features().contains(wgpu::Features::SUBGROUP)
            && raw.subgroup_min_size >= 8
            && raw.subgroup_max_size <= 64;
        let mut features = wgpu::Features::empty();
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let has_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        if opts.precision == Precision::F16 && !has_f16 {
            return Err(GpuError::NoF16 { adapter: info.to_string() });
        }
        // Only where f16 may be used: `Auto` is f32 on CPU adapters, which keep the device
        // (and so the f32 output) they had before f16 existed.
        let cpu = raw.device_type == wgpu::DeviceType::Cpu;
        let f16 = has_f16 && (opts.precision == Precision::F16 || (opts.precision == Precision::Auto && !cpu));
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        // The cooperative-matrix kernels (the `coop` set): where f16 is in use and the adapter has
        // what they need (`coop::probe`), whatever this device's own kernel choice (a plan may
        // ask for another: `NetworkPlan::new_as`).
        let coop = super::coop::probe(&adapter, f16);
        let experimental_features = match &coop {
            Ok(_) => {
                features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SUBGROUP;
                // SAFETY: wgpu's experimental features may hold bugs with undefined behaviour. Only
                // EXPERIMENTAL_COOPERATIVE_MATRIX is requested, only on an adapter that offers it
                // with the shape our kernels use, and a plan uses those kernels only after its
                // self-check agrees with the f16 path (`coop::usable`).
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            }
            Err(why) => {
                tracing::debug!(adapter = %info, reason = %why, "no cooperative-matrix kernels");
                wgpu::ExperimentalFeatures::disabled()
            }
        };
        // Everything the adapter offers, not WebGPU's defaults: frames need the largest
        // buffers there are, and tiled kernels the real workgroup memory (16 KiB by default,
        // 32 KiB on lavapipe, 48 KiB on NVIDIA).
        let required_limits = have.clone();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("stylestream"),
                required_features: features,
                required_limits,
                experimental_features,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: info.name.clone(), reason: e.to_string() })?;
        DEVICES_OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Errors are captured with error scopes where they can happen; anything else is logged
        // instead of wgpu's default panic.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            tracing::error!(error = %e, "uncaptured wgpu error");
        }));
        let limits = device.limits();
        let mut max_binding = limits.max_storage_buffer_binding_size;
        if let Some(cap) = opts.max_binding_bytes {
            max_binding = max_binding.min(cap);
        }
        let coop_subgroup = coop.as_ref().ok().copied();
        tracing::info!(
            adapter = %info, max_binding_mib = max_binding as f64 / 1048576.0, subgroups, ?coop_subgroup,
            "GPU device ready"
        );
        Ok(Self {
            device,
            queue,
            adapter: info,
            max_binding,
            max_buffer: limits.max_buffer_size,
            offset_alignment: limits.min_storage_buffer_offset_alignment as u64,
            timestamps,
            subgroups,
            pipelines: Mutex::new(PipelineCache::new(!opts.checked_shaders)),
            unfused_norm: opts.unfused_norm,
            kernels: opts.kernels,
            precision: opts.precision,
            f16,
            cpu,
            coop,
        })
    }

    /// The device's pipeline cache (a poisoned lock only means another plan build panicked;
    /// the cache itself is always consistent, so it is used as it is).
    pub(super) fn pipelines(&self) -> MutexGuard<'_, PipelineCache> {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of compute pipelines compiled on this device so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines().len()
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// Whether the subgroup kernel variants are in use.
    pub fn uses_subgroups(&self) -> bool {
        self.subgroups
    }

    /// The precision asked for (`Auto` is resolved per plan: `NetworkPlan::precision`).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether the device has SHADER_F16 enabled (the adapter has it and f32 was not forced).
    pub fn has_f16(&self) -> bool {
        self.f16
    }

    /// The subgroup size the cooperative-matrix kernels (`--kernels coop`) run with on this
    /// device, or why the device cannot run them.
    pub fn coop(&self) -> Result<u32, &str> {
        self.coop.as_ref().copied().map_err(String::as_str)
    }

    /// Whether per-kernel timestamps are being recorded.
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }
}

/// Runs `f` inside validation and out-of-memory error scopes and reports what they caught.
pub(super) fn scoped<T>(device: &wgpu::Device, context: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let errors = pollster::block_on(async { (validation.pop().await, oom.pop().await) });
    match errors {
        (Some(e), _) | (None, Some(e)) => Err(GpuError::Device { context: context.to_string(), reason: e.to_string() }),
        (None, None) => Ok(value),
    }
}

fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12)
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

/// Adapters in a stable order: discrete GPUs first, then integrated, then the rest.
async fn sorted_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = instance.enumerate_adapters(backends()).await;
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    adapters.sort_by_key(rank);
    adapters
}

fn summary(a: &wgpu::Adapter) -> AdapterSummary {
    let i = a.get_info();
    AdapterSummary {
        name: i.name,
        backend: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
    }
}
