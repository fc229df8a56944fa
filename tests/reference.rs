//! GPU against the CPU reference (src/model/cpu.rs): every layer and the whole network, on
//! random weights and awkward sizes, for both network variants.

mod common;

use std::collections::HashMap;

use common::*;
use stylestream::model::cpu;
use stylestream::model::geometry::{crop, extend_rgb8, working_size};
use stylestream::model::gpu::NetworkPlan;
use stylestream::model::{NetworkDescription, Weights};

/// Sizes and per-layer tolerances relative to the layer's max |x|. At 1x1 and 5x3 the deepest
/// activations have 1 or 2 pixels (working size 4x4 or 8x4), so instance norm divides by
/// variances far below eps and amplifies f32 rounding: those get 1e-2; real sizes 1e-4.
const SIZES: [(u32, u32, f32); 4] = [(37, 23, 1e-4), (64, 48, 1e-4), (1, 1, 1e-2), (5, 3, 1e-2)];

/// Random weights for every tensor of a description, scaled like trained ones (He-style).
fn random_weights(desc: &NetworkDescription, seed: u64) -> Weights {
    let mut t = HashMap::new();
    for (i, l) in desc.layers.iter().enumerate() {
        let fan_in = (l.in_channels * l.kernel * l.kernel) as f32;
        let n: usize = l.weight_shape().iter().product();
        t.insert(l.weight.clone(), random(n, seed + 10 * i as u64, (3.0 / fan_in).sqrt()));
        let oc = l.out_channels as usize;
        if let Some(b) = &l.bias {
            t.insert(b.clone(), random(oc, seed + 10 * i as u64 + 1, 0.5));
        }
        if let Some(nm) = &l.norm {
            t.insert(nm.scale.clone(), random(oc, seed + 10 * i as u64 + 2, 0.5).iter().map(|v| v + 1.0).collect());
            t.insert(nm.shift.clone(), random(oc, seed + 10 * i as u64 + 3, 0.5));
        }
    }
    Weights::from_tensors(t, desc).unwrap()
}

/// Every layer's GPU output against the CPU reference run on the same working-size input.
fn check_layers(desc: &NetworkDescription, weights: &Weights, w: u32, h: u32, tol: f32) {
    let rgb = random_rgb(w, h, 7);
    let plan = NetworkPlan::new(gpu(), desc, weights, w, h).unwrap();
    let (ww, wh) = working_size(desc, w, h);
    let ext = extend_rgb8(&rgb, w, h, ww, wh);
    let input = cpu::Tensor::from_rgb8(wh as usize, ww as usize, &ext, desc.input_scale);
    let (layers, out) = cpu::forward(desc, weights, &input);
    for (i, l) in desc.layers.iter().enumerate() {
        let got = plan.run_to_layer(&rgb, i).unwrap();
        let want = &layers[i].data;
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&got, want);
        assert!(diff <= tol * scale, "{} {w}x{h} layer {}: max abs diff {diff} (max |x| {scale})", desc.name, l.name);
    }
    let gpu_out = plan.run_with_values(&rgb).unwrap();
    let want = crop(&out.data, ww, 3, w, h);
    let diff = max_abs_diff(&gpu_out.values, &want);
    // The output is tanh(x) * 150: 0.05 at real sizes, 1.0 where the norm is ill-conditioned.
    let out_tol = if tol > 1e-4 { 1.0 } else { 0.05 };
    assert!(diff <= out_tol, "{} {w}x{h} output: max abs diff {diff}", desc.name);
    let rgb_want: Vec<u8> = cpu::to_rgb8(&cpu::Tensor { h: h as usize, w: w as usize, c: 3, data: want });
    let level = gpu_out.rgb.iter().zip(&rgb_want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(level as f32 <= 1.0 + out_tol, "{} {w}x{h}: 8-bit output differs by {level}", desc.name);
}

#[test]
fn tf_variant_matches_cpu_at_odd_sizes() {
    let desc = tf();
    let weights = random_weights(&desc, 1);
    for (w, h, tol) in SIZES {
        check_layers(&desc, &weights, w, h, tol);
    }
}

#[test]
fn torch_variant_matches_cpu_at_odd_sizes() {
    let desc = NetworkDescription::load("transformnet-torch").unwrap();
    let weights = random_weights(&desc, 2);
    for (w, h, tol) in SIZES {
        check_layers(&desc, &weights, w, h, tol);
    }
}

