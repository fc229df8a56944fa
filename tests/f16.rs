//! Half precision (f16 weights and activations, f32 arithmetic) on lavapipe, which has
//! SHADER_F16: the golden 256x144 outputs of all four styles within 3 levels max and 0.5 level
//! mean; every stored activation is an f16 value and each layer stays close to the golden
//! intermediates; the f16 self-check; `auto` stays f32 on a CPU adapter.

mod common;

use std::sync::OnceLock;

use common::*;
use stylestream::media::image::read_rgb;
use stylestream::model::gpu::{
    level_diff, GpuContext, GpuOptions, NetworkPlan, Precision, F16_MAX_LEVELS, F16_MEAN_LEVELS,
};

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
        eprintln!(
            "{s} 256x144 f16: max {} levels, mean {:.4} levels (float max abs diff {float:.5})",
            d.max_levels, d.mean_levels
        );
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
    assert!(
        NetworkPlan::f16_self_check(auto, &desc, &weights).is_err(),
        "the self-check needs SHADER_F16 on the device"
    );
}

#[test]
fn f16_plans_store_every_activation_as_f16_and_track_the_golden_layers() {
    let desc = tf();
    let weights = style("udnie");
    let input = read_rgb(&golden("input_64x48.png")).unwrap();
    let half = NetworkPlan::new(gpu_f16(), &desc, &weights, 64, 48).unwrap();
    let full = NetworkPlan::new(gpu(), &desc, &weights, 64, 48).unwrap();
    let is_f16 = |v: f32| half::f16::from_f32(v).to_f32() == v;
    for (layer, file) in
        [("conv1", "conv1"), ("conv3", "conv3"), ("res5.conv2", "res5"), ("deconv1", "deconv1"), ("conv4", "pre_tanh")]
    {
        let i = desc.layer_index(layer).unwrap();
        let got = half.run_to_layer(&input.data, i).unwrap();
        // Stored as f16: every value survives a round trip through f16 unchanged. (The f32
        // plan's values do not: the check can fail.)
        assert!(got.iter().all(|&v| is_f16(v)), "layer {layer}: a value that is not an f16");
        let f32_values = full.run_to_layer(&input.data, i).unwrap();
        assert!(f32_values.iter().any(|&v| !is_f16(v)), "layer {layer}: the f32 plan looks f16");
        // Close to the golden intermediates: within 1 % of the layer's largest magnitude.
        let want = read_f32(&golden(&format!("udnie_64x48_{file}.f32")));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&got, &want);
        eprintln!("{layer}: f16 max abs diff {diff:.5} (max |x| {scale:.3})");
        assert!(diff <= 0.01 * scale, "layer {layer}: max abs diff {diff} (max |x| {scale})");
    }
}

#[test]
fn f16_row_bands_and_odd_sizes_agree_with_f32() {
    // A 64 KiB binding cap cuts the f16 activations of a 64x48 frame into row bands (windows
    // that start and end mid-word), and 37x23 leaves partial pixel tiles and a 3-channel output
    // tensor of an odd number of f16 values.
    let desc = tf();
    let weights = style("udnie");
    let banded = GpuContext::new(&GpuOptions {
        precision: Precision::F16,
        max_binding_bytes: Some(64 << 10),
        ..Default::default()
    })
    .unwrap();
    let f32_ctx = GpuContext::new(&GpuOptions { precision: Precision::F32, ..Default::default() }).unwrap();
    for (w, h) in [(64u32, 48u32), (37, 23)] {
        let input: Vec<u8> = (0..w * h * 3).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        let whole = NetworkPlan::new(gpu_f16(), &desc, &weights, w, h).unwrap();
        let cut = NetworkPlan::new(&banded, &desc, &weights, w, h).unwrap();
        let reference = NetworkPlan::new(&f32_ctx, &desc, &weights, w, h).unwrap().run(&input).unwrap();
        if (w, h) == (64, 48) {
            assert!(cut.dispatch_count() > whole.dispatch_count() + 10, "the cap did not cut the work into bands");
        }
        let a = whole.run(&input).unwrap();
        let b = cut.run(&input).unwrap();
        // Bands merge the norm statistics in another order, so a few values round to the other
        // side of an f16 step: the two agree within a level, and both stay within the f16
        // bound of the f32 output.
        let between = level_diff(&a.rgb, &b.rgb);
        eprintln!("{w}x{h} f16 banded vs whole: max {} levels, mean {:.4}", between.max_levels, between.mean_levels);
        assert!(
            between.max_levels <= 1 && between.mean_levels <= 0.05,
            "{w}x{h}: bands change the f16 output: {between:?}"
        );
        for (what, out) in [("whole", &a), ("banded", &b)] {
            let d = level_diff(&out.rgb, &reference.rgb);
            eprintln!("{w}x{h} f16 {what} vs f32: max {} levels, mean {:.4}", d.max_levels, d.mean_levels);
            assert!(d.max_levels <= F16_MAX_LEVELS && d.mean_levels <= F16_MEAN_LEVELS, "{w}x{h} {what}: {d:?}");
        }
    }
}

#[test]
fn f16_tiled_gemm_kernels_agree_with_f32() {
    // Every kernel loads at f16: the tiled GEMM (each tile size) reads f16 weights and
    // activations into f32 workgroup tiles.
    use stylestream::model::gpu::KernelChoice;
    let desc = tf();
    let weights = style("udnie");
    let input = read_rgb(&golden("input_64x48.png")).unwrap();
    let f32_ctx = GpuContext::new(&GpuOptions { precision: Precision::F32, ..Default::default() }).unwrap();
    let reference = NetworkPlan::new(&f32_ctx, &desc, &weights, 64, 48).unwrap().run(&input.data).unwrap();
    for choice in [KernelChoice::Tiled, KernelChoice::Tiled32x32, KernelChoice::Tiled128x64] {
        let ctx = GpuContext::new(&GpuOptions {
            precision: Precision::F16,
            kernels: choice,
            timestamps: true,
            ..Default::default()
        })
        .unwrap();
        let plan = NetworkPlan::new(&ctx, &desc, &weights, 64, 48).unwrap();
        assert_eq!(plan.precision(), Precision::F16);
        assert!(plan.variant().0.tiled(), "{choice:?}: {:?}", plan.variant());
        plan.run_profiled(&input.data).unwrap();
        let kernels = plan.kernel_times().unwrap().unwrap();
        assert!(
            kernels.iter().any(|k| k.kernel == "conv2d_tiled"),
            "{choice:?}: no layer ran conv2d_tiled: {kernels:?}"
        );
        let out = plan.run(&input.data).unwrap();
        let d = level_diff(&out.rgb, &reference.rgb);
        eprintln!("{choice:?} f16 vs f32: max {} levels, mean {:.4}", d.max_levels, d.mean_levels);
        assert!(d.max_levels <= F16_MAX_LEVELS && d.mean_levels <= F16_MEAN_LEVELS, "{choice:?}: {d:?}");
    }
}
