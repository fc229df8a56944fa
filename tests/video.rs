//! Video through `stylestream stylize`, checked with ffmpeg/ffprobe as independent oracles: frame
//! counts, timestamps (constant and variable rate), audio packets copied untouched, rotation, odd
//! sizes, image sequences in and out, clean one-line failures, progress output, Ctrl-C and memory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

// ------------------------------------------------------------------------------------------------
// Running stylestream (the same conventions as tests/cli.rs)
// ------------------------------------------------------------------------------------------------

/// The stylestream binary with the test environment (models dir, XDG_RUNTIME_DIR for lavapipe).
/// `stylestream stylize INPUT -o OUTPUT --model udnie EXTRA...`.
fn stylize(input: &str, output: &str, extra: &[&str]) -> Output {
    let mut args = vec!["stylize", input, "-o", output, "--model", "udnie"];
    args.extend_from_slice(extra);
    stylestream(&args)
}

/// Like [`stylize`], and asserts that it succeeded.
fn stylize_ok(input: &str, output: &str, extra: &[&str]) -> Output {
    let o = stylize(input, output, extra);
    assert!(o.status.success(), "stylize {input} -o {output} {extra:?} failed ({}):\n{}", o.status, stderr(&o));
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ------------------------------------------------------------------------------------------------
// ffmpeg / ffprobe oracles
// ------------------------------------------------------------------------------------------------

/// `ffprobe -v error -of json ARGS FILE`, parsed; panics if ffprobe fails.
fn ffprobe_json(file: &Path, args: &[&str]) -> Value {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("the ffprobe CLI is required");
    assert!(o.status.success(), "ffprobe {args:?} {} failed:\n{}", file.display(), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// All the streams of `file` (ffprobe `-show_streams`).
fn streams(file: &Path) -> Vec<Value> {
    ffprobe_json(file, &["-show_streams"])["streams"].as_array().cloned().unwrap_or_default()
}

/// The first video stream of `file` (ffprobe `-show_streams`), or Null when there is none.
fn video_stream(file: &Path) -> Value {
    streams(file).into_iter().find(|s| s["codec_type"] == "video").unwrap_or(Value::Null)
}

/// (width, height) of the first video stream as stored (before any display rotation).
fn video_size(file: &Path) -> (u64, u64) {
    let v = video_stream(file);
    (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap())
}

/// Number of video frames that actually decode (ffprobe `-count_frames`, `nb_read_frames`).
fn frame_count(file: &Path) -> usize {
    let j = ffprobe_json(file, &["-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames"]);
    let n = &j["streams"][0]["nb_read_frames"];
    n.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no frame count for {}: {j}", file.display()))
}

/// Presentation time in seconds of every decoded video frame, in output (= presentation) order.
fn video_pts(file: &Path) -> Vec<f64> {
    let j =
        ffprobe_json(file, &["-select_streams", "v:0", "-show_entries", "frame=pts_time,best_effort_timestamp_time"]);
    let frames = j["frames"].as_array().cloned().unwrap_or_default();
    frames
        .iter()
        .map(|f| {
            let t = f["pts_time"].as_str().or(f["best_effort_timestamp_time"].as_str());
            t.and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("frame without a timestamp in {}: {f}", file.display()))
        })
        .collect()
}

/// Duration of the video stream in seconds: the stream's `duration`, Matroska's `DURATION` tag, or
/// the container's duration, whichever is found first.
fn video_duration(file: &Path) -> f64 {
    let v = video_stream(file);
    if let Some(d) = v["duration"].as_str().and_then(|d| d.parse().ok()) {
        return d;
    }
    if let Some(d) = v["tags"]["DURATION"].as_str() {
        let parts: Vec<f64> = d.split(':').map(|p| p.parse().unwrap()).collect();
        return parts.iter().fold(0.0, |acc, p| acc * 60.0 + p);
    }
    let f = ffprobe_json(file, &["-show_entries", "format=duration"]);
    f["format"]["duration"].as_str().unwrap().parse().unwrap()
}

/// MD5 of the audio packets of `file`, copied without decoding (`-map 0:a -c copy -f md5 -`).
fn audio_md5(file: &Path) -> String {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i", s(file), "-map", "0:a", "-c", "copy", "-f", "md5", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{} has no audio that can be copied:\n{}", file.display(), stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// Timestamp in seconds of the first audio packet (negative for AAC priming in mp4).
fn first_audio_pts(file: &Path) -> f64 {
    let j =
        ffprobe_json(file, &["-select_streams", "a:0", "-show_entries", "packet=pts_time", "-read_intervals", "%+#1"]);
    j["packets"][0]["pts_time"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no audio packet in {}: {j}", file.display()))
}

/// Display rotation of the first video stream in degrees: the display matrix side data, else the
/// legacy `rotate` tag; None when neither is present.
fn rotation(file: &Path) -> Option<f64> {
    let v = video_stream(file);
    if let Some(list) = v["side_data_list"].as_array() {
        if let Some(r) = list.iter().find_map(|sd| sd["rotation"].as_f64()) {
            return Some(r);
        }
    }
    v["tags"]["rotate"].as_str().and_then(|r| r.parse().ok())
}

/// The first frame of `file` (a video or an image) as packed RGB24, decoded by ffmpeg.
fn first_frame_rgb(file: &Path) -> Vec<u8> {
    ffmpeg(&["-i", s(file), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "frame sizes differ");
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64
}

/// Same number of timestamps, each within half a millisecond (the precision of Matroska).
fn assert_pts_equal(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} frames, expected {}\n got: {got:?}\nwant: {want:?}",
        got.len(),
        want.len()
    );
    if let Some(i) = (0..got.len()).find(|&i| (got[i] - want[i]).abs() > 0.0005) {
        panic!("{what}: frame {i} at {} s, expected {} s\n got: {got:?}\nwant: {want:?}", got[i], want[i]);
    }
}

/// The `.png` files in `dir`, sorted by name.
fn png_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    v.sort();
    v
}

// ------------------------------------------------------------------------------------------------
// Round trips: frames, timing, audio
// ------------------------------------------------------------------------------------------------

#[test]
fn mp4_round_trip_keeps_frames_timestamps_duration_and_audio_packets() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(30).audio().write(&input);
    let (n_in, pts_in) = (frame_count(&input), video_pts(&input));
    assert_eq!(n_in, 30, "test input");
    let audio_in = streams(&input).into_iter().find(|s| s["codec_type"] == "audio").expect("test input has audio");
    assert!(audio_in["duration"].as_str().unwrap().parse::<f64>().unwrap() > 1.1, "test input audio: {audio_in}");

    let out = dir.path().join("styled.mp4");
    stylize_ok(s(&input), s(&out), &[]);
    let v = video_stream(&out);
    assert_eq!(v["codec_name"], "h264", "H.264 is the default codec: {v}");
    assert_eq!(video_size(&out), (64, 48));
    assert_eq!(frame_count(&out), n_in, "frame count");
    assert_pts_equal(&video_pts(&out), &pts_in, "output timestamps");
    let (d_in, d_out) = (video_duration(&input), video_duration(&out));
    assert!((d_in - d_out).abs() <= 1.0 / 25.0 + 1e-6, "duration {d_out} s, input {d_in} s");
    let audio: Vec<_> = streams(&out).into_iter().filter(|s| s["codec_type"] == "audio").collect();
    assert_eq!(audio.len(), 1, "one audio stream expected");
    assert_eq!(audio[0]["codec_name"], "aac", "audio should be copied, not re-encoded");
    assert_eq!(audio_md5(&out), audio_md5(&input), "audio packets differ from the input's");
}

#[test]
fn mkv_output_keeps_frame_count_and_audio_packets() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(30).audio().write(&input);
    let out = dir.path().join("styled.mkv");
    stylize_ok(s(&input), s(&out), &[]);
    let info = ffprobe_json(&out, &["-show_format"]);
    assert!(info["format"]["format_name"].as_str().unwrap().contains("matroska"), "not Matroska: {info}");
    assert_eq!(frame_count(&out), frame_count(&input), "frame count");
    assert_eq!(audio_md5(&out), audio_md5(&input), "audio packets differ from the input's");
    // Matroska cannot store the AAC priming packet's negative timestamp, so the muxer shifts every
    // stream by the same amount (as `ffmpeg -c copy` does): the frame times may move, but only by
    // the audio's shift, which keeps audio and video in sync.
    let (pts_in, pts_out) = (video_pts(&input), video_pts(&out));
    let shift = pts_out[0] - pts_in[0];
    let audio_shift = first_audio_pts(&out) - first_audio_pts(&input);
    eprintln!("mkv: video shifted {shift:.4} s, audio {audio_shift:.4} s");
    assert!(
        (shift - audio_shift).abs() <= 0.0015,
        "video moved {shift} s against the audio's {audio_shift} s: out of sync"
    );
    let shifted: Vec<f64> = pts_in.iter().map(|t| t + shift).collect();
    assert_pts_equal(&pts_out, &shifted, "output timestamps (after the common shift)");
}

