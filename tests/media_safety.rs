//! Hostile media: files that make ffmpeg read other files (concat lists, HLS playlists, image2
//! patterns) and decompression bombs (huge frames, too many frames, too long), opened the way
//! the service opens stored objects (`VideoDecoder::open_restricted`) and the way the CLI opens
//! the user's own files (`VideoDecoder::open`, which follows references as ffmpeg does); and
//! output names that would pick a muxer writing other files. Files are made by the ffmpeg CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ffmpeg, Clip};
use stylestream::frame::{Rate, SourceInfo};
use stylestream::media::policy::{InputPolicy, MediaLimits, ALLOWED_DEMUXERS};
use stylestream::media::video_in::VideoDecoder;
use stylestream::media::video_out::{Companion, EncodeSettings, VideoEncoder};
use stylestream::media::MediaError;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Decodes every frame; returns how many came out and the error that ended it, if any.
fn decode_all(mut d: VideoDecoder) -> (u64, Option<MediaError>) {
    let mut n = 0;
    loop {
        match d.next_frame() {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, None),
            Err(e) => return (n, Some(e)),
        }
    }
}

fn restricted(path: &Path) -> Result<VideoDecoder, MediaError> {
    VideoDecoder::open_restricted(path, &MediaLimits::default())
}

/// The error of a refused open (a decoder is not Debug, so no `unwrap_err`).
fn refused(r: Result<VideoDecoder, MediaError>) -> MediaError {
    match r {
        Ok(d) => panic!("opened, {}x{}: expected a refusal", d.info().width, d.info().height),
        Err(e) => e,
    }
}

/// A 10-frame 64x48 clip standing for a local file outside the store, at `dir/outside/secret.mp4`,
/// and the store directory `dir/store` (created).
fn outside_and_store(dir: &Path) -> (PathBuf, PathBuf) {
    let outside = dir.join("outside");
    let store = dir.join("store");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    let secret = outside.join("secret.mp4");
    Clip::new(10).write(&secret);
    (secret, store)
}

fn assert_not_allowed(e: &MediaError, path: &Path, format: &str) {
    match e {
        MediaError::ContainerNotAllowed { path: p, format: f } => {
            assert_eq!(p, path);
            assert!(f.contains(format), "refused as `{f}`, expected `{format}`");
        }
        other => panic!("expected ContainerNotAllowed({format}), got: {other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains(s(path)) && text.contains("not accepted"),
        "the message should name the file and say why: {text}"
    );
}

#[test]
fn ffconcat_list_named_mp4_is_followed_by_the_cli_open_and_refused_restricted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    // ffmpeg's concat demuxer accepts only plain relative names by default: the other file sits
    // beside the list (in the service, anything in the job's staging directory).
    Clip::new(10).write(&store.join("other.mp4"));
    let evil = store.join("evil.mp4");
    std::fs::write(&evil, "ffconcat version 1.0\nfile 'other.mp4'\n").unwrap();

    // The CLI's open follows the list, as ffmpeg does: it decodes the other file's 10 frames.
    let (n, err) = decode_all(VideoDecoder::open(&evil).unwrap());
    assert_eq!((n, err.map(|e| e.to_string())), (10, None), "the CLI open should read the listed file");

    assert_not_allowed(&refused(restricted(&evil)), &evil, "concat");
}

#[test]
fn hls_playlist_named_mp4_pointing_outside_the_store_is_refused_restricted() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, store) = outside_and_store(dir.path());
    let ts = secret.with_extension("ts");
    ffmpeg(&["-i", s(&secret), "-c", "copy", s(&ts)]);
    let evil = store.join("talk.mp4");
    let playlist = format!("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.4,\n{}\n#EXT-X-ENDLIST\n", ts.display());
    std::fs::write(&evil, playlist).unwrap();

    let (n, err) = decode_all(VideoDecoder::open(&evil).unwrap());
    assert_eq!((n, err.map(|e| e.to_string())), (10, None), "the CLI open should read the playlist's segment");

    assert_not_allowed(&refused(restricted(&evil)), &evil, "hls");
}

