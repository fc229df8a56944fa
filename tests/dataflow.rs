//! The dataflow engine (every command runs through it) against the image path (the network on
//! each frame alone): byte-identical frames at 1, 2 and 3 workers; then complete videos,
//! retries, two processes and several videos at once against one worker; and clean failures.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The PNG files of a directory, sorted, with their bytes.
fn frames(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

/// The oracle: each PNG of `dir` styled alone by the image path (`stylize frame.png`).
fn styled_alone(dir: &Path, out: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(out).unwrap();
    for (name, _) in frames(dir) {
        let (i, o) = (dir.join(&name), out.join(&name));
        let r = stylestream(&["stylize", i.to_str().unwrap(), "-o", o.to_str().unwrap(), "--model", "udnie", "-q"]);
        assert!(r.status.success(), "{name}: {}", String::from_utf8_lossy(&r.stderr));
    }
    frames(out)
}

#[test]
fn one_two_and_three_workers_give_the_frames_of_the_image_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let pattern = input.join("f%03d.png");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "5", pattern.to_str().unwrap()]);
    let alone = styled_alone(&input, &dir.path().join("alone"));
    assert_eq!(alone.len(), 5);
    for w in ["1", "2", "3"] {
        let out = dir.path().join(format!("workers{w}/"));
        let o = stylestream(&[
            "stylize",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--model",
            "udnie",
            "-q",
            "--fps",
            "25",
            "--workers",
            w,
            "--max-frames-in-flight",
            "2",
        ]);
        assert!(o.status.success(), "{w} workers: {}", String::from_utf8_lossy(&o.stderr));
        let got = frames(&out);
        assert_eq!(got.len(), alone.len(), "{w} workers: frame count");
        for ((name_a, a), (name_b, b)) in alone.iter().zip(&got) {
            assert_eq!(name_a, name_b);
            assert!(a == b, "{w} workers: {name_a} differs from the frame styled alone");
        }
    }
}

#[test]
fn two_workers_write_a_complete_video_with_its_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(20).write(&input);
    let out = dir.path().join("styled.mkv");
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "wave",
        "--workers",
        "2",
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pts = |f: &Path| {
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "frame=pts_time",
                "-of",
                "csv=p=0",
                f.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split(',').next()?.trim().parse::<f64>().ok())
            .map(|t| (t * 1000.0).round() as i64)
            .collect::<Vec<_>>()
    };
    let (a, b) = (pts(&input), pts(&out));
    assert_eq!(a.len(), 20);
    assert_eq!(a, b, "frame timestamps differ");
}

#[test]
fn a_truncated_input_fails_cleanly_with_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-frames:v",
        "30",
        "-c:v",
        "libx264",
        "-movflags",
        "+faststart",
        input.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&input).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let out = dir.path().join("out.mp4");
    let o = stylestream(&[
        "stylize",
        cut.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "udnie",
        "--workers",
        "2",
    ]);
    assert_clean_failure(&o, "cut.mp4", &out);
}

/// Two free loopback ports (bound, read, released; a small race is acceptable in a test).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

#[test]
fn two_processes_on_loopback_give_the_frames_and_the_video_file_of_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(7).write(&input);
    let (p0, p1) = free_ports();
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(&hosts, format!("127.0.0.1:{p0}\n127.0.0.1:{p1}\n")).unwrap();
    let out = dir.path().join("cluster/");
    // The same run also writes the video, to compare the encoded file with one worker's.
    let video = dir.path().join("cluster.mp4");
    let and = format!("{}={}", input.to_str().unwrap(), video.to_str().unwrap());
    let args = |process: &str| -> Vec<String> {
        [
            "stylize",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--model",
            "udnie",
            "-q",
            "--processes",
            "2",
            "--process",
            process,
            "--hostfile",
            hosts.to_str().unwrap(),
            "--and",
            &and,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let helper_args = args("1");
    let mut helper = stylestream_command(&helper_args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let main: Vec<String> = args("0");
    let o = stylestream(&main.iter().map(String::as_str).collect::<Vec<_>>());
    if !o.status.success() {
        // Process 1 would wait for its peer forever.
        let _ = helper.kill();
    }
    let helper = helper.wait_with_output().unwrap();
    assert!(o.status.success(), "process 0: {}", String::from_utf8_lossy(&o.stderr));
    assert!(helper.status.success(), "process 1 failed");
    let one = dir.path().join("one/");
    let d = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        one.to_str().unwrap(),
        "--model",
        "udnie",
        "-q",
        "--workers",
        "1",
    ]);
    assert!(d.status.success());
    let (a, b) = (frames(&one), frames(&out));
    assert_eq!(a.len(), 7);
    assert!(a == b, "frames from two processes differ from one worker's");
    let single = dir.path().join("single.mp4");
    let s = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
        "--model",
        "udnie",
        "-q",
        "--workers",
        "1",
    ]);
    assert!(s.status.success());
    assert!(
        std::fs::read(&single).unwrap() == std::fs::read(&video).unwrap(),
        "the video of two processes differs from one worker's"
    );
}

