//! Shared test helpers: where the models are, one GPU device per test binary, file readers.
#![allow(dead_code)]

pub mod azurite;
pub mod media;
pub mod proxy;
pub mod s3;
pub mod svc;

#[allow(unused_imports)]
pub use media::{ffmpeg, png_frames, random_rgb, Clip};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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
    xorshift(seed).take(n).map(|s| ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale).collect()
}

/// The xorshift64 sequence from `seed`: deterministic test data without a dependency.
pub fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    std::iter::repeat_with(move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    })
}

/// The stylestream binary with the models directory and a runtime directory set.
pub fn stylestream_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stylestream"));
    c.args(args).env("STYLESTREAM_MODELS_DIR", models_dir()).env("XDG_RUNTIME_DIR", "/tmp");
    c
}

/// Runs stylestream to completion.
pub fn stylestream(args: &[&str]) -> Output {
    stylestream_command(args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Files in `dir` whose name contains `partial` (the implementation's temporaries).
pub fn partial_files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Fails with one line on stderr (starting `error:`) naming `what`, and leaves neither a file at
/// `output` nor a temporary beside it.
pub fn assert_clean_failure(o: &Output, what: &str, output: &Path) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line on stderr, got:\n{err}");
    assert!(err.starts_with("error:"), "the line should start with `error:`: {err}");
    assert!(err.contains(what), "message should name `{what}`: {err}");
    assert!(!output.exists(), "{} was left behind", output.display());
    let leftovers = partial_files(output.parent().unwrap());
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Video frames ffprobe counts by decoding the first video stream (0 when it cannot).
pub fn probe_frames(path: &Path) -> u64 {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0)
}

/// Waits until `done` (polled every 100 ms), failing the test after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Marks the running test as skipped because its precondition does not hold here: prints
/// `skipped: <test>: <why>` and appends that line to `$STYLESTREAM_SKIP_LOG` when set. `make
/// test` counts those lines and prints the total, so a skip is never a silent pass. The test
/// returns right after.
pub fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("skipped: {test}: {why}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("STYLESTREAM_SKIP_LOG") {
        use std::io::Write;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Resident memory of a process, KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