#[test]
fn image2_pattern_name_is_followed_by_the_cli_open_and_refused_restricted() {
    let dir = tempfile::tempdir().unwrap();
    // Three numbered frames, and a file whose name is the pattern that matches them.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-frames:v",
        "3",
        s(&dir.path().join("shot%03d.png")),
    ]);
    let named = dir.path().join("shot%03d.png");
    std::fs::copy(dir.path().join("shot001.png"), &named).unwrap();

    let (n, err) = decode_all(VideoDecoder::open(&named).unwrap());
    assert_eq!((n, err.map(|e| e.to_string())), (3, None), "the CLI open should read the numbered files");

    assert_not_allowed(&refused(restricted(&named)), &named, "image2");
}

#[test]
fn restricted_open_reads_the_supported_containers_whole() {
    let dir = tempfile::tempdir().unwrap();
    for (name, codec) in [
        ("a.mp4", "libx264"),
        ("a.mov", "libx264"),
        ("a.mkv", "libx264"),
        ("a.webm", "libvpx-vp9"),
        ("a.avi", "mpeg4"),
        ("a.ts", "libx264"),
        ("a.flv", "libx264"),
    ] {
        let path = dir.path().join(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=25",
            "-frames:v",
            "6",
            "-c:v",
            codec,
            "-pix_fmt",
            "yuv420p",
            s(&path),
        ]);
        let d = VideoDecoder::open_restricted(&path, &MediaLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((d.info().width, d.info().height), (64, 48), "{name}");
        let (n, err) = decode_all(d);
        assert_eq!((n, err.map(|e| e.to_string())), (6, None), "{name}");
    }
    assert!(ALLOWED_DEMUXERS.iter().all(|d| !["concat", "hls", "dash", "image2", "tee"].contains(d)));
}

#[test]
fn frames_over_the_size_limit_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    Clip::new(5).write(&clip);
    let small = MediaLimits { max_width_px: 32, max_height_px: 32, ..Default::default() };
    match refused(VideoDecoder::open_restricted(&clip, &small)) {
        MediaError::TooLarge { path, width: 64, height: 48, max_width_px: 32, max_height_px: 32 } => {
            assert_eq!(path, clip)
        }
        other => panic!("expected TooLarge, got: {other}"),
    }
    // One pixel over in one direction is enough; exactly at the limit passes.
    let narrow = MediaLimits { max_width_px: 63, max_height_px: 4320, ..Default::default() };
    assert!(matches!(refused(VideoDecoder::open_restricted(&clip, &narrow)), MediaError::TooLarge { .. }));
    let exact = MediaLimits { max_width_px: 64, max_height_px: 48, ..Default::default() };
    let (n, err) = decode_all(VideoDecoder::open_restricted(&clip, &exact).unwrap());
    assert_eq!((n, err.map(|e| e.to_string())), (5, None));
}

#[test]
fn frame_count_and_duration_over_the_limits_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    Clip::new(50).write(&clip); // 2 s, 50 frames declared in the index
    let frames = MediaLimits { max_frames: 49, ..Default::default() };
    match refused(VideoDecoder::open_restricted(&clip, &frames)) {
        MediaError::TooManyFrames { frames: 50, max_frames: 49, .. } => {}
        other => panic!("expected TooManyFrames, got: {other}"),
    }
    let duration = MediaLimits { max_duration_secs: 1.5, ..Default::default() };
    match refused(VideoDecoder::open_restricted(&clip, &duration)) {
        MediaError::TooLong { secs, .. } => assert!((secs - 2.0).abs() < 0.05, "{secs} s"),
        other => panic!("expected TooLong, got: {other}"),
    }
    let enough = MediaLimits { max_frames: 50, max_duration_secs: 2.5, ..Default::default() };
    let (n, err) = decode_all(VideoDecoder::open_restricted(&clip, &enough).unwrap());
    assert_eq!((n, err.map(|e| e.to_string())), (50, None));
}

/// A 50-frame 64x48 Matroska file written to a pipe: its header holds neither a duration nor a
/// frame count (the muxer cannot seek back to write them).
fn make_headerless_mkv(path: &Path) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "50"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "matroska", "pipe:1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(path, o.stdout).unwrap();
}