#[test]
fn plain_kernels_match_cpu_without_subgroups() {
    let ctx = stylestream::model::gpu::GpuContext::new(&stylestream::model::gpu::GpuOptions {
        no_subgroups: true,
        ..Default::default()
    })
    .unwrap();
    assert!(!ctx.uses_subgroups());
    for desc in [tf(), NetworkDescription::load("transformnet-torch").unwrap()] {
        let weights = random_weights(&desc, 3);
        let (w, h) = (37, 23);
        let rgb = random_rgb(w, h, 9);
        let (ww, wh) = working_size(&desc, w, h);
        let input =
            cpu::Tensor::from_rgb8(wh as usize, ww as usize, &extend_rgb8(&rgb, w, h, ww, wh), desc.input_scale);
        let (_, out) = cpu::forward(&desc, &weights, &input);
        let plan = NetworkPlan::new(&ctx, &desc, &weights, w, h).unwrap();
        let got = plan.run_with_values(&rgb).unwrap();
        let diff = max_abs_diff(&got.values, &crop(&out.data, ww, 3, w, h));
        assert!(diff <= 0.05, "{}: plain kernels differ from the CPU by {diff}", desc.name);
    }
}

#[test]
fn row_bands_give_the_same_result_as_one_dispatch() {
    // A 128 KiB binding cap cuts the larger activations of a 64x48 frame into row bands (the
    // 9x9 layers need 9 rows of 32 channels, 72 KiB, in one window).
    let banded = stylestream::model::gpu::GpuContext::new(&stylestream::model::gpu::GpuOptions {
        max_binding_bytes: Some(128 * 1024),
        ..Default::default()
    })
    .unwrap();
    let desc = tf();
    let weights = style("udnie");
    let input = stylestream::media::image::read_rgb(&golden("input_64x48.png")).unwrap();
    let plan = NetworkPlan::new(&banded, &desc, &weights, 64, 48).unwrap();
    let whole = NetworkPlan::new(gpu(), &desc, &weights, 64, 48).unwrap();
    let (banded_n, whole_n) = (plan.dispatch_count(), whole.dispatch_count());
    // (Fewer extra dispatches than before epilogue statistics: those have no passes to band.)
    assert!(banded_n >= whole_n + 15, "the cap did not split the work into bands: {banded_n} vs {whole_n} dispatches");
    let out = plan.run_with_values(&input.data).unwrap();
    let want = read_f32(&golden("udnie_64x48.f32"));
    let diff = max_abs_diff(&out.values, &want);
    assert!(diff <= 0.01, "banded run differs from golden by {diff}");
}

#[test]
fn a_1080p_frame_runs_in_row_bands_and_keeps_its_size() {
    let desc = tf();
    let weights = style("wave");
    let (w, h) = (1920, 1080);
    let plan = NetworkPlan::new(gpu(), &desc, &weights, w, h).unwrap();
    let frame = stylestream::frame::RgbFrame::test_card(w, h);
    let out = plan.run(&frame.data).unwrap();
    assert_eq!(out.rgb.len(), (w * h * 3) as usize);
    // Styled, not copied or blank: far from the input and with a wide range of values.
    let mean_diff =
        out.rgb.iter().zip(&frame.data).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>() / out.rgb.len() as f64;
    let (lo, hi) = (out.rgb.iter().min().copied().unwrap(), out.rgb.iter().max().copied().unwrap());
    assert!(mean_diff > 20.0 && hi - lo > 150, "mean diff {mean_diff}, range {lo}..{hi}");
}

#[test]
fn trusted_shaders_give_the_same_bits_as_checked_ones() {
    // Trusted modules drop naga's index clamps: if a kernel ever indexed outside its window,
    // the clamped (checked) and unclamped (trusted) runs would read different values. Partial
    // tiles (37x23), row bands (a 128 KiB binding cap at 64x48) and both conv kernel families.
    use stylestream::model::gpu::{GpuContext, GpuOptions};
    let desc = tf();
    let weights = style("udnie");
    for no_subgroups in [false, true] {
        let opts = |checked_shaders| GpuOptions {
            max_binding_bytes: Some(128 * 1024),
            no_subgroups,
            checked_shaders,
            ..Default::default()
        };
        let (trusted, checked) = (GpuContext::new(&opts(false)).unwrap(), GpuContext::new(&opts(true)).unwrap());
        for (w, h) in [(37, 23), (64, 48)] {
            let rgb = random_rgb(w, h, 5);
            let a = NetworkPlan::new(&trusted, &desc, &weights, w, h).unwrap().run_with_values(&rgb).unwrap();
            let b = NetworkPlan::new(&checked, &desc, &weights, w, h).unwrap().run_with_values(&rgb).unwrap();
            let same = a.values.iter().zip(&b.values).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same && a.rgb == b.rgb,
                "{w}x{h} (no_subgroups {no_subgroups}): trusted and checked shaders differ"
            );
        }
    }
}

