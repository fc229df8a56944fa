//! Precision: what is asked for (`Precision`), what a plan stores its activations and weights
//! in (`StoragePrecision`, which picks the precision prelude its kernels are joined with), and
//! the policy that resolves the one into the other (`Auto`: f32 on CPU adapters, else f16 when
//! a self-check against f32 passes).

use super::context::{scoped, GpuContext};
use super::plan::{noise_frame, NetworkPlan};
use super::GpuError;
use crate::model::{NetworkDescription, Weights};

/// Precision of the network on the GPU. `F16` stores the convolution weights and every
/// activation tensor as f16 (every kernel joined with `shaders/precision_f16.wgsl`, feature
/// SHADER_F16): half the memory traffic; all arithmetic (accumulation, instance-norm
/// statistics, coefficients, the residual add) is f32, and bias and the host-facing outputs
/// stay f32. `Auto` (the default) is f32 on CPU adapters and on adapters without SHADER_F16; on
/// other adapters each plan uses f16 only when a self-check at 64x48
/// (`NetworkPlan::f16_self_check`) passes against f32, else f32 with a log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    #[default]
    Auto,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Auto => "auto",
        }
    }
}

/// The precision activations (and the storage-buffer weights) are stored in: which precision
/// prelude every kernel is joined with. Arithmetic is f32 at both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoragePrecision {
    F32,
    /// Needs the device feature SHADER_F16.
    F16,
}

impl StoragePrecision {
    pub const ALL: [StoragePrecision; 2] = [StoragePrecision::F32, StoragePrecision::F16];

    pub fn name(self) -> &'static str {
        match self {
            StoragePrecision::F32 => "f32",
            StoragePrecision::F16 => "f16",
        }
    }

    /// Bytes of one stored value.
    pub fn bytes(self) -> u64 {
        match self {
            StoragePrecision::F32 => 4,
            StoragePrecision::F16 => 2,
        }
    }

    /// The precision prelude: the stored type `st` / `st4` and its conversions to and from f32.
    pub fn prelude(self) -> &'static str {
        match self {
            StoragePrecision::F32 => include_str!("../../../shaders/precision_f32.wgsl"),
            StoragePrecision::F16 => include_str!("../../../shaders/precision_f16.wgsl"),
        }
    }

    /// Its file in `shaders/`.
    pub fn prelude_file(self) -> String {
        format!("precision_{}.wgsl", self.name())
    }
}

impl From<StoragePrecision> for Precision {
    fn from(p: StoragePrecision) -> Self {
        match p {
            StoragePrecision::F32 => Precision::F32,
            StoragePrecision::F16 => Precision::F16,
        }
    }
}

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

    /// Within `bound` (its largest and mean differences), e.g. `COOP_TOLERANCE`.
    pub fn within(&self, bound: &SelfCheck) -> bool {
        self.max_levels <= bound.max_levels && self.mean_levels <= bound.mean_levels
    }
}

/// The storage precision of a plan on `ctx`: `Precision::F32` and `F16` as asked (f16 only on a
/// device with SHADER_F16), `Auto` by `auto`.
pub(super) fn resolve(
    ctx: &GpuContext,
    asked: Precision,
    desc: &NetworkDescription,
    weights: &Weights,
) -> Result<StoragePrecision, GpuError> {
    match asked {
        Precision::F32 => Ok(StoragePrecision::F32),
        Precision::F16 if ctx.f16 => Ok(StoragePrecision::F16),
        Precision::F16 => Err(GpuError::NoF16 { adapter: ctx.adapter.to_string() }),
        Precision::Auto => auto(ctx, desc, weights),
    }
}

/// `Precision::Auto`: f32 on CPU adapters and without SHADER_F16; elsewhere f16 when the
/// self-check passes.
fn auto(ctx: &GpuContext, desc: &NetworkDescription, weights: &Weights) -> Result<StoragePrecision, GpuError> {
    if ctx.cpu {
        return Ok(StoragePrecision::F32);
    }
    if !ctx.f16 {
        tracing::info!(adapter = %ctx.adapter, "precision auto: f32 (the adapter has no SHADER_F16)");
        return Ok(StoragePrecision::F32);
    }
    let check = f16_self_check(ctx, desc, weights)?;
    let (adapter, max_levels, mean_levels) = (&ctx.adapter, check.max_levels, check.mean_levels);
    if check.passes() {
        tracing::info!(%adapter, max_levels, mean_levels, "precision auto: f16 (self-check passed)");
        Ok(StoragePrecision::F16)
    } else {
        tracing::warn!(
            %adapter, max_levels, mean_levels,
            "precision auto: f32 (the f16 self-check differs from f32 by more than {F16_MAX_LEVELS} levels max or {F16_MEAN_LEVELS} mean)"
        );
        Ok(StoragePrecision::F32)
    }
}

/// Runs one fixed pseudo-random 64x48 frame through an f32 and an f16 plan of the network
/// and compares their 8-bit outputs. Needs a device with SHADER_F16 (`has_f16`).
pub(super) fn f16_self_check(
    ctx: &GpuContext,
    desc: &NetworkDescription,
    weights: &Weights,
) -> Result<SelfCheck, GpuError> {
    if !ctx.f16 {
        return Err(GpuError::NoF16 { adapter: ctx.adapter.to_string() });
    }
    let (w, h) = SELF_CHECK_SIZE;
    let frame = noise_frame(w, h, 0x9e37_79b9_7f4a_7c15);
    let run = |precision: StoragePrecision| -> Result<Vec<u8>, GpuError> {
        let variant = super::select::default_variant(ctx);
        let build = || NetworkPlan::build(ctx, desc, weights, w, h, precision, variant);
        let plan = scoped(&ctx.device, "building the f16 self-check plan", build)??;
        Ok(plan.run(&frame)?.rgb)
    };
    let (full, halved) = (run(StoragePrecision::F32)?, run(StoragePrecision::F16)?);
    Ok(level_diff(&full, &halved))
}

/// 8-bit level differences of two frames of the same size: largest and mean.
pub fn level_diff(a: &[u8], b: &[u8]) -> SelfCheck {
    let max_levels = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
    let sum: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    SelfCheck { max_levels, mean_levels: sum as f64 / a.len().max(1) as f64 }
}
