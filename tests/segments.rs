//! One video across the fleet: a video longer than `service.segment_secs` is cut at keyframes
//! into segment jobs that any instance takes, and stitched exactly once. Checked against a
//! single instance's output (lossless: frame for frame), ffprobe (timestamps, audio packets),
//! the stores (nothing left behind), with two instances, kill -9 at three points, a forged
//! segment message and a cancel.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::svc::*;
use common::*;

/// A `secs`-long 64x48 clip at 25 fps with a keyframe every 10 frames and an AAC tone.
fn long_clip(path: &Path, secs: u32) {
    Clip::new(secs * 25).audio().extra(&["-g", "10", "-keyint_min", "10", "-sc_threshold", "0"]).write(path);
}

/// Every decoded frame of a video as RGB bytes (ffmpeg CLI), one entry per frame.
fn decoded_frames(video: &Path) -> Vec<Vec<u8>> {
    let raw = ffmpeg(&["-i", video.to_str().unwrap(), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
    raw.chunks(64 * 48 * 3).map(<[u8]>::to_vec).collect()
}

/// `ffprobe -show_packets` of one stream kind (`v` or `a`): (pts, dts, duration, size, data hash).
fn packets(video: &Path, kind: &str) -> Vec<(String, String, String, String, String)> {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &format!("{kind}:0"), "-show_packets", "-show_data_hash", "md5"])
        .args(["-show_entries", "packet=pts,dts,duration,size,data_hash", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].into(), f.get(1).copied().unwrap_or_default().into(), f.get(2).copied().unwrap_or_default().into(), f.get(3).copied().unwrap_or_default().into(), f.get(4).copied().unwrap_or_default().into())
        })
        .collect()
}

/// The presentation timestamps of a video's frames, sorted (ffprobe).
fn frame_pts(video: &Path) -> Vec<i64> {
    let mut pts: Vec<i64> = packets(video, "v").iter().filter_map(|p| p.0.parse().ok()).collect();
    pts.sort_unstable();
    pts
}

/// Objects left under the system store's `segments/`.
fn leftovers(svc: &Svc) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![svc.dir.path().join("system/segments")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                found.push(e.path());
            }
        }
    }
    found
}

/// The reference: the same input styled whole by `stylize` with the service's settings.
fn styled_whole(input: &Path, out: &Path) {
    let o = stylestream(&["stylize", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "udnie", "--crf", "0", "--preset", "medium", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_cut_video_comes_out_as_one_instance_would_make_it() {
    let mut svc = Svc::with("", Extra::default().service("segment_secs = 1\ncrf = 0"));
    let input = svc.media().join("in/long.mp4");
    long_clip(&input, 4);
    svc.start();
    svc.submit(&["--input", "in/long.mp4", "--style", "udnie", "--output", "out/long.mp4", "--id", "cut-1"]);
    let out = svc.media().join("out/long.mp4");
    let manifest = svc.media().join("out/long.mp4.manifest.json");
    svc.wait("the stitched output", 600, |_| manifest.exists());
    svc.wait("the stitch's clean-up", 60, |s| leftovers(s).is_empty());
    // Cut, styled in segments, stitched once.
    assert!(svc.metric("stylestream_jobs_total{outcome=\"planned\"}") == 1.0, "{}", http_get(svc.metrics, "/metrics"));
    assert!(svc.metric("stylestream_segments_total") >= 3.0);
    assert_eq!(svc.metric("stylestream_stitches_total"), 1.0);
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(svc.dir.path().join("system/logs/cut-1.json")).unwrap()).unwrap();
    assert_eq!(log["outcome"], "succeeded", "{log}");
    assert!(log["segments"]["segments"].as_array().unwrap().len() >= 3, "{log}");
    // The same frames as one instance makes (lossless), the input's timestamps and audio.
    let reference = svc.dir.path().join("reference.mp4");
    styled_whole(&input, &reference);
    assert_eq!(probe_frames(&out), 100);
    assert!(decoded_frames(&out) == decoded_frames(&reference), "the stitched frames differ from a single instance's");
    assert_eq!(frame_pts(&out), frame_pts(&reference));
    assert_eq!(frame_pts(&out), frame_pts(&input), "timestamps differ from the input's");
    assert_eq!(packets(&out, "a"), packets(&input, "a"), "audio packets differ from the input's");
    let (dts_ok, mut last) = (true, i64::MIN);
    for p in packets(&out, "v") {
        let d: i64 = p.1.parse().unwrap();
        assert!(d > last, "dts not monotonic at {d} after {last}");
        last = d;
    }
    assert!(dts_ok);
    assert!(svc.stop());
}