#[test]
fn a_second_plan_on_the_same_device_compiles_no_new_pipeline() {
    let ctx = stylestream::model::gpu::GpuContext::new(&Default::default()).unwrap();
    let desc = tf();
    NetworkPlan::new(&ctx, &desc, &style("udnie"), 64, 48).unwrap();
    let first = ctx.pipeline_count();
    assert!(first > 0);
    // Another size and another model of the same architecture reuse every pipeline.
    let plan = NetworkPlan::new(&ctx, &desc, &style("wave"), 37, 23).unwrap();
    assert_eq!(ctx.pipeline_count(), first, "the second plan compiled pipelines of its own");
    assert_eq!(plan.run(&random_rgb(37, 23, 1)).unwrap().rgb.len(), 37 * 23 * 3);
}

#[test]
fn a_norm_applied_by_the_next_conv_matches_its_own_apply_pass() {
    // Fused: the next convolution normalises (and rectifies) its input taps as it loads them,
    // padding stays zero. Unfused: an apply pass per norm. Both network variants (SAME zero
    // padding; reflection padding with upsampling), odd sizes and row bands.
    use stylestream::model::gpu::{GpuContext, GpuOptions};
    let opts = |unfused_norm| GpuOptions { max_binding_bytes: Some(128 * 1024), unfused_norm, ..Default::default() };
    let (fused, unfused) = (GpuContext::new(&opts(false)).unwrap(), GpuContext::new(&opts(true)).unwrap());
    let torch = NetworkDescription::load("transformnet-torch").unwrap();
    let torch_weights = random_weights(&torch, 4);
    for (desc, weights) in [(tf(), style("udnie")), (torch, torch_weights)] {
        for (w, h) in [(37, 23), (64, 48)] {
            let rgb = random_rgb(w, h, 6);
            let a = NetworkPlan::new(&fused, &desc, &weights, w, h).unwrap();
            let b = NetworkPlan::new(&unfused, &desc, &weights, w, h).unwrap();
            assert!(a.dispatch_count() < b.dispatch_count(), "{}: no apply pass was fused", desc.name);
            let (x, y) = (a.run_with_values(&rgb).unwrap(), b.run_with_values(&rgb).unwrap());
            let diff = max_abs_diff(&x.values, &y.values);
            assert!(diff <= 1e-3, "{} {w}x{h}: fused and unfused norms differ by {diff}", desc.name);
        }
    }
    // The TF network: conv1, conv2, res1..5.conv1 and deconv2 feed a conv that applies their
    // norm (8 apply passes gone); conv3 and res*.conv2 feed residuals, deconv1 a transposed conv.
    // With subgroups, the 13 wide convs with a norm compute its statistics in their epilogue
    // (13 statistics passes gone; the transposed convs and the 3-channel conv4 keep theirs).
    // Without a binding cap each pass is one dispatch.
    let (desc, weights) = (tf(), style("udnie"));
    let whole_unfused = GpuContext::new(&GpuOptions { unfused_norm: true, ..Default::default() }).unwrap();
    let a = NetworkPlan::new(gpu(), &desc, &weights, 64, 48).unwrap();
    let c = NetworkPlan::new(&whole_unfused, &desc, &weights, 64, 48).unwrap();
    let stats_passes = if gpu().uses_subgroups() { 13 } else { 0 };
    assert_eq!(c.dispatch_count() - a.dispatch_count(), 8 + stats_passes);
}

