//! `stylestream batch`: (videos × styles) − done, planned incrementally. Finished pairs are
//! never styled again (no GPU device is even opened), a new style or video adds only its own
//! pairs, and outputs are real, complete videos (checked with ffprobe).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::*;

fn modified(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// Runs `batch` with info logs, so opening a GPU device shows up as "worker GPU ready".
fn batch(inputs: &Path, out: &Path, styles: &[&str]) -> (bool, String) {
    let mut args =
        vec!["batch", inputs.to_str().unwrap(), "-o", out.to_str().unwrap(), "--workers", "2", "--progress", "none"];
    for s in styles {
        args.extend(["--style", s]);
    }
    let o = stylestream_command(&args).env("STYLESTREAM_LOG", "info").output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn finished_pairs_are_skipped_and_only_new_styles_and_videos_are_styled() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    Clip::new(4).write(&videos.join("a.mp4"));
    Clip::new(3).source("mandelbrot").write(&videos.join("b.mkv"));
    std::fs::write(videos.join("notes.txt"), "not a video").unwrap();
    let out = dir.path().join("styled");

    let (ok, err) = batch(&videos, &out, &["udnie"]);
    assert!(ok, "{err}");
    assert!(err.contains("2 pairs: 2 to style, 0 already done"), "{err}");
    let (a, b) = (out.join("a.udnie.mp4"), out.join("b.udnie.mkv"));
    assert_eq!((probe_frames(&a), probe_frames(&b)), (4, 3));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a.udnie.mp4.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["frames"], 4);
    assert_eq!(manifest["output_size"], std::fs::metadata(&a).unwrap().len());
    assert_eq!(manifest["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["settings"]["precision"], "auto", "the precision asked for is recorded");
    let stamps = (modified(&a), modified(&b));

    // Again: nothing to do, and no GPU device is opened.
    let (ok, err) = batch(&videos, &out, &["udnie"]);
    assert!(ok, "{err}");
    assert!(err.contains("2 pairs: 0 to style, 2 already done"), "{err}");
    assert!(!err.contains("worker GPU ready"), "a finished pair touched the GPU: {err}");
    assert_eq!((modified(&a), modified(&b)), stamps);

    // A new style: only its two pairs; a new video: only its pairs.
    let (ok, err) = batch(&videos, &out, &["udnie", "wave"]);
    assert!(ok, "{err}");
    assert!(err.contains("4 pairs: 2 to style, 2 already done"), "{err}");
    assert_eq!(probe_frames(&out.join("a.wave.mp4")), 4);
    assert_eq!((modified(&a), modified(&b)), stamps);
    Clip::new(2).source("rgbtestsrc").write(&videos.join("c.mp4"));
    let (ok, err) = batch(&videos, &out, &["udnie", "wave"]);
    assert!(ok, "{err}");
    assert!(err.contains("6 pairs: 2 to style, 4 already done"), "{err}");

    // An output that disappeared, or whose manifest no longer matches it, is made again.
    std::fs::remove_file(out.join("c.wave.mp4")).unwrap();
    let (ok, err) = batch(&videos, &out, &["udnie", "wave"]);
    assert!(ok, "{err}");
    assert!(err.contains("6 pairs: 1 to style, 5 already done"), "{err}");
    assert_eq!(probe_frames(&out.join("c.wave.mp4")), 2);

    // Styled in a batch (two styles, two workers) is the very file `stylize` writes alone.
    let alone = dir.path().join("alone.mp4");
    let o = stylestream(&[
        "stylize",
        videos.join("a.mp4").to_str().unwrap(),
        "-o",
        alone.to_str().unwrap(),
        "--model",
        "udnie",
        "-q",
    ]);
    assert!(o.status.success());
    assert!(std::fs::read(&alone).unwrap() == std::fs::read(&a).unwrap(), "the batch output differs from stylize's");
}

#[test]
fn a_broken_video_fails_its_pairs_but_not_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    Clip::new(3).write(&videos.join("good.mp4"));
    std::fs::write(videos.join("broken.mp4"), b"this is not a video at all").unwrap();
    let out = dir.path().join("styled");
    let (ok, err) = batch(&videos, &out, &["udnie"]);
    assert!(!ok, "a failed pair makes the exit code non-zero");
    assert!(err.contains("broken.mp4"), "the broken input is named: {err}");
    assert!(err.contains("1 of 2 pairs failed"), "{err}");
    assert_eq!(probe_frames(&out.join("good.udnie.mp4")), 3);
    let left: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left.len(), 2, "only the good output and its manifest: {left:?}");
}

#[test]
fn watching_styles_videos_that_arrive_later() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    let out = dir.path().join("styled");
    let mut child = stylestream_command(&[
        "batch",
        videos.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--style",
        "wave",
        "--watch",
        "0.2",
        "--progress",
        "none",
        "--log",
        "info",
    ])
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Every line of stderr, as it comes.
    let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (err, stderr) = (err.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
                err.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let text = || err.lock().unwrap().clone();
    // Made elsewhere, then moved in (as uploads should be) once the watcher has scanned an empty
    // directory: the video arrives later, and only --watch can find it.
    let staged = dir.path().join("late.mp4");
    Clip::new(3).write(&staged);
    wait_for("the first scan", 120, || text().contains("inputs scanned"));
    std::fs::rename(&staged, videos.join("late.mp4")).unwrap();
    let manifest = out.join("late.wave.mp4.manifest.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !manifest.exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    child.wait().unwrap();
    reader.join().unwrap();
    let err = text();
    assert!(manifest.exists(), "the late video was not styled: {err}");
    assert_eq!(probe_frames(&out.join("late.wave.mp4")), 3);
    let first_scan = err.find("inputs scanned").unwrap();
    assert!(err[first_scan..].contains("1 to style"), "{err}");
    let first_line = err[first_scan..].lines().next().unwrap();
    assert!(first_line.contains("videos=0"), "the first scan already saw the video: {err}");
}

/// The precision is part of a pair's settings: another precision makes the pair again.
#[test]
fn another_precision_is_new_work() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    Clip::new(2).write(&videos.join("a.mp4"));
    let out = dir.path().join("styled");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "batch",
            videos.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--style",
            "udnie",
            "--progress",
            "none",
        ];
        args.extend(extra);
        let o = stylestream_command(&args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    assert!(run(&[]).contains("1 to style, 0 already done"));
    assert!(run(&[]).contains("0 to style, 1 already done"));
    assert!(run(&["--precision", "f32"]).contains("1 to style, 0 already done"), "f32 was taken as done with auto");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a.udnie.mp4.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["settings"]["precision"], "f32");
}
