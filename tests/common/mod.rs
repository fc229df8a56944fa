//! Shared test helpers: where the models are, one GPU device per test binary, file readers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use stylestream::model::gpu::{GpuContext, GpuOptions};
use stylestream::model::{NetworkDescription, Weights};

pub const STYLES: [&str; 4] = ["udnie", "wave", "scream", "wreck"];

/// `../shared/models` beside the repository, or `STYLESTREAM_MODELS_DIR`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("STYLESTREAM_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models"),
    }
}

pub fn golden(name: &str) -> PathBuf {
    models_dir().join("golden").join(name)
}

pub fn gpu() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| GpuContext::new(&GpuOptions::default()).expect("a wgpu adapter (lavapipe) is required"))
}

pub fn tf() -> NetworkDescription {
    NetworkDescription::load("transformnet-tf").unwrap()
}

pub fn style(name: &str) -> Weights {
    Weights::load(&models_dir().join(format!("{name}.safetensors")), &tf()).unwrap()
}

pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Deterministic pseudo-random values in [-scale, scale) (xorshift; no extra dependency).
pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