#[test]
fn variable_frame_rate_timestamps_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("vfr.mkv");
    // 25 fps, then a 0.37 s gap after frame 10, then frames 60 ms apart after frame 20.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-frames:v",
        "30",
        "-vf",
        "settb=1/1000,setpts='(N/25+if(gt(N,10),0.37,0)+if(gt(N,20),0.5*(N-20)/25,0))/TB'",
        "-fps_mode",
        "passthrough",
        "-enc_time_base",
        "1:1000",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        s(&input),
    ]);
    let pts_in = video_pts(&input);
    assert_eq!(pts_in.len(), 30, "test input");
    let mut gaps: Vec<i64> = pts_in.windows(2).map(|w| ((w[1] - w[0]) * 1000.0).round() as i64).collect();
    gaps.sort();
    gaps.dedup();
    assert!(gaps.len() >= 3 && gaps.iter().any(|&g| g > 300), "test input is not variable-rate: gaps {gaps:?} ms");

    for ext in ["mkv", "mp4"] {
        let out = dir.path().join(format!("styled.{ext}"));
        stylize_ok(s(&input), s(&out), &[]);
        assert_pts_equal(&video_pts(&out), &pts_in, &format!("{ext} output timestamps"));
    }
}

#[test]
fn first_video_frame_matches_image_mode() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(3).size(256, 144).write(&input);
    let frame0 = dir.path().join("frame0.png");
    ffmpeg(&["-i", s(&input), "-frames:v", "1", s(&frame0)]);
    let frame0_styled = dir.path().join("frame0-styled.png");
    stylize_ok(s(&frame0), s(&frame0_styled), &[]);
    let out = dir.path().join("styled.mp4");
    stylize_ok(s(&input), s(&out), &[]);

    let (video0, image0, plain0) = (first_frame_rgb(&out), first_frame_rgb(&frame0_styled), first_frame_rgb(&frame0));
    assert_eq!(video0.len(), 256 * 144 * 3);
    let to_image = mean_abs_diff(&video0, &image0);
    let style_change = mean_abs_diff(&image0, &plain0);
    eprintln!("frame 0: video vs image mode {to_image:.2} levels; styled vs unstyled {style_change:.2} levels");
    assert!(to_image < 8.0, "video frame 0 differs from the image-mode result by {to_image:.2} levels on average");
    assert!(
        to_image <= 0.5 * style_change,
        "video frame 0 is {to_image:.2} levels from image mode, the style itself only changes {style_change:.2}"
    );
}

