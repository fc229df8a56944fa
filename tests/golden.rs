//! The GPU network against the golden outputs of the real pretrained models
//! (../shared/models/golden, computed in float64 numpy by the formulas in its README).

mod common;

use common::*;
use stylestream::media::image::read_rgb;
use stylestream::model::gpu::NetworkPlan;

fn check(style_name: &str, size: &str) {
    let desc = tf();
    let weights = style(style_name);
    let input = read_rgb(&golden(&format!("input_{size}.png"))).unwrap();
    let plan = NetworkPlan::new(gpu(), &desc, &weights, input.width, input.height).unwrap();
    let out = plan.run_with_values(&input.data).unwrap();
    let want = read_f32(&golden(&format!("{style_name}_{size}.f32")));
    let diff = max_abs_diff(&out.values, &want);
    assert!(diff <= 0.01, "{style_name} {size}: max abs diff {diff} > 0.01");
    let png = read_rgb(&golden(&format!("{style_name}_{size}.png"))).unwrap();
    let level = out.rgb.iter().zip(&png.data).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    let differing = out.rgb.iter().zip(&png.data).filter(|(a, b)| a != b).count();
    assert!(level <= 1, "{style_name} {size}: 8-bit output differs by {level} levels");
    assert!(differing * 1000 <= png.data.len(), "{style_name} {size}: {differing} values differ");
    eprintln!("{style_name} {size}: max abs diff {diff:.5}, {differing} 8-bit values differ by 1");
}

#[test]
fn all_styles_match_golden_at_64x48() {
    for s in STYLES {
        check(s, "64x48");
    }
}

#[test]
fn all_styles_match_golden_at_256x144() {
    for s in STYLES {
        check(s, "256x144");
    }
}

#[test]
fn udnie_matches_golden_layer_by_layer() {
    let desc = tf();
    let weights = style("udnie");
    let input = read_rgb(&golden("input_64x48.png")).unwrap();
    let plan = NetworkPlan::new(gpu(), &desc, &weights, 64, 48).unwrap();
    for (layer, file) in
        [("conv1", "conv1"), ("conv3", "conv3"), ("res5.conv2", "res5"), ("deconv1", "deconv1"), ("conv4", "pre_tanh")]
    {
        let i = desc.layer_index(layer).unwrap();
        let got = plan.run_to_layer(&input.data, i).unwrap();
        let want = read_f32(&golden(&format!("udnie_64x48_{file}.f32")));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-3f32.max(1e-4 * scale), "layer {layer}: max abs diff {diff} (max |x| {scale})");
    }
}

/// The staging ring: batches submitted three deep (the next uploaded while one is styled and
/// the one before is read back) give every frame exactly the bytes one frame at a time gives.
#[test]
fn frames_in_flight_give_the_same_bytes_as_one_at_a_time() {
    let desc = tf();
    let weights = style("udnie");
    let plan = NetworkPlan::new(gpu(), &desc, &weights, 64, 48).unwrap();
    let frames: Vec<Vec<u8>> = (0..7).map(|s| random_rgb(64, 48, s)).collect();
    let one_by_one: Vec<Vec<u8>> = frames.iter().map(|f| plan.run(f).unwrap().rgb).collect();
    // Batches of 2, 1, 2, 2 frames, up to three in flight, collected in order.
    let mut flying = std::collections::VecDeque::<stylestream::model::gpu::InFlight>::new();
    let mut got = Vec::new();
    for batch in [&frames[0..2], &frames[2..3], &frames[3..5], &frames[5..7]] {
        if flying.len() == 3 {
            got.extend(flying.pop_front().unwrap().collect().unwrap());
        }
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        flying.push_back(plan.submit(&refs).unwrap());
    }
    while let Some(f) = flying.pop_front() {
        got.extend(f.collect().unwrap());
    }
    assert_eq!(got.len(), frames.len());
    for (i, (a, b)) in got.iter().zip(&one_by_one).enumerate() {
        assert!(a == b, "frame {i}: in flight differs from one at a time");
    }
    // Distinct inputs gave distinct outputs (the ring did not hand one frame's result to all).
    assert_ne!(one_by_one[0], one_by_one[1]);
}
