//! Criterion benches of the GPU network: plan building and one frame at two sizes, on the
//! first adapter (lavapipe here). Models come from ../shared/models or STYLESTREAM_MODELS_DIR;
//! without them the benches say so and do nothing.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stylestream::frame::RgbFrame;
use stylestream::model::gpu::{GpuContext, GpuOptions, NetworkPlan};
use stylestream::model::{NetworkDescription, Weights};

fn model() -> Option<PathBuf> {
    let dir = std::env::var_os("STYLESTREAM_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models"));
    let path = dir.join("udnie.safetensors");
    path.is_file().then_some(path)
}

fn network(c: &mut Criterion) {
    let Some(path) = model() else {
        eprintln!("benches/network: no udnie.safetensors (set STYLESTREAM_MODELS_DIR); skipping");
        return;
    };
    let desc = NetworkDescription::load("transformnet-tf").expect("built-in description");
    let weights = Weights::load(&path, &desc).expect("model");
    let ctx = GpuContext::new(&GpuOptions::default()).expect("a GPU adapter");
    let mut group = c.benchmark_group("transformnet");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1));
    group.bench_function("plan_build_256x144", |b| {
        b.iter(|| NetworkPlan::new(&ctx, &desc, &weights, 256, 144).expect("plan"))
    });
    for (w, h) in [(64, 48), (256, 144)] {
        let plan = NetworkPlan::new(&ctx, &desc, &weights, w, h).expect("plan");
        let frame = RgbFrame::test_card(w, h);
        plan.run(&frame.data).expect("warm-up frame");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("frame_{w}x{h}"), |b| b.iter(|| plan.run(&frame.data).expect("frame")));
    }
    group.finish();
}

criterion_group!(benches, network);
criterion_main!(benches);
