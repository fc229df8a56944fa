//! Cooperative matrices (tensor cores, through Vulkan's VK_KHR_cooperative_matrix as wgpu's
//! EXPERIMENTAL_COOPERATIVE_MATRIX): whether a device may run the `coop` kernel set
//! (`conv2d_coop`, `conv_transpose2d_coop`: f16 16x16x16 operands, f32 accumulation), the
//! tolerance those kernels are held to, and the self-check a plan build runs before it uses them.
//!
//! The set is offered only where all of these hold, else the log says which did not:
//! the adapter offers the feature and lists the 16x16x16 f16 -> f32 shape among its
//! `cooperative_matrix_properties`; it has SUBGROUP with one subgroup size of 32 or 64 (the
//! kernels split a workgroup into 4 subgroups by `@builtin(subgroup_id)`); the plan is f16; and a
//! 64x48 frame through the whole network agrees with the f16 path within `COOP_TOLERANCE`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::context::{scoped, GpuContext};
use super::plan::{noise_frame, NetworkPlan};
use super::precision::{level_diff, SelfCheck, StoragePrecision};
use super::select::{default_variant, Variant};
use super::GpuError;
use crate::model::{NetworkDescription, Weights};

/// The acceptance bound of the cooperative-matrix kernels, in 8-bit levels of the output: at most
/// 3 levels on any value and 0.5 on average — against the golden outputs (tests), against the
/// f32 path (`--kernels timed`), and against the f16 path (the self-check at plan build). The
/// one place this tolerance is stated.
pub const COOP_TOLERANCE: SelfCheck = SelfCheck { max_levels: 3, mean_levels: 0.5 };

/// Workgroup memory of `gemm_coop.wgsl`: its tiles, 2 x 64 x 40 + 2 x 32 x 72 f16 values and
/// 64 x 68 f32 values.
pub const COOP_WORKGROUP_BYTES: u32 = (2 * 64 * 40 + 2 * 32 * 72) * 2 + 64 * 68 * 4;

/// Frame size of the self-check.
const SELF_CHECK_SIZE: (u32, u32) = (64, 48);

/// The subgroup size the kernels would run with on `adapter`, or why the adapter cannot run them
/// (`f16`: whether the device will have SHADER_F16 enabled).
pub(super) fn probe(adapter: &wgpu::Adapter, f16: bool) -> Result<u32, String> {
    if !adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Err("the adapter does not offer EXPERIMENTAL_COOPERATIVE_MATRIX (VK_KHR_cooperative_matrix \
                    with the Vulkan memory model)"
            .into());
    }
    let shapes = adapter.cooperative_matrix_properties();
    let wanted = |p: &wgpu::CooperativeMatrixProperties| {
        (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    };
    if !shapes.iter().any(wanted) {
        let listed: Vec<String> = shapes
            .iter()
            .map(|p| format!("{}x{}x{} {:?}->{:?}", p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type))
            .collect();
        return Err(format!("its cooperative matrix shapes do not include 16x16x16 F16->F32 (it lists {listed:?})"));
    }
    if !f16 {
        return Err("the device does not use f16 (the cooperative-matrix kernels are f16 only)".into());
    }
    let info = adapter.get_info();
    if !adapter.features().contains(wgpu::Features::SUBGROUP) {
        return Err("the adapter has no SUBGROUP feature (the kernels need @builtin(subgroup_id))".into());
    }
    let (min, max) = (info.subgroup_min_size, info.subgroup_max_size);
    if min != max || !(min == 32 || min == 64) {
        return Err(format!("its subgroup size is {min}..{max}; the kernels need one size, 32 or 64"));
    }
    let limits = adapter.limits();
    if limits.max_compute_workgroup_storage_size < COOP_WORKGROUP_BYTES
        || limits.max_compute_invocations_per_workgroup < 4 * min
    {
        return Err(format!(
            "the kernels need {COOP_WORKGROUP_BYTES} bytes of workgroup memory and {} invocations; it has {} and {}",
            4 * min,
            limits.max_compute_workgroup_storage_size,
            limits.max_compute_invocations_per_workgroup
        ));
    }
    Ok(min)
}

/// Self-check outcomes of this process, per (adapter, driver, model): one check each.
static CHECKED: Mutex<Option<HashMap<String, Result<SelfCheck, String>>>> = Mutex::new(None);

/// Whether plans on `ctx` at `precision` may use the `coop` set: the device can run it
/// (`probe`), the plan is f16, and the self-check passes (run once per process per adapter and
/// model). `Err` says why not, for the log.
pub(super) fn usable(
    ctx: &GpuContext,
    desc: &NetworkDescription,
    weights: &Weights,
    precision: StoragePrecision,
) -> Result<(), String> {
    ctx.coop.as_ref().map_err(Clone::clone)?;
    if precision != StoragePrecision::F16 {
        return Err("the plan is f32 (the cooperative-matrix kernels are f16 only)".into());
    }
    let key = format!("{}|{}|{}", ctx.adapter.name, ctx.adapter.driver, weights.sha256);
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    let memo = checked.get_or_insert_with(HashMap::new);
    let outcome = match memo.get(&key) {
        Some(o) => o.clone(),
        None => {
            let o = self_check(ctx, desc, weights).map_err(|e| format!("its self-check failed to run: {e}"));
            match &o {
                Ok(c) => tracing::info!(
                    adapter = %ctx.adapter, max_levels = c.max_levels, mean_levels = c.mean_levels,
                    "cooperative-matrix self-check against the f16 path"
                ),
                Err(e) => tracing::warn!(adapter = %ctx.adapter, error = %e, "cooperative-matrix self-check"),
            }
            memo.insert(key, o.clone());
            o
        }
    };
    let check = outcome?;
    if check.within(&COOP_TOLERANCE) {
        Ok(())
    } else {
        Err(format!(
            "its self-check differs from the f16 path by {} levels max, {:.3} mean (tolerance {} and {})",
            check.max_levels, check.mean_levels, COOP_TOLERANCE.max_levels, COOP_TOLERANCE.mean_levels
        ))
    }
}

/// A fixed pseudo-random 64x48 frame through the network with the `coop` set and with the
/// device's default f16 set: their 8-bit outputs compared. Every cooperative-matrix layer (the
/// 3 x 3 convolutions at stride 1 and 2, both transposed convolutions) runs once.
pub(super) fn self_check(
    ctx: &GpuContext,
    desc: &NetworkDescription,
    weights: &Weights,
) -> Result<SelfCheck, GpuError> {
    let (w, h) = SELF_CHECK_SIZE;
    let frame = noise_frame(w, h, 0xc00b_5e1f_c4ec_4a11);
    let run = |variant: Variant| -> Result<Vec<u8>, GpuError> {
        let build = || NetworkPlan::build(ctx, desc, weights, w, h, StoragePrecision::F16, variant);
        let plan = scoped(&ctx.device, "building the cooperative-matrix self-check plan", build)??;
        Ok(plan.run(&frame)?.rgb)
    };
    let (coop, reference) = (run(Variant::Coop)?, run(default_variant(ctx))?);
    Ok(level_diff(&reference, &coop))
}
