//! The network on wgpu: device context, the kernel registry (one `.wgsl` file per op), and the
//! per-(model, frame size) plan. The only module of the crate that touches wgpu.

mod context;
mod coop;
mod kernels;
mod plan;
mod precision;
mod select;
mod weights;

pub use context::{devices_opened, AdapterSummary, GpuContext, GpuOptions};
pub use coop::{COOP_TOLERANCE, COOP_WORKGROUP_BYTES};
pub use kernels::{
    Kernel, CONV_PRELUDE, CONV_PRELUDE_FILE, COOP_ENABLE, COOP_ENABLE_FILE, GEMM_COOP_PRELUDE, GEMM_COOP_PRELUDE_FILE,
};
pub use plan::{FrameOutput, InFlight, KernelTime, NetworkPlan};
pub use precision::{level_diff, Precision, SelfCheck, StoragePrecision, F16_MAX_LEVELS, F16_MEAN_LEVELS};
pub use select::{cache_path as kernel_cache_path, KernelChoice, KernelSetError, Source as VariantSource, Variant};

/// Errors of the GPU path, each with what was asked and what the adapter offered.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found ({backends}); on Linux without a GPU install mesa-vulkan-drivers (lavapipe)")]
    NoAdapter { backends: String },
    #[error("adapter {index} requested, but only {count} adapter(s) exist")]
    AdapterIndex { index: usize, count: usize },
    #[error("adapter `{adapter}` refused the device: {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error(
        "a {width}x{height} frame needs a {need_mib:.1} MiB buffer for `{tensor}`, but adapter `{adapter}` allows {limit_mib:.1} MiB"
    )]
    FrameTooLarge { width: u32, height: u32, tensor: String, need_mib: f64, limit_mib: f64, adapter: String },
    #[error("frame size {width}x{height} is invalid: {reason}")]
    FrameSize { width: u32, height: u32, reason: String },
    #[error("GPU error in {context}: {reason}")]
    Device { context: String, reason: String },
    #[error("network not supported on the GPU: {0}")]
    Unsupported(String),
    #[error("network not supported on the GPU: {0}")]
    KernelSet(#[from] select::KernelSetError),
    #[error("f16 precision requested, but adapter `{adapter}` has no SHADER_F16 (use --precision f32 or auto)")]
    NoF16 { adapter: String },
    #[error("unknown layer `{0}`")]
    UnknownLayer(String),
}
