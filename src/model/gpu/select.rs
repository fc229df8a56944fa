//! Which kernel set a plan is built with, chosen per adapter.
//!
//! The candidates (`Variant`) are the conv kernels with or without subgroup broadcasts, each
//! with instance norm fused (statistics in the conv's epilogue, apply in the next conv's loads)
//! or unfused. What is fastest differs by adapter (lavapipe wants barrier-free subgroup
//! kernels; a memory-bound GPU wants the fusion), so with `KernelChoice::Timed` every candidate
//! the adapter can run is built at the plan's real size, checked against the first one, timed,
//! and the fastest kept — decided once per process (every worker of a job gets the same
//! answer, so output stays identical across workers) and cached on disk per (adapter, driver,
//! stylestream version, model, size, precision), so later runs skip the timing.
//! `KernelChoice::Auto` (the default) is the fixed default set on CPU adapters — CI output does
//! not change, and no time goes to timing a CPU — and `Timed` on GPUs.
//!
//! `Variant::Coop` (cooperative matrices, f16 only) is a candidate only in f16 plans on a device
//! that can run it and whose self-check passed (`coop::usable`), and is checked against the f32
//! path within `COOP_TOLERANCE` before it is timed. Asked for by name where it is not usable,
//! it falls back to the default set with a warning that says why (`Source::Fallback`); asked for
//! in an f32 plan it is an error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use super::coop::{self, COOP_TOLERANCE};
use super::plan::{noise_frame, NetworkPlan};
use super::precision::{level_diff, StoragePrecision};
use super::{GpuContext, GpuError};
use crate::model::{NetworkDescription, Weights};

/// A kernel set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Subgroup,
    SubgroupUnfused,
    Plain,
    PlainUnfused,
    /// The 3x3 layers as a tiled implicit GEMM (`conv2d_tiled`) with 64-pixel x 64-channel
    /// tiles, the others plain; norm fused as in `plain`.
    Tiled,
    /// `tiled` with 32 x 32 tiles (64 invocations: more workgroups for small frames).
    #[serde(rename = "tiled-32x32")]
    Tiled32x32,
    /// `tiled` with 128 x 64 tiles (512 invocations: each weight reused by 128 pixels).
    #[serde(rename = "tiled-128x64")]
    Tiled128x64,
    /// The 3x3 layers and the transposed convs as implicit GEMMs on cooperative matrices
    /// (`conv2d_coop`, `conv_transpose2d_coop`: f16 16x16x16, f32 accumulation), the 9x9 ones on
    /// the subgroup kernels where the device has subgroups, else plain; norm fused. f16 only.
    Coop,
}

impl Variant {
    /// Every set; `Coop` last (the first candidate timed is the reference of the others).
    pub const ALL: [Variant; 8] = [
        Variant::Subgroup,
        Variant::SubgroupUnfused,
        Variant::Plain,
        Variant::PlainUnfused,
        Variant::Tiled,
        Variant::Tiled32x32,
        Variant::Tiled128x64,
        Variant::Coop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Subgroup => "subgroup",
            Variant::SubgroupUnfused => "subgroup-unfused",
            Variant::Plain => "plain",
            Variant::PlainUnfused => "plain-unfused",
            Variant::Tiled => "tiled",
            Variant::Tiled32x32 => "tiled-32x32",
            Variant::Tiled128x64 => "tiled-128x64",
            Variant::Coop => "coop",
        }
    }

    /// The 3x3 convolutions as a tiled implicit GEMM.
    pub fn tiled(self) -> bool {
        self.tile().is_some()
    }

    /// The tiled GEMM's tile: (pixels, output channels), the override constants TM and TN of
    /// `conv2d_tiled.wgsl` (multiples of 16, TM at most 128 and TN at most 64: its arrays).
    pub fn tile(self) -> Option<(u32, u32)> {
        match self {
            Variant::Tiled => Some((64, 64)),
            Variant::Tiled32x32 => Some((32, 32)),
            Variant::Tiled128x64 => Some((128, 64)),
            _ => None,
        }
    }

    /// Conv kernels that share weights across a subgroup (feature SUBGROUP).
    pub fn subgroups(self) -> bool {
        matches!(self, Variant::Subgroup | Variant::SubgroupUnfused)
    }

    /// Instance norm fused into the convolutions.
    pub fn fused_norm(self) -> bool {
        matches!(self, Variant::Subgroup | Variant::Plain | Variant::Coop) || self.tiled()
    }

    /// The convolutions as GEMMs on cooperative matrices (f16 plans only).
    pub fn coop(self) -> bool {
        self == Variant::Coop
    }

    fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// How a plan's kernel set is chosen (`--kernels`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelChoice {
    /// The default set on CPU adapters; timed on GPUs.
    #[default]
    Auto,
    /// Time the candidates at the plan's size (cached on disk), keep the fastest.
    Timed,
    Subgroup,
    SubgroupUnfused,
    Plain,
    PlainUnfused,
    Tiled,
    #[value(name = "tiled-32x32")]
    #[serde(rename = "tiled-32x32")]
    Tiled32x32,
    #[value(name = "tiled-128x64")]
    #[serde(rename = "tiled-128x64")]
    Tiled128x64,
    /// Cooperative matrices (f16 only; falls back to the default set where unusable).
    Coop,
}