#[test]
fn rotation_metadata_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.mp4");
    Clip::new(10).write(&plain);
    // ffmpeg 5.1 honours the `rotate` tag only when stream-copying into mp4.
    let input = dir.path().join("rotated.mp4");
    ffmpeg(&["-i", s(&plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", s(&input)]);
    let rot_in = rotation(&input).expect("test input has no rotation");
    assert_eq!(rot_in.abs(), 90.0, "test input");

    let out = dir.path().join("styled.mp4");
    stylize_ok(s(&input), s(&out), &[]);
    assert_eq!(rotation(&out), Some(rot_in), "rotation of the output: {}", video_stream(&out));
    assert_eq!(video_size(&out), (64, 48), "pixels should stay as stored, the metadata rotates them");
    assert_eq!(frame_count(&out), 10);
}

#[test]
fn odd_sized_video_keeps_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("odd.mp4");
    Clip::new(12).size(37, 23).write(&input);
    assert_eq!(video_size(&input), (37, 23), "test input");
    let out = dir.path().join("styled.mp4");
    stylize_ok(s(&input), s(&out), &[]);
    assert_eq!(video_size(&out), (37, 23));
    assert_eq!(frame_count(&out), 12);
}

#[test]
fn codec_option_picks_the_encoder_and_webm_reencodes_aac_to_opus() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(15).audio().write(&input);
    let out = dir.path().join("styled.webm");
    let o = stylize_ok(s(&input), s(&out), &["--codec", "libvpx-vp9", "--crf", "30"]);
    assert!(stderr(&o).contains("re-encoding"), "the re-encode must be announced: {}", stderr(&o));
    let all = streams(&out);
    let video: Vec<_> = all.iter().filter(|s| s["codec_type"] == "video").collect();
    assert_eq!(video.len(), 1);
    assert_eq!(video[0]["codec_name"], "vp9");
    assert_eq!(frame_count(&out), 15);
    // WebM cannot hold AAC: the audio is re-encoded with the container's encoder (Opus) and
    // lasts as long as the input's (within Opus' 20 ms frames and pre-skip).
    let audio: Vec<_> = all.iter().filter(|s| s["codec_type"] == "audio").collect();
    assert_eq!(audio.len(), 1, "one audio stream expected: {all:?}");
    assert_eq!(audio[0]["codec_name"], "opus");
    let decoded = |f: &Path| {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "a",
                "-show_entries",
                "packet=pts_time,duration_time",
                "-of",
                "csv=p=0",
                s(f),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split(',').map(|v| v.parse::<f64>().unwrap_or(0.0));
                Some(it.next()? + it.next()?)
            })
            .fold(0f64, f64::max)
    };
    let (a_in, a_out) = (decoded(&input), decoded(&out));
    assert!((a_in - a_out).abs() < 0.05, "audio lasts {a_out} s in the output, {a_in} s in the input");
}