#[test]
fn tiled_implicit_gemm_kernels_match_the_cpu_and_the_golden_data() {
    // `--kernels tiled`: the 3x3 layers (16k input channels) as a tiled implicit GEMM in
    // workgroup memory. Partial tiles (37x23: 64-pixel and 64-channel tiles cut at the edges),
    // row bands (a 128 KiB binding cap), trusted and checked shaders, both network variants.
    use stylestream::model::gpu::{GpuContext, GpuOptions, KernelChoice, Variant};
    let opts = |max_binding_bytes, checked_shaders| GpuOptions {
        kernels: KernelChoice::Tiled,
        max_binding_bytes,
        checked_shaders,
        timestamps: true,
        ..Default::default()
    };
    let ctx = GpuContext::new(&opts(None, false)).unwrap();
    for desc in [tf(), NetworkDescription::load("transformnet-torch").unwrap()] {
        let weights = random_weights(&desc, 7);
        let (w, h) = (37, 23);
        let rgb = random_rgb(w, h, 11);
        let (ww, wh) = working_size(&desc, w, h);
        let input =
            cpu::Tensor::from_rgb8(wh as usize, ww as usize, &extend_rgb8(&rgb, w, h, ww, wh), desc.input_scale);
        let (_, out) = cpu::forward(&desc, &weights, &input);
        let plan = NetworkPlan::new(&ctx, &desc, &weights, w, h).unwrap();
        assert_eq!(plan.variant().0, Variant::Tiled);
        plan.run_profiled(&rgb).unwrap();
        let kernels = plan.kernel_times().unwrap().unwrap();
        assert!(kernels.iter().any(|k| k.kernel == "conv2d_tiled"), "{}: no layer ran tiled: {kernels:?}", desc.name);
        let got = plan.run_with_values(&rgb).unwrap();
        let diff = max_abs_diff(&got.values, &crop(&out.data, ww, 3, w, h));
        assert!(diff <= 0.05, "{}: tiled kernels differ from the CPU by {diff}", desc.name);
    }
    let input = stylestream::media::image::read_rgb(&golden("input_64x48.png")).unwrap();
    let want = read_f32(&golden("udnie_64x48.f32"));
    let mut outputs = Vec::new();
    for (cap, checked) in [(None, false), (Some(128 * 1024), false), (Some(128 * 1024), true)] {
        let ctx = GpuContext::new(&opts(cap, checked)).unwrap();
        let out = NetworkPlan::new(&ctx, &tf(), &style("udnie"), 64, 48).unwrap().run_with_values(&input.data).unwrap();
        let diff = max_abs_diff(&out.values, &want);
        assert!(diff <= 0.01, "tiled (cap {cap:?}, checked {checked}) differs from golden by {diff}");
        outputs.push(out.values);
    }
    assert!(
        outputs[1].iter().zip(&outputs[2]).all(|(a, b)| a.to_bits() == b.to_bits()),
        "trusted and checked tiled shaders differ"
    );
}

#[test]
fn every_tile_size_of_the_tiled_gemm_matches_the_cpu() {
    // The tile is a parameter (override constants TM x TN): 32x32 (64 invocations, each loading
    // two vec4s of each tile per step), 64x64 and 128x64 (512 invocations, some loading no weight
    // vec4), all against the CPU reference at 37x23 (every tile cut at the edges), whole and in
    // row bands (a 64 KiB binding cap).
    use stylestream::model::gpu::{GpuContext, GpuOptions, KernelChoice, Variant};
    let desc = tf();
    let weights = random_weights(&desc, 5);
    let (w, h) = (37, 23);
    let rgb = random_rgb(w, h, 3);
    let (ww, wh) = working_size(&desc, w, h);
    let input = cpu::Tensor::from_rgb8(wh as usize, ww as usize, &extend_rgb8(&rgb, w, h, ww, wh), desc.input_scale);
    let (_, out) = cpu::forward(&desc, &weights, &input);
    let want = crop(&out.data, ww, 3, w, h);
    for (choice, variant) in [
        (KernelChoice::Tiled32x32, Variant::Tiled32x32),
        (KernelChoice::Tiled, Variant::Tiled),
        (KernelChoice::Tiled128x64, Variant::Tiled128x64),
    ] {
        for cap in [None, Some(64 * 1024)] {
            let ctx = GpuContext::new(&GpuOptions {
                kernels: choice,
                max_binding_bytes: cap,
                timestamps: true,
                ..Default::default()
            })
            .unwrap();
            let plan = NetworkPlan::new(&ctx, &desc, &weights, w, h).unwrap();
            assert_eq!(plan.variant().0, variant);
            plan.run_profiled(&rgb).unwrap();
            let kernels = plan.kernel_times().unwrap().unwrap();
            assert!(kernels.iter().any(|k| k.kernel == "conv2d_tiled"), "{}: no layer ran tiled", variant.name());
            let got = plan.run_with_values(&rgb).unwrap();
            let diff = max_abs_diff(&got.values, &want);
            assert!(diff <= 0.05, "{} (cap {cap:?}): differs from the CPU by {diff}", variant.name());
        }
    }
}