impl KernelChoice {
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Auto => "auto",
            KernelChoice::Timed => "timed",
            KernelChoice::Subgroup => "subgroup",
            KernelChoice::SubgroupUnfused => "subgroup-unfused",
            KernelChoice::Plain => "plain",
            KernelChoice::PlainUnfused => "plain-unfused",
            KernelChoice::Tiled => "tiled",
            KernelChoice::Tiled32x32 => "tiled-32x32",
            KernelChoice::Tiled128x64 => "tiled-128x64",
            KernelChoice::Coop => "coop",
        }
    }

    /// The choice that forces `v`.
    pub fn of(v: Variant) -> KernelChoice {
        match v {
            Variant::Subgroup => KernelChoice::Subgroup,
            Variant::SubgroupUnfused => KernelChoice::SubgroupUnfused,
            Variant::Plain => KernelChoice::Plain,
            Variant::PlainUnfused => KernelChoice::PlainUnfused,
            Variant::Tiled => KernelChoice::Tiled,
            Variant::Tiled32x32 => KernelChoice::Tiled32x32,
            Variant::Tiled128x64 => KernelChoice::Tiled128x64,
            Variant::Coop => KernelChoice::Coop,
        }
    }

    fn forced(self) -> Option<Variant> {
        match self {
            KernelChoice::Auto | KernelChoice::Timed => None,
            KernelChoice::Subgroup => Some(Variant::Subgroup),
            KernelChoice::SubgroupUnfused => Some(Variant::SubgroupUnfused),
            KernelChoice::Plain => Some(Variant::Plain),
            KernelChoice::PlainUnfused => Some(Variant::PlainUnfused),
            KernelChoice::Tiled => Some(Variant::Tiled),
            KernelChoice::Tiled32x32 => Some(Variant::Tiled32x32),
            KernelChoice::Tiled128x64 => Some(Variant::Tiled128x64),
            KernelChoice::Coop => Some(Variant::Coop),
        }
    }
}

/// Workgroup memory of `conv2d_tiled.wgsl`: its two double-buffered tiles, sized for the
/// largest tile of any variant (1,024 + 512 vec4s).
pub const TILED_WORKGROUP_BYTES: u32 = (1024 + 512) * 16;

/// Why a device cannot run a kernel set, naming the set and the adapter.
#[derive(Debug, thiserror::Error)]
pub enum KernelSetError {
    #[error("kernels `{variant}` need subgroups, which adapter `{adapter}` lacks (or --no-subgroups)")]
    NoSubgroups { variant: &'static str, adapter: String },
    #[error(
        "kernels `{variant}` need {need_bytes} bytes of workgroup memory and {need_invocations} invocations per workgroup; \
         adapter `{adapter}` has {have_bytes} and {have_invocations}"
    )]
    Workgroup {
        variant: &'static str,
        need_bytes: u32,
        need_invocations: u32,
        adapter: String,
        have_bytes: u32,
        have_invocations: u32,
    },
    #[error("kernels `coop` are f16 only: use --precision f16 (or auto) with them")]
    CoopNeedsF16,
    #[error("kernels `coop` cannot run on adapter `{adapter}`: {reason}")]
    NoCoop { adapter: String, reason: String },
}