// ------------------------------------------------------------------------------------------------
// Image sequences
// ------------------------------------------------------------------------------------------------

#[test]
fn image_directory_with_fps_flag_makes_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    png_frames(&frames, 5, (64, 48));
    let out = dir.path().join("seq.mp4");
    stylize_ok(s(&frames), s(&out), &["--fps", "10"]);
    assert_eq!(frame_count(&out), 5);
    assert_eq!(video_size(&out), (64, 48));
    assert_pts_equal(&video_pts(&out), &[0.0, 0.1, 0.2, 0.3, 0.4], "timestamps at 10 fps");
    let d = video_duration(&out);
    assert!((d - 0.5).abs() < 0.011, "duration {d} s, expected 0.5 s");
}

#[test]
fn image_directory_reads_fps_txt() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    png_frames(&frames, 5, (64, 48));
    std::fs::write(frames.join("fps.txt"), "10\n").unwrap();
    let out = dir.path().join("seq.mp4");
    stylize_ok(s(&frames), s(&out), &[]);
    assert_eq!(frame_count(&out), 5, "fps.txt must not be taken for a frame");
    assert_pts_equal(&video_pts(&out), &[0.0, 0.1, 0.2, 0.3, 0.4], "timestamps at 10 fps from fps.txt");
}

#[test]
fn image_directory_without_fps_fails_naming_fps() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    png_frames(&frames, 5, (64, 48));
    let out = dir.path().join("seq.mp4");
    let o = stylize(s(&frames), s(&out), &[]);
    assert_clean_failure(&o, "fps", &out);
}

#[test]
fn printf_pattern_input_makes_a_video_at_an_ntsc_rate() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    png_frames(&frames, 5, (64, 48));
    let pattern = frames.join("%03d.png");
    let out = dir.path().join("seq.mp4");
    stylize_ok(s(&pattern), s(&out), &["--fps", "30000/1001"]);
    assert_eq!(frame_count(&out), 5);
    let want: Vec<f64> = (0..5).map(|i| i as f64 * 1001.0 / 30000.0).collect();
    assert_pts_equal(&video_pts(&out), &want, "timestamps at 30000/1001 fps");
}