#[test]
fn a_frame_failing_once_is_retried_on_another_worker_and_the_output_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(6).write(&input);
    let one = dir.path().join("one/");
    let retried = dir.path().join("retried/");
    let d = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        one.to_str().unwrap(),
        "--model",
        "udnie",
        "-q",
        "--workers",
        "1",
    ]);
    assert!(d.status.success());
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        retried.to_str().unwrap(),
        "--model",
        "udnie",
        "--workers",
        "2",
        "--fail-frame",
        "3:1",
        "--progress",
        "none",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("styling failed"), "the failed attempt is reported: {err}");
    assert!(frames(&one) == frames(&retried), "the retried run differs from one worker without failures");
}

#[test]
fn a_frame_failing_every_time_fails_the_job_naming_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(6).write(&input);
    let out = dir.path().join("out.mp4");
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "udnie",
        "--workers",
        "2",
        "--retries",
        "2",
        "--fail-frame",
        "4:0",
        "-q",
    ]);
    assert_clean_failure(&o, "frame 4", &out);
    assert!(stderr(&o).contains("3 attempts"), "{}", stderr(&o));
}

#[test]
fn two_videos_in_one_dataflow_both_come_out_complete_and_correct() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.mp4"), dir.path().join("b.mp4"));
    Clip::new(5).write(&a);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=30",
        "-frames:v",
        "8",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        b.to_str().unwrap(),
    ]);
    let (a_out, b_out) = (dir.path().join("a-styled/"), dir.path().join("b-styled/"));
    let and = format!("{}={}", b.to_str().unwrap(), b_out.to_str().unwrap());
    let o = stylestream(&[
        "stylize",
        a.to_str().unwrap(),
        "-o",
        a_out.to_str().unwrap(),
        "--and",
        &and,
        "--model",
        "udnie",
        "--workers",
        "2",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("a-styled") && err.contains("b-styled"), "each output is reported: {err}");
    // Each equals the video styled on its own by one worker.
    for (input, out, n) in [(&a, &a_out, 5), (&b, &b_out, 8)] {
        let alone = dir.path().join(format!("{}-alone/", n));
        let d = stylestream(&[
            "stylize",
            input.to_str().unwrap(),
            "-o",
            alone.to_str().unwrap(),
            "--model",
            "udnie",
            "-q",
            "--workers",
            "1",
        ]);
        assert!(d.status.success());
        let (x, y) = (frames(out), frames(&alone));
        assert_eq!(x.len(), n);
        assert!(x == y, "{} differs when styled together with another video", input.display());
    }
}

#[test]
fn batches_of_frames_in_one_submission_give_the_frames_of_one_frame_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(7).write(&input); // 7 frames in batches of 3: two whole batches and a partial one at the end
    let one = dir.path().join("one/");
    let batched = dir.path().join("batched/");
    let d = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        one.to_str().unwrap(),
        "--model",
        "udnie",
        "-q",
        "--workers",
        "1",
    ]);
    assert!(d.status.success());
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        batched.to_str().unwrap(),
        "--model",
        "udnie",
        "--workers",
        "2",
        "--frames-per-batch",
        "3",
        "--max-frames-in-flight",
        "1",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (frames(&one), frames(&batched));
    assert_eq!(b.len(), 7);
    assert!(a == b, "batched frames differ from frames styled one at a time");
}

#[test]
fn a_batch_failing_every_time_fails_the_job_naming_its_frame_range() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(6).write(&input);
    let out = dir.path().join("out.mp4");
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "udnie",
        "--workers",
        "2",
        "--frames-per-batch",
        "2",
        "--retries",
        "1",
        "--fail-frame",
        "5:0",
        "-q",
    ]);
    assert_clean_failure(&o, "frames 4..=5", &out);
    assert!(stderr(&o).contains("2 attempts"), "{}", stderr(&o));
}

#[test]
fn one_and_two_workers_write_byte_identical_video_files() {
    // x264 is deterministic for the same input and settings, and the muxer writes no clock
    // time: the encoded files themselves must match, audio included.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=44100",
        "-frames:v",
        "8",
        "-t",
        "0.32",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        input.to_str().unwrap(),
    ]);
    let mut outputs = Vec::new();
    for (name, extra) in
        [("w1.mp4", vec!["--workers", "1"]), ("w2.mp4", vec!["--workers", "2", "--frames-per-batch", "3"])]
    {
        let out = dir.path().join(name);
        let mut args = vec!["stylize", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "wave", "-q"];
        args.extend(extra);
        let o = stylestream(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert!(outputs[0].len() > 1000);
    assert!(outputs[0] == outputs[1], "the encoded files of 1 and 2 workers differ");
}