#[test]
fn limits_stop_decoding_of_a_stream_whose_header_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mkv = dir.path().join("nodur.mkv");
    make_headerless_mkv(&mkv);
    // Nothing in the header to refuse, so it opens; the decoder stops at the limit.
    let frames = MediaLimits { max_frames: 10, ..Default::default() };
    let d = VideoDecoder::open_restricted(&mkv, &frames).unwrap();
    assert_eq!(d.info().frames, None, "the test file should declare no frame count");
    match decode_all(d) {
        (10, Some(MediaError::TooManyFrames { frames: 11, max_frames: 10, .. })) => {}
        (n, e) => panic!("expected 10 frames then TooManyFrames, got {n} frames and {e:?}"),
    }
    // Frames at 0, 0.04, ... 0.48 s are within 0.5 s; the one at 0.52 s is not.
    let duration = MediaLimits { max_duration_secs: 0.5, ..Default::default() };
    match decode_all(VideoDecoder::open_restricted(&mkv, &duration).unwrap()) {
        (13, Some(MediaError::TooLong { .. })) => {}
        (n, e) => panic!("expected 13 frames then TooLong, got {n} frames and {e:?}"),
    }
    // The same file without limits decodes whole.
    assert_eq!(decode_all(VideoDecoder::open(&mkv).unwrap()).0, 50);
}

#[test]
fn a_stream_that_grows_after_its_header_stops_at_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    // MPEG-TS files join by concatenation: 50 frames at 64x48, then 10 at 320x240. The header
    // (what ffmpeg learns when it opens the file) says 64x48.
    let (small, big, joined) = (dir.path().join("small.ts"), dir.path().join("big.ts"), dir.path().join("joined.ts"));
    Clip::new(50).write(&small);
    Clip::new(10).size(320, 240).write(&big);
    let mut bytes = std::fs::read(&small).unwrap();
    bytes.extend(std::fs::read(&big).unwrap());
    std::fs::write(&joined, bytes).unwrap();
    let limits = MediaLimits { max_width_px: 100, max_height_px: 100, ..Default::default() };
    let d = VideoDecoder::open_restricted(&joined, &limits).unwrap();
    assert_eq!((d.info().width, d.info().height), (64, 48));
    match decode_all(d) {
        (n, Some(MediaError::TooLarge { .. })) if n <= 50 => {}
        (n, e) => panic!("expected at most 50 frames then TooLarge, got {n} frames and {e:?}"),
    }
}

fn info_64x48() -> SourceInfo {
    SourceInfo {
        width: 64,
        height: 48,
        time_base: Rate::new(1, 25),
        frame_rate: Rate::new(25, 1),
        frames: Some(1),
        frames_exact: true,
    }
}