#[test]
fn video_to_directory_writes_png_frames() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(10).write(&input);
    let out_dir = dir.path().join("out");
    stylize_ok(s(&input), &format!("{}/", out_dir.display()), &[]);
    let pngs = png_files(&out_dir);
    assert_eq!(pngs.len(), 10, "{pngs:?}");
    for p in &pngs {
        assert_eq!(image::image_dimensions(p).unwrap(), (64, 48), "{}", p.display());
    }
    assert!(partial_files(&out_dir).is_empty() && partial_files(dir.path()).is_empty(), "temporaries left");
}

#[test]
fn image_directory_to_directory_keeps_frame_names() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    png_frames(&frames, 5, (64, 48));
    let out_dir = dir.path().join("styled");
    std::fs::create_dir(&out_dir).unwrap();
    stylize_ok(s(&frames), s(&out_dir), &[]);
    let names = |d: &Path| png_files(d).iter().map(|p| p.file_name().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&out_dir), names(&frames));
    for p in png_files(&out_dir) {
        assert_eq!(image::image_dimensions(&p).unwrap(), (64, 48));
    }
}

// ------------------------------------------------------------------------------------------------
// Bad inputs and outputs: one line, nothing left behind
// ------------------------------------------------------------------------------------------------

#[test]
fn text_file_named_mp4_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    std::fs::write(&input, "this is not a video\n").unwrap();
    let out = dir.path().join("styled.mp4");
    assert_clean_failure(&stylize(s(&input), s(&out), &[]), "clip.mp4", &out);
}

/// A 2 s 64x48 clip with a keyframe every 10 frames (so a cut lands after decodable frames).
fn make_truncatable_clip(path: &Path, faststart: bool) {
    let mut extra = vec!["-g", "10"];
    if faststart {
        extra.extend(["-movflags", "+faststart"]);
    }
    Clip::new(50).extra(&extra).write(path);
}

#[test]
fn truncated_mp4_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // The first 60 % of the bytes: without faststart the index (moov) is lost; with it, the
    // index declares 50 frames and the data stops inside a packet.
    for (name, faststart) in [("plain.mp4", false), ("faststart.mp4", true)] {
        let whole = dir.path().join(format!("whole-{name}"));
        make_truncatable_clip(&whole, faststart);
        let bytes = std::fs::read(&whole).unwrap();
        let input = dir.path().join(name);
        std::fs::write(&input, &bytes[..bytes.len() * 6 / 10]).unwrap();
        let out = dir.path().join(format!("styled-{name}"));
        assert_clean_failure(&stylize(s(&input), s(&out), &[]), name, &out);
    }
}

#[test]
fn mp4_cut_at_a_packet_boundary_fails_cleanly() {
    // Cut just before the keyframe at frame 30: every remaining packet is whole, so the demuxer
    // just ends early; only comparing with the 50 frames the index declares reveals the loss.
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.mp4");
    make_truncatable_clip(&whole, true);
    let j = ffprobe_json(&whole, &["-select_streams", "v:0", "-show_entries", "packet=pos,flags"]);
    let mut packets: Vec<(u64, bool)> = j["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pos"].as_str().unwrap().parse().unwrap(), p["flags"].as_str().unwrap().starts_with('K')))
        .collect();
    packets.sort();
    let cut = packets.iter().skip(30).find(|p| p.1).expect("a keyframe after frame 30").0 as usize;
    let input = dir.path().join("cut.mp4");
    std::fs::write(&input, &std::fs::read(&whole).unwrap()[..cut]).unwrap();
    let declared = video_stream(&input)["nb_frames"].as_str().unwrap().parse::<usize>().unwrap();
    let decoded = frame_count(&input);
    assert!(decoded > 0 && decoded < declared, "test input: {decoded} of {declared} frames decode");
    let out = dir.path().join("styled.mp4");
    assert_clean_failure(&stylize(s(&input), s(&out), &[]), "cut.mp4", &out);
}