/// Whether the device can run `v`: subgroups where it needs them, and for the tiled GEMM the
/// workgroup memory and invocations of its tile.
fn runs_on(ctx: &GpuContext, v: Variant) -> Result<(), KernelSetError> {
    if v.subgroups() && !ctx.subgroups {
        return Err(KernelSetError::NoSubgroups { variant: v.name(), adapter: ctx.adapter.to_string() });
    }
    if let (true, Err(reason)) = (v.coop(), &ctx.coop) {
        return Err(KernelSetError::NoCoop { adapter: ctx.adapter.to_string(), reason: reason.clone() });
    }
    if let Some((tm, tn)) = v.tile() {
        let limits = ctx.device.limits();
        let (have_bytes, have_invocations) =
            (limits.max_compute_workgroup_storage_size, limits.max_compute_invocations_per_workgroup);
        if have_bytes < TILED_WORKGROUP_BYTES || have_invocations < tm * tn / 16 {
            return Err(KernelSetError::Workgroup {
                variant: v.name(),
                need_bytes: TILED_WORKGROUP_BYTES,
                need_invocations: tm * tn / 16,
                adapter: ctx.adapter.to_string(),
                have_bytes,
                have_invocations,
            });
        }
    }
    Ok(())
}

/// The variants a plan at `precision` may use on this device: every set it can run (each loads
/// at both precisions) but `Coop`, which only where `coop::usable` says so (f16 plans; the log
/// says why not).
fn candidates(
    ctx: &GpuContext,
    desc: &NetworkDescription,
    weights: &Weights,
    precision: StoragePrecision,
) -> Vec<Variant> {
    let coop = || match (ctx.coop.is_ok(), coop::usable(ctx, desc, weights, precision)) {
        (_, Ok(())) => true,
        (false, Err(_)) => false,
        (true, Err(why)) => {
            tracing::warn!(adapter = %ctx.adapter, reason = %why, "kernels coop left out of the candidates");
            false
        }
    };
    let mut out: Vec<Variant> = Variant::ALL.into_iter().filter(|&v| !v.coop() && runs_on(ctx, v).is_ok()).collect();
    if precision == StoragePrecision::F16 && coop() {
        out.push(Variant::Coop);
    }
    out
}

/// The variant of today's defaults: subgroups where the device has them, fused unless
/// `unfused_norm`.
pub(super) fn default_variant(ctx: &GpuContext) -> Variant {
    match (ctx.subgroups, ctx.unfused_norm) {
        (true, false) => Variant::Subgroup,
        (true, true) => Variant::SubgroupUnfused,
        (false, false) => Variant::Plain,
        (false, true) => Variant::PlainUnfused,
    }
}

/// Where a choice came from (for logs and `bench --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Forced,
    Default,
    /// Timed in this process now.
    Timed,
    /// From this process's earlier decision or the disk cache.
    Cached,
    /// The set asked for cannot be used here (`coop` without cooperative matrices, or whose
    /// self-check failed): the default set instead, with a warning that says why.
    Fallback,
}

/// Decisions taken in this process: every plan (every worker) with the same key gets the same.
static DECIDED: Mutex<Option<HashMap<String, Variant>>> = Mutex::new(None);

/// One entry of the disk cache.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    variant: String,
    /// Milliseconds per frame of each candidate when it was timed.
    ms: BTreeMap<String, f64>,
    decided_at: String,
}

/// The disk cache: `$STYLESTREAM_KERNEL_CACHE`, else `$XDG_CACHE_HOME/stylestream/kernels.json`,
/// else `~/.cache/stylestream/kernels.json`.
pub fn cache_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STYLESTREAM_KERNEL_CACHE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("stylestream").join("kernels.json"))
}

