//! The shipped run configurations (config/*.toml) parse and validate, a bad one is refused
//! with the file and field named, and a run with the multi-GPU example (its adapter list wraps
//! around the one adapter here) gives one worker's frames.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use stylestream::config::RunConfig;

#[test]
fn every_shipped_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "service.toml") {
            stylestream::config::service::ServiceConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        } else if path.extension().is_some_and(|e| e == "toml") {
            RunConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 3, "expected local, multi-GPU node and cluster examples, found {n}");
}

#[test]
fn a_service_config_with_a_password_or_bad_fields_is_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("service.toml");
    std::fs::write(
        &bad,
        "[broker]\nurl = \"amqp://u:hunter2@h/%2f\"\nprefetch = 0\n[storage]\nmedia = \"file:///m\"\nsystem = \"file:///s\"\n\
         [models]\ndir = \"/m\"\n[[routes]]\nprefix = \"in/\"\nstyle = \"udnie\"\noutput_prefix = \"in/out/\"\n",
    )
    .unwrap();
    let e = stylestream::config::service::ServiceConfig::load(&bad).unwrap_err().to_string();
    assert!(e.contains("service.toml"), "{e}");
    assert!(e.contains("broker.url holds a password") && !e.contains("hunter2"), "{e}");
    assert!(e.contains("broker.prefetch = 0"), "{e}");
    assert!(e.contains("routes[0]"), "{e}");
}

#[test]
fn a_bad_config_is_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "workers = 0\n").unwrap();
    let input = golden("input_64x48.png");
    let out = dir.path().join("o.mp4");
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "udnie",
        "--config",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("bad.toml") && err.contains("workers = 0"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn the_multi_gpu_example_runs_and_matches_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    let o = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=25",
            "-frames:v",
            "6",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/multi-gpu-node.toml");
    let (a, b) = (dir.path().join("a/"), dir.path().join("b/"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["stylize", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "udnie", "-q"];
        args.extend_from_slice(extra);
        let o = stylestream(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&a, &["--config", config.to_str().unwrap()]);
    run(&b, &["--workers", "1"]);
    let read = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(read(&a).len(), 6);
    assert!(read(&a) == read(&b), "3 workers from the config differ from one worker");
}