#[test]
fn audio_only_file_fails_naming_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tone.m4a");
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", s(&input)]);
    let out = dir.path().join("styled.mp4");
    assert_clean_failure(&stylize(s(&input), s(&out), &[]), "video stream", &out);
}

#[test]
fn zero_frame_video_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("zero.mkv");
    // select=0 drops every frame; the audio keeps ffmpeg 5.1 from writing a broken Matroska header.
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-vf",
            "select=0",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            s(&input),
        ])
        .status()
        .unwrap();
    if !made.success() || video_stream(&input).is_null() || !video_pts(&input).is_empty() {
        return skip("ffmpeg could not make a video stream with zero frames here");
    }
    let out = dir.path().join("styled.mp4");
    assert_clean_failure(&stylize(s(&input), s(&out), &[]), "zero.mkv", &out);
}

#[test]
fn unwritable_video_output_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(5).write(&input);
    let nowhere = dir.path().join("no/such/dir/out.mp4");
    assert_clean_failure(&stylize(s(&input), s(&nowhere), &[]), "no/such/dir/out.mp4", &nowhere);
}

// ------------------------------------------------------------------------------------------------
// Progress, quiet, Ctrl-C, memory
// ------------------------------------------------------------------------------------------------

/// stderr of `stylize` on a 25-frame 64x48 clip with `--progress json`.
fn progress_json_stderr() -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(25).write(&input);
    let out = dir.path().join("styled.mp4");
    stderr(&stylize_ok(s(&input), s(&out), &["--progress", "json"]))
}

#[test]
fn progress_json_reports_every_frame() {
    let err = progress_json_stderr();
    let lines: Vec<Value> =
        err.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.is_object()).collect();
    assert!(!lines.is_empty(), "no JSON progress lines:\n{err}");
    let mut done = 0;
    for v in &lines {
        for key in ["frames_done", "frames_total", "fps"] {
            assert!(v.get(key).is_some(), "missing `{key}` in {v}");
        }
        let d = v["frames_done"].as_u64().unwrap();
        assert!(d >= done, "frames_done went backwards:\n{err}");
        done = d;
    }
    let last = lines.last().unwrap();
    assert_eq!(last["frames_done"], 25, "last line: {last}");
    assert_eq!(last["frames_total"], 25, "last line: {last}");
}

#[test]
fn progress_json_stderr_holds_only_json_lines() {
    let err = progress_json_stderr();
    let other: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && serde_json::from_str::<Value>(l).map_or(true, |v| !v.is_object()))
        .collect();
    assert!(
        other.is_empty(),
        "with --progress json, stderr should be one JSON object per line; other lines: {other:?}\nstderr:\n{err}"
    );
}

#[test]
fn quiet_prints_nothing_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(25).write(&input);
    let out = dir.path().join("styled.mp4");
    let o = stylize_ok(s(&input), s(&out), &["--quiet"]);
    assert_eq!(stderr(&o), "", "stderr should be empty with --quiet");
    assert_eq!(frame_count(&out), 25);
}

#[test]
fn ctrl_c_leaves_no_output_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(250).write(&input);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("styled.mp4");
    let log = dir.path().join("stderr.txt");
    let mut child =
        stylestream_command(&["stylize", s(&input), "-o", s(&out), "--model", "udnie", "--progress", "none"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();

    // Interrupt once the temporary output exists: the handler is installed and frames flow.
    let start = Instant::now();
    while partial_files(&out_dir).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before it could be interrupted: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no temporary output appeared in 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());

    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("still running 30 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    eprintln!("after SIGINT: {status}, stderr: {err}");
    assert!(!status.success(), "exit status {status} after SIGINT");
    assert!(!out.exists(), "{} exists after SIGINT", out.display());
    let leftovers = partial_files(&out_dir);
    assert!(leftovers.is_empty(), "temporaries left after SIGINT: {leftovers:?}");
}

/// Peak resident set size in KiB of `stylize INPUT -o OUTPUT`, from `/usr/bin/time -v`.
fn peak_rss_kib(input: &Path, output: &Path) -> u64 {
    assert!(
        Path::new("/usr/bin/time").exists(),
        "/usr/bin/time is missing: the `time` package is needed (the Makefile's deps target installs it)"
    );
    let o = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_stylestream"))
        .args(["stylize", s(input), "-o", s(output), "--model", "udnie", "--progress", "none"])
        .env("STYLESTREAM_MODELS_DIR", models_dir())
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "stylize {} failed:\n{err}", input.display());
    err.lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in /usr/bin/time output:\n{err}"))
}