#[test]
fn output_names_that_would_pick_a_muxer_writing_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let settings = EncodeSettings { codec: "mpeg4".into(), ..Default::default() };
    // ffmpeg would pick hls, dash, image2 (one file per frame), segment-like muxers for these.
    for name in ["out.m3u8", "out.mpd", "out%03d.jpg", "out.png", "out.ism", "out", "out.txt"] {
        let path = dir.path().join(name);
        match VideoEncoder::create(&path, &info_64x48(), &settings, &Companion::default()) {
            Err(MediaError::OutputFormat { path: p }) => assert_eq!(p, path),
            Err(other) => panic!("{name}: expected OutputFormat, got: {other}"),
            Ok(_) => panic!("{name}: an encoder was created"),
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a refused output touched the disk");
    // The supported extensions still work (dropped unfinished: nothing is left).
    for name in ["out.mp4", "out.m4v", "out.mov", "out.mkv", "out.avi"] {
        let enc = VideoEncoder::create(&dir.path().join(name), &info_64x48(), &settings, &Companion::default());
        assert!(enc.is_ok(), "{name}: {}", enc.err().map(|e| e.to_string()).unwrap_or_default());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "an unfinished encoder left a file");
}

#[test]
fn media_limits_parse_with_defaults_and_refuse_unknown_fields() {
    let l: MediaLimits = serde_json::from_str(r#"{"max_frames": 9}"#).unwrap();
    assert_eq!(l, MediaLimits { max_frames: 9, ..Default::default() });
    assert_eq!((l.max_width_px, l.max_height_px, l.max_duration_secs), (7680, 4320, 21600.0));
    let e = serde_json::from_str::<MediaLimits>(r#"{"max_width": 9}"#).unwrap_err().to_string();
    assert!(e.contains("max_width"), "{e}");
    let zero = MediaLimits { max_frames: 0, max_duration_secs: f64::NAN, ..Default::default() };
    assert_eq!(zero.problems().len(), 2, "{:?}", zero.problems());
    assert!(MediaLimits::default().problems().is_empty());
}

/// Re-encodes `input`'s decoded frames (no styling) to `output` with `input` as the audio
/// companion under `policy`; the first error of decoding, encoding or finishing.
fn reencode(input: &Path, output: &Path, policy: &InputPolicy) -> Result<(), MediaError> {
    let mut d = VideoDecoder::open_with(input, policy)?;
    let info = d.info().clone();
    let settings = EncodeSettings { codec: "mpeg4".into(), ..Default::default() };
    let companion = Companion { path: Some(input.to_path_buf()), policy: policy.clone() };
    let mut enc = VideoEncoder::create(output, &info, &settings, &companion)?;
    while let Some(frame) = d.next_frame()? {
        enc.write(&frame)?;
    }
    enc.finish()
}

#[test]
fn audio_past_the_duration_limit_is_refused_while_copying() {
    let dir = tempfile::tempdir().unwrap();
    // 1 s of video and 3 s of audio, in Matroska written to a pipe: no durations in the header.
    let input = dir.path().join("long-audio.mkv");
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=3",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ])
        .args(["-f", "matroska", "pipe:1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&input, o.stdout).unwrap();

    let out = dir.path().join("out.mkv");
    let limits = MediaLimits { max_duration_secs: 2.0, ..Default::default() };
    match reencode(&input, &out, &InputPolicy::Restricted(limits)) {
        Err(MediaError::TooLong { path, secs, .. }) => {
            assert!(path == input && secs > 2.0, "{} at {secs} s", path.display())
        }
        other => panic!("expected TooLong from the audio, got {other:?}"),
    }
    assert!(!out.exists(), "a refused output was published");
    // Trusted, the same file is copied whole.
    reencode(&input, &out, &InputPolicy::Trusted).unwrap();
    assert!(out.exists());
}

#[test]
fn image_sequences_are_held_to_the_limits_before_decoding() {
    use stylestream::media::sequence::SequenceReader;
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "2", s(&frames.join("%03d.png"))]);
    // A third frame far larger than the first two.
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=640x480", "-frames:v", "1", s(&frames.join("003.png"))]);
    let spec = s(&frames);
    let open = |l: MediaLimits| SequenceReader::open_with(spec, Some(Rate::new(25, 1)), &InputPolicy::Restricted(l));
    let refusal = |l: MediaLimits| open(l).err().map(|e| e.to_string()).unwrap_or_else(|| "opened".into());

    let size = MediaLimits { max_width_px: 32, ..Default::default() };
    assert!(matches!(open(size.clone()), Err(MediaError::TooLarge { width: 64, .. })), "{}", refusal(size));
    let count = MediaLimits { max_frames: 2, ..Default::default() };
    assert!(matches!(open(count.clone()), Err(MediaError::TooManyFrames { frames: 3, .. })), "{}", refusal(count));
    let duration = MediaLimits { max_duration_secs: 0.1, ..Default::default() };
    assert!(matches!(open(duration.clone()), Err(MediaError::TooLong { .. })), "{}", refusal(duration));

    // The first two frames pass; the third is refused by its header, as too large.
    let mut r = open(MediaLimits { max_width_px: 100, max_height_px: 100, ..Default::default() }).unwrap();
    assert!(r.next_frame().unwrap().is_some() && r.next_frame().unwrap().is_some());
    match r.next_frame() {
        Err(MediaError::TooLarge { path, width: 640, height: 480, .. }) => assert_eq!(path, frames.join("003.png")),
        other => panic!("expected TooLarge for 003.png, got {:?}", other.map(|f| f.map(|f| f.index))),
    }
}
