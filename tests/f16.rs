//! Half precision (f16 convolution weights, f32 activations and accumulation) on lavapipe,
//! which has SHADER_F16: the golden 256x144 outputs of all four styles within 3 levels max and
//! 0.5 level mean; the f16 self-check; `auto` stays f32 on a CPU adapter.

mod common;

use std::sync::OnceLock;

use common::*;
use stylestream::media::image::read_rgb;
use stylestream::model::gpu::{level_diff, GpuContext, GpuOptions, NetworkPlan, Precision, F16_MAX_LEVELS, F16_MEAN_LEVELS};

fn gpu_f16() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(&GpuOptions { precision: Precision::F16, ..Default::default() })
            .expect("an adapter with SHADER_F16 (lavapipe has it) is required")
    })
}

#[test]
fn f16_matches_golden_256x144_for_all_styles() {
    let ctx = gpu_f16();
    assert!(ctx.has_f16());
    let desc = tf();
    let input = read_rgb(&golden("input_256x144.png")).unwrap();
    for s in STYLES {
        let plan = NetworkPlan::new(ctx, &desc, &style(s), input.width, input.height).unwrap();
        assert_eq!(plan.precision(), Precision::F16);
        let out = plan.run_with_values(&input.data).unwrap();
        let want = read_rgb(&golden(&format!("{s}_256x144.png"))).unwrap();
        let d = level_diff(&out.rgb, &want.data);
        let float = max_abs_diff(&out.values, &read_f32(&golden(&format!("{s}_256x144.f32"))));
        eprintln!("{s} 256x144 f16: max {} levels, mean {:.4} levels (float max abs diff {float:.5})", d.max_levels, d.mean_levels);
        assert!(d.max_levels <= F16_MAX_LEVELS, "{s}: f16 differs by {} levels", d.max_levels);
        assert!(d.mean_levels <= F16_MEAN_LEVELS, "{s}: f16 differs by {:.3} levels on average", d.mean_levels);
    }
}

#[test]
fn f16_self_check_passes_on_lavapipe() {
    let desc = tf();
    for s in STYLES {
        let check = NetworkPlan::f16_self_check(gpu_f16(), &desc, &style(s)).unwrap();
        eprintln!("{s} self-check: max {} levels, mean {:.4}", check.max_levels, check.mean_levels);
        assert!(check.passes(), "{s}: {check:?}");
    }
}

#[test]
fn auto_is_f32_on_a_cpu_adapter_and_f32_is_unchanged() {
    let desc = tf();
    let weights = style("udnie");
    let input = read_rgb(&golden("input_64x48.png")).unwrap();
    let auto = gpu();
    assert_eq!(auto.precision(), Precision::Auto);
    assert!(auto.adapter().device_type.contains("Cpu"), "these tests run on lavapipe");
    assert!(!auto.has_f16(), "auto on a CPU adapter must not even enable SHADER_F16");
    let plan = NetworkPlan::new(auto, &desc, &weights, 64, 48).unwrap();
    assert_eq!(plan.precision(), Precision::F32);
    let a = plan.run_with_values(&input.data).unwrap();
    let f32_ctx = GpuContext::new(&GpuOptions { precision: Precision::F32, ..Default::default() }).unwrap();
    let b = NetworkPlan::new(&f32_ctx, &desc, &weights, 64, 48).unwrap().run_with_values(&input.data).unwrap();
    assert_eq!(a.rgb, b.rgb);
    assert_eq!(a.values, b.values, "auto on a CPU adapter and f32 must agree bit for bit");
    // `--precision f16` resolves to f16 plans; the self-check refuses a device without SHADER_F16.
    let c = NetworkPlan::new(gpu_f16(), &desc, &weights, 64, 48).unwrap();
    assert_eq!(c.precision(), Precision::F16);
    assert!(NetworkPlan::f16_self_check(auto, &desc, &weights).is_err(), "the self-check needs SHADER_F16 on the device");
}