#[test]
fn memory_stays_flat_with_video_length() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.mp4");
    let long = dir.path().join("long.mp4");
    // Ten times the length (lavapipe costs about 0.5 s a frame on slow machines whatever the size,
    // so the counts stay small); at 64x48 every frame held on to would add 9 KiB decoded and
    // 36 KiB as f32.
    Clip::new(20).write(&short);
    Clip::new(200).write(&long);
    let rss_short = peak_rss_kib(&short, &dir.path().join("short-styled.mp4"));
    let rss_long = peak_rss_kib(&long, &dir.path().join("long-styled.mp4"));
    eprintln!(
        "peak RSS: 20 frames {rss_short} KiB, 200 frames {rss_long} KiB ({:+.1} %)",
        (rss_long as f64 / rss_short as f64 - 1.0) * 100.0
    );
    assert_eq!(frame_count(&dir.path().join("long-styled.mp4")), 200);
    assert!(
        rss_long as f64 <= rss_short as f64 * 1.2,
        "peak RSS grows with length: 20 frames {rss_short} KiB, 200 frames {rss_long} KiB"
    );
}

/// `bench --video`: the end-to-end, model-only and ceiling rates and the stage table, as JSON;
/// its output (with -o) is a complete video with the input's timestamps.
#[test]
fn bench_video_reports_its_rates_and_stages_and_writes_a_complete_video() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    Clip::new(12).audio().write(&input);
    let out = dir.path().join("styled.mp4");
    let o = stylestream(&[
        "bench",
        "--video",
        s(&input),
        "--model",
        "udnie",
        "-o",
        s(&out),
        "--preset",
        "superfast",
        "--crf",
        "20",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let r: Value = serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
    for key in ["e2e_fps", "model_fps", "ceiling_fps"] {
        assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {r}");
    }
    assert!(
        r["ceiling_fps"].as_f64().unwrap() > r["e2e_fps"].as_f64().unwrap(),
        "a copy is not faster than the network: {r}"
    );
    assert_eq!((r["frames"].as_u64(), r["model_frames"].as_u64()), (Some(12), Some(12)));
    assert_eq!(
        (r["encoder"]["codec"].as_str(), r["encoder"]["preset"].as_str(), r["encoder"]["crf"].as_u64()),
        (Some("libx264"), Some("superfast"), Some(20))
    );
    let stages: Vec<(String, f64)> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap().to_string(), s["secs"].as_f64().unwrap()))
        .collect();
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["decode", "convert_in", "upload", "gpu", "readback", "convert_out", "encode", "mux"]);
    for busy in ["decode", "convert_in", "gpu", "convert_out", "encode", "mux"] {
        assert!(stages.iter().any(|(n, t)| n == busy && *t > 0.0), "{busy} took no time: {r}");
    }
    assert!(["decode", "worker", "encode"].contains(&r["limiting_thread"].as_str().unwrap()), "{r}");
    assert!(stdout.contains("limits"), "no table before the JSON line: {stdout}");
    assert_eq!(video_pts(&out), video_pts(&input));
    // The network replaced by a copy: no GPU, the same stages.
    let o = stylestream(&["bench", "--video", s(&input), "--model", "none", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim_end().lines().last().unwrap()).unwrap();
    assert_eq!(r["model"], "none");
    assert_eq!(r["e2e_fps"], r["ceiling_fps"]);
    let o = stylestream(&["bench", "--model", "none"]);
    assert!(!o.status.success() && stderr(&o).contains("--video"), "{}", stderr(&o));
}