fn read_cache(path: &std::path::Path) -> BTreeMap<String, Entry> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write_cache(path: &std::path::Path, key: &str, entry: Entry) {
    let mut all = read_cache(path);
    all.insert(key.to_string(), entry);
    let written = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other).and_then(|bytes| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::media::write_atomic(path, &bytes)
    });
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "could not write the kernel choice cache");
    }
}

fn key(ctx: &GpuContext, weights: &Weights, width: u32, height: u32, precision: StoragePrecision) -> String {
    let a = &ctx.adapter;
    format!(
        "{}|{}|{}|{}|stylestream {}|model {}|{}x{}|{}",
        a.name,
        a.backend,
        a.driver,
        if ctx.subgroups { "subgroups" } else { "no-subgroups" },
        env!("CARGO_PKG_VERSION"),
        weights.sha256,
        width,
        height,
        precision.name()
    )
}

/// The variant a plan of `width x height` uses on `ctx`, and where the choice came from.
#[allow(clippy::too_many_arguments)]
pub(super) fn choose(
    ctx: &GpuContext,
    kernels: super::KernelChoice,
    desc: &NetworkDescription,
    weights: &Weights,
    width: u32,
    height: u32,
    precision: StoragePrecision,
) -> Result<(Variant, Source), GpuError> {
    if kernels == super::KernelChoice::Coop {
        if precision != StoragePrecision::F16 {
            return Err(KernelSetError::CoopNeedsF16.into());
        }
        return Ok(match coop::usable(ctx, desc, weights, precision) {
            Ok(()) => (Variant::Coop, Source::Forced),
            Err(why) => {
                let v = default_variant(ctx);
                tracing::warn!(
                    adapter = %ctx.adapter, reason = %why,
                    "kernels coop cannot be used: {} kernels instead", v.name()
                );
                (v, Source::Fallback)
            }
        });
    }
    if let Some(v) = kernels.forced() {
        runs_on(ctx, v)?;
        return Ok((v, Source::Forced));
    }
    if kernels == super::KernelChoice::Auto && ctx.cpu {
        return Ok((default_variant(ctx), Source::Default));
    }
    let key = key(ctx, weights, width, height, precision);
    // Held while deciding: other workers wait for the answer instead of timing too.
    let mut decided = DECIDED.lock().unwrap_or_else(|e| e.into_inner());
    let memo = decided.get_or_insert_with(HashMap::new);
    if let Some(v) = memo.get(&key) {
        return Ok((*v, Source::Cached));
    }
    let path = cache_path();
    if let Some(v) = path.as_deref().and_then(|p| read_cache(p).get(&key).and_then(|e| Variant::from_name(&e.variant)))
    {
        if candidates(ctx, desc, weights, precision).contains(&v) {
            tracing::info!(variant = v.name(), key = %key, "kernels from the choice cache");
            memo.insert(key, v);
            return Ok((v, Source::Cached));
        }
    }
    let (best, ms) = time_candidates(ctx, desc, weights, width, height, precision)?;
    tracing::info!(variant = best.name(), ms = ?ms, "kernels chosen by timing");
    if let Some(p) = &path {
        let entry = Entry { variant: best.name().into(), ms, decided_at: chrono::Utc::now().to_rfc3339() };
        write_cache(p, &key, entry);
    }
    memo.insert(key, best);
    Ok((best, Source::Timed))
}

/// Largest 8-bit difference a candidate may show against the first one (sums in another
/// order round differently; a wrong kernel is off by far more). The `coop` candidate is held to
/// `COOP_TOLERANCE` against the f32 path instead (its operands, normalised inputs included, are
/// f16).
const MAX_LEVELS: u8 = 2;

/// Builds each candidate at the real size, checks it against the first (`coop` against the f32
/// path), times two frames after a warm-up (which compiles the pipelines), and returns the
/// fastest and every time.
fn time_candidates(
    ctx: &GpuContext,
    desc: &NetworkDescription,
    weights: &Weights,
    width: u32,
    height: u32,
    precision: StoragePrecision,
) -> Result<(Variant, BTreeMap<String, f64>), GpuError> {
    let frame = noise_frame(width, height, 0x2545_f491_4f6c_dd1d);
    let mut reference: Option<Vec<u8>> = None;
    let mut times = BTreeMap::new();
    let mut best: Option<(Variant, f64)> = None;
    for v in candidates(ctx, desc, weights, precision) {
        let built = NetworkPlan::with_variant(ctx, desc, weights, width, height, precision, v)
            .and_then(|plan| Ok((plan.run(&frame)?.rgb, plan)));
        let (out, plan) = match built {
            Ok(built) => built,
            // The experimental set passed its self-check at 64x48; should it fail at this size, it
            // is left out rather than failing the choice.
            Err(e) if v.coop() => {
                tracing::warn!(variant = v.name(), error = %e, "kernel candidate failed: left out");
                continue;
            }
            Err(e) => return Err(e),
        };
        match &reference {
            _ if v.coop() => {
                let full = NetworkPlan::with_variant(
                    ctx,
                    desc,
                    weights,
                    width,
                    height,
                    StoragePrecision::F32,
                    default_variant(ctx),
                )?;
                let d = level_diff(&full.run(&frame)?.rgb, &out);
                if !d.within(&COOP_TOLERANCE) {
                    tracing::warn!(
                        variant = v.name(),
                        max_levels = d.max_levels,
                        mean_levels = d.mean_levels,
                        "kernel candidate differs from the f32 path by more than COOP_TOLERANCE: left out"
                    );
                    continue;
                }
            }
            None => reference = Some(out),
            Some(r) => {
                let d = level_diff(r, &out);
                if d.max_levels > MAX_LEVELS {
                    tracing::warn!(
                        variant = v.name(),
                        max_levels = d.max_levels,
                        "kernel candidate differs from the first: left out"
                    );
                    continue;
                }
            }
        }
        let t = Instant::now();
        for _ in 0..2 {
            plan.run(&frame)?;
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / 2.0;
        times.insert(v.name().to_string(), ms);
        if best.is_none_or(|(_, b)| ms < b) {
            best = Some((v, ms));
        }
    }
    let best = best.map(|(v, _)| v).unwrap_or_else(|| default_variant(ctx));
    Ok((best, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_round_trip_their_names() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_name(v.name()), Some(v));
        }
        assert_eq!(Variant::from_name("fast"), None);
        assert!(Variant::Subgroup.subgroups() && Variant::Subgroup.fused_norm());
        assert!(!Variant::PlainUnfused.subgroups() && !Variant::PlainUnfused.fused_norm());
    }

    #[test]
    fn tiled_variants_fit_the_shaders_workgroup_memory_and_tile_rules() {
        // The shader's workgroup arrays are what TILED_WORKGROUP_BYTES says (naga's layout).
        // (Its tiles are f32 at both precisions.)
        let src = super::super::Kernel::Conv2dTiled.module_source(StoragePrecision::F32);
        let module = naga::front::wgsl::parse_str(&src).expect("conv2d_tiled parses");
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layouts");
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
            .map(|(_, g)| layouter[g.ty].size)
            .sum();
        assert_eq!(bytes, TILED_WORKGROUP_BYTES);
        // Every tile fits those arrays: 2 x TM x 4 input vec4s (1,024) and 2 x 16 x TN / 4
        // weight vec4s (512), with TM and TN multiples of 16.
        let tiled: Vec<_> = Variant::ALL.into_iter().filter_map(Variant::tile).collect();
        assert!(Variant::Coop.fused_norm() && Variant::Coop.coop() && !Variant::Coop.tiled());
        assert_eq!(tiled.len(), 3);
        for (tm, tn) in tiled {
            assert!(tm % 16 == 0 && tn % 16 == 0, "{tm}x{tn}");
            assert!(2 * tm * 4 <= 1024 && 2 * 16 * tn / 4 <= 512, "{tm}x{tn} does not fit");
        }
    }
}
