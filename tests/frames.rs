//! Stored frame sequences styled back to storage as frames (`stylize URL -o URL`, and the
//! service's `output_frames_prefix`): names, formats, alpha and bit depth kept, byte-identical
//! to styling each frame alone, and incremental — only new and changed frames are styled, on
//! the local store, Azurite and the S3 test server, also after a kill -9.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use common::svc::{publish_raw, Extra, Svc};
use common::*;
use stylestream::model::gpu::NetworkPlan;
use stylestream::storage::{BlockingStore, ObjectKey, Store};

const W: u32 = 64;
const H: u32 = 48;

/// A 64x48 test picture: gradients, edges and noise from `seed`.
fn picture(seed: u64, w: u32, h: u32) -> Vec<u8> {
    let mut noise = xorshift(seed);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let n = (noise.next().unwrap() >> 58) as u32;
            let edge = if (x / 8 + y / 8 + seed as u32).is_multiple_of(2) { 60 } else { 0 };
            data.push(((x * 255 / w + n + edge) % 256) as u8);
            data.push(((y * 255 / h + 2 * n) % 256) as u8);
            data.push((((x + y) * 5 + seed as u32 * 31) % 256) as u8);
        }
    }
    data
}

fn png_rgb(seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(W, H, picture(seed, W, H)).unwrap())
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// What `stylize one.png -o out.png` writes for these RGB pixels: the oracle for every frame.
fn styled_alone(rgb: &[u8], w: u32, h: u32) -> (Vec<u8>, Vec<u8>) {
    static PLANS: OnceLock<Mutex<BTreeMap<(u32, u32), NetworkPlan>>> = OnceLock::new();
    let plans = PLANS.get_or_init(Default::default);
    let mut plans = plans.lock().unwrap();
    let plan = plans.entry((w, h)).or_insert_with(|| NetworkPlan::new(gpu(), &tf(), &style("udnie"), w, h).unwrap());
    let styled = plan.run(rgb).unwrap().rgb;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alone.png");
    stylestream::media::image::write_rgb(&path, &stylestream::frame::RgbFrame::new(w, h, styled.clone())).unwrap();
    (styled, std::fs::read(path).unwrap())
}

fn png_styled_alone(seed: u64) -> Vec<u8> {
    styled_alone(&picture(seed, W, H), W, H).1
}

/// A store for the test's own reads and writes (as a user's uploader would).
struct Place {
    store: BlockingStore,
    url: String,
    env: Vec<(String, String)>,
}

impl Place {
    fn local(dir: &std::path::Path) -> Place {
        let url = format!("file://{}", dir.display());
        Place {
            store: BlockingStore::new(Store::open_with_vars(&url, &Default::default(), Vec::new()).unwrap()).unwrap(),
            url,
            env: Vec::new(),
        }
    }

    fn azurite() -> Place {
        use common::azurite::{azurite, create_container, unique_container};
        azurite();
        let container = unique_container();
        create_container(&container);
        let env = vec![("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string())];
        let url = format!("az://{container}");
        Place {
            store: BlockingStore::new(Store::open_with_vars(&url, &Default::default(), env.clone()).unwrap()).unwrap(),
            url,
            env,
        }
    }

    fn s3() -> Place {
        use common::s3::{create_bucket, s3, s3_vars, unique_bucket};
        s3();
        let bucket = unique_bucket();
        create_bucket(&bucket);
        let url = format!("s3://{bucket}");
        Place {
            store: BlockingStore::new(Store::open_with_vars(&url, &Default::default(), s3_vars()).unwrap()).unwrap(),
            url,
            env: s3_vars(),
        }
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        self.store.put_bytes_atomic(&ObjectKey::parse(key).unwrap(), bytes).unwrap();
    }

    fn get(&self, key: &str) -> Vec<u8> {
        self.store.get_bytes(&ObjectKey::parse(key).unwrap(), 1 << 30).unwrap()
    }

    fn delete(&self, key: &str) {
        self.store.delete(&ObjectKey::parse(key).unwrap()).unwrap();
    }

    /// Names directly under `prefix` (bookkeeping folders left out).
    fn names(&self, prefix: &str) -> Vec<String> {
        self.store
            .list(prefix)
            .unwrap()
            .into_iter()
            .filter(|k| k.parent().map(|p| format!("{p}/")).as_deref() == Some(prefix))
            .map(|k| k.name().to_string())
            .collect()
    }

    fn stylize_command(&self, input: &str, output: &str) -> Command {
        self.stylize_command_with(input, output, "none")
    }

    fn stylize_command_with(&self, input: &str, output: &str, progress: &str) -> Command {
        let mut c = stylestream_command(&[
            "stylize",
            &format!("{}/{input}", self.url),
            "-o",
            &format!("{}/{output}", self.url),
            "--model",
            "udnie",
            "--progress",
            progress,
        ]);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn stylize(&self, input: &str, output: &str) -> Output {
        let o = self.stylize_command(input, output).output().unwrap();
        assert!(o.status.success(), "stylize failed:\n{}", stderr(&o));
        o
    }
}

/// Frame name → what the run did with it (`styled`, `skipped`, `removed`), from its report.
fn actions(o: &Output) -> BTreeMap<String, String> {
    stderr(o)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let action = words.next()?;
            let name = words.next()?;
            ["styled", "skipped", "removed"].contains(&action).then(|| (name.to_string(), action.to_string()))
        })
        .collect()
}

fn with(action: &str, map: &BTreeMap<String, String>) -> Vec<String> {
    map.iter().filter(|(_, a)| *a == action).map(|(n, _)| n.clone()).collect()
}

/// A sequence with gaps in its numbering: styled, then two frames changed and rerun on the
/// same store. Returns the seeds now under `in/`.
fn style_change_two_and_rerun(place: &Place) -> BTreeMap<&'static str, u64> {
    let mut seeds = BTreeMap::from([("0001.png", 1), ("0002.png", 2), ("0004.png", 4), ("0007.png", 7)]);
    for (name, seed) in &seeds {
        place.put(&format!("in/{name}"), png_rgb(*seed));
    }
    place.put("in/fps.txt", b"25".to_vec());
    let first = place.stylize("in/", "out/");
    assert_eq!(
        with("styled", &actions(&first)),
        ["0001.png", "0002.png", "0004.png", "0007.png"],
        "{}",
        stderr(&first)
    );
    assert_eq!(place.names("out/"), ["0001.png", "0002.png", "0004.png", "0007.png"], "names (and gaps) kept");
    for (name, seed) in &seeds {
        assert!(
            place.get(&format!("out/{name}")) == png_styled_alone(*seed),
            "{name} differs from the frame styled alone"
        );
    }
    // Two frames change.
    for (name, seed) in [("0002.png", 102), ("0007.png", 107)] {
        place.put(&format!("in/{name}"), png_rgb(seed));
        seeds.insert(name, seed);
    }
    let second = place.stylize("in/", "out/");
    let done = actions(&second);
    assert_eq!(
        with("styled", &done),
        ["0002.png", "0007.png"],
        "exactly the changed frames are styled again:\n{}",
        stderr(&second)
    );
    assert_eq!(with("skipped", &done), ["0001.png", "0004.png"]);
    for (name, seed) in &seeds {
        assert!(
            place.get(&format!("out/{name}")) == png_styled_alone(*seed),
            "{name} differs from the frame styled alone"
        );
    }
    seeds
}

#[test]
fn a_local_sequence_is_styled_back_as_frames_and_restyled_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::local(dir.path());
    let seeds = style_change_two_and_rerun(&place);
    assert!(dir.path().join("out/.stylestream/sequence.json").is_file(), "the sequence manifest is written");

    // Same bytes uploaded again (a new ETag), an output deleted, an input deleted.
    place.put("in/0001.png", png_rgb(seeds["0001.png"]));
    place.delete("out/0004.png");
    place.delete("in/0007.png");
    let third = place.stylize("in/", "out/");
    let done = actions(&third);
    assert_eq!(with("styled", &done), ["0004.png"], "only the deleted output is made again:\n{}", stderr(&third));
    assert_eq!(with("skipped", &done), ["0001.png", "0002.png"]);
    assert_eq!(with("removed", &done), ["0007.png"]);
    assert!(stderr(&third).contains("0001.png (same content)"), "{}", stderr(&third));
    assert_eq!(place.names("out/"), ["0001.png", "0002.png", "0004.png"], "the output mirrors the input");
    assert!(place.get("out/0004.png") == png_styled_alone(4));

    // Nothing changed: every frame is skipped at once, from the manifest.
    let fourth = place.stylize("in/", "out/");
    assert!(with("styled", &actions(&fourth)).is_empty());
    assert!(stderr(&fourth).contains("(sequence complete)"), "{}", stderr(&fourth));

    // Progress counts the frames to style, not the sequence: one changed frame of three.
    place.put("in/0002.png", png_rgb(202));
    let o = place.stylize_command_with("in/", "out/", "json").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stderr(&o).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty(), "no JSON progress: {}", stderr(&o));
    assert!(lines.iter().all(|l| l["frames_total"] == 1), "{lines:?}");
    assert_eq!(lines.last().unwrap()["frames_done"], 1);
}

#[test]
fn a_sequence_on_azurite_is_styled_back_and_restyled_incrementally() {
    style_change_two_and_rerun(&Place::azurite());
}

#[test]
fn a_sequence_on_the_s3_server_is_styled_back_and_restyled_incrementally() {
    style_change_two_and_rerun(&Place::s3());
}

/// Appends an EXIF APP1 segment with `orientation` right after a JPEG's SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    // TIFF, little-endian: one IFD with one SHORT entry, 0x0112 Orientation.
    let mut tiff = b"II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00".to_vec();
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend([0xff, 0xe1]);
    out.extend(len.to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).unwrap();
    out
}

#[test]
fn formats_alpha_bit_depth_and_orientation_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::local(dir.path());
    let rgb = picture(5, W, H);
    let alpha8: Vec<u8> = (0..W * H).map(|i| (i * 7 % 256) as u8).collect();
    let alpha16: Vec<u16> = (0..W * H).map(|i| (i * 977 % 65536) as u16).collect();
    let rgba8: Vec<u8> = rgb.chunks(3).zip(&alpha8).flat_map(|(p, a)| [p[0], p[1], p[2], *a]).collect();
    let rgb16: Vec<u16> = rgb.iter().map(|&v| (v as u16 * 257).saturating_sub(3)).collect();
    let rgba16: Vec<u16> = rgb16.chunks(3).zip(&alpha16).flat_map(|(p, a)| [p[0], p[1], p[2], *a]).collect();
    use image::DynamicImage as D;
    place.put(
        "in/a_rgba8.png",
        encode(D::ImageRgba8(image::RgbaImage::from_raw(W, H, rgba8).unwrap()), image::ImageFormat::Png),
    );
    place.put(
        "in/b_rgb16.png",
        encode(D::ImageRgb16(image::ImageBuffer::from_raw(W, H, rgb16).unwrap()), image::ImageFormat::Png),
    );
    place.put(
        "in/c_rgba16.png",
        encode(D::ImageRgba16(image::ImageBuffer::from_raw(W, H, rgba16).unwrap()), image::ImageFormat::Png),
    );
    let jpeg = encode(D::ImageRgb8(image::RgbImage::from_raw(W, H, rgb.clone()).unwrap()), image::ImageFormat::Jpeg);
    place.put("in/d.jpg", jpeg.clone());
    // Orientation 6: the stored 64x48 picture is shown turned 90° clockwise, 48x64.
    place.put("in/e_rotated.jpg", with_exif_orientation(&jpeg, 6));
    let o = place.stylize("in/", "out/");
    assert_eq!(with("styled", &actions(&o)).len(), 5, "{}", stderr(&o));

    let load = |name: &str| image::load_from_memory(&place.get(&format!("out/{name}"))).unwrap();
    let (styled, _) = styled_alone(&rgb, W, H);

    let a = load("a_rgba8.png");
    assert_eq!(a.color(), image::ColorType::Rgba8);
    let a = a.to_rgba8();
    assert_eq!(a.pixels().map(|p| p.0[3]).collect::<Vec<_>>(), alpha8, "alpha carried over unchanged");
    assert_eq!(
        a.pixels().flat_map(|p| [p.0[0], p.0[1], p.0[2]]).collect::<Vec<_>>(),
        styled,
        "colour = the RGB styled alone"
    );

    // 16-bit in: the network sees the 8-bit picture; 16-bit out holds its result scaled.
    let rgb16_as8 = image::DynamicImage::ImageRgb16(
        image::ImageBuffer::from_raw(
            W,
            H,
            rgb.iter().map(|&v| (v as u16 * 257).saturating_sub(3)).collect::<Vec<u16>>(),
        )
        .unwrap(),
    )
    .to_rgb8()
    .into_raw();
    let (styled16, _) = styled_alone(&rgb16_as8, W, H);
    let b = load("b_rgb16.png");
    assert_eq!(b.color(), image::ColorType::Rgb16);
    assert_eq!(b.to_rgb16().into_raw(), styled16.iter().map(|&v| v as u16 * 257).collect::<Vec<_>>());
    let c = load("c_rgba16.png");
    assert_eq!(c.color(), image::ColorType::Rgba16);
    assert_eq!(
        c.to_rgba16().pixels().map(|p| p.0[3]).collect::<Vec<_>>(),
        alpha16,
        "16-bit alpha carried over unchanged"
    );

    let d = place.get("out/d.jpg");
    assert_eq!(image::guess_format(&d).unwrap(), image::ImageFormat::Jpeg, "JPEG stays JPEG");
    let e = load("e_rotated.jpg");
    assert_eq!((e.width(), e.height()), (H, W), "EXIF orientation honoured: written upright");
}

#[test]
fn a_kill_9_mid_sequence_loses_nothing_finished() {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::local(dir.path());
    let n = 12u64;
    let name = |i: u64| format!("{:04}.png", i * 10);
    for i in 0..n {
        place.put(&format!("in/{}", name(i)), png_rgb(100 + i));
    }
    let mut child = place.stylize_command("in/", "out/").stderr(std::process::Stdio::null()).spawn().unwrap();
    let records = dir.path().join("out/.stylestream/frames");
    // Only whole records count: a kill can land while the store writes one
    // under its staging name (`0020.png.json#1`), which is not a finished frame.
    let records_in = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|e| {
                e.filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".json").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("three finished frames", 300, || records_in(&records).len() >= 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let finished = records_in(&records);
    assert!(finished.len() < n as usize, "the run ended before the kill; use more frames");
    assert!(!dir.path().join("out/.stylestream/sequence.json").exists(), "no manifest before the end");

    let rerun = place.stylize("in/", "out/");
    let done = actions(&rerun);
    for f in &finished {
        assert_eq!(
            done.get(f).map(String::as_str),
            Some("skipped"),
            "{f} was finished before the kill:\n{}",
            stderr(&rerun)
        );
    }
    assert_eq!(with("styled", &done).len() + finished.len(), n as usize);
    assert_eq!(place.names("out/").len(), n as usize, "the result is complete");
    for i in 0..n {
        assert!(place.get(&format!("out/{}", name(i))) == png_styled_alone(100 + i), "{} differs", name(i));
    }
}

#[test]
fn the_service_writes_frames_back_and_acks_a_complete_sequence_without_gpu_work() {
    let routes = "[[routes]]\nprefix = \"uploads/\"\nstyle = \"udnie\"\noutput_frames_prefix = \"styled/\"\ntrigger = \"_READY\"";
    let mut svc = Svc::with("", Extra::default().storage("notification_source = \"media\"").routes(routes));
    let shot = svc.media().join("uploads/shot1");
    std::fs::create_dir_all(&shot).unwrap();
    for (name, seed) in [("f_001.png", 11), ("f_003.png", 13)] {
        std::fs::write(shot.join(name), png_rgb(seed)).unwrap();
    }
    svc.start();
    // Through an explicit job first, then through the route's trigger.
    svc.submit(&[
        "--id",
        "frames-1",
        "--input-prefix",
        "uploads/shot1",
        "--style",
        "udnie",
        "--output-frames-prefix",
        "direct/shot1",
    ]);
    let log = |id: &str| svc.dir.path().join(format!("system/logs/{id}.json"));
    wait_for("the first job's log", 120, || log("frames-1").exists());
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(log("frames-1")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "succeeded", "{summary}");
    assert_eq!(summary["styled"], 2, "{summary}");
    assert_eq!(summary["frames"].as_array().unwrap().len(), 2, "every frame is listed: {summary}");
    for (name, seed) in [("f_001.png", 11), ("f_003.png", 13)] {
        assert!(
            std::fs::read(svc.media().join("direct/shot1").join(name)).unwrap() == png_styled_alone(seed),
            "{name}"
        );
    }
    let s3 = |key: &str| common::svc::s3_created("media", key);
    std::fs::write(shot.join("_READY"), b"").unwrap();
    publish_raw(&svc.queue, s3("uploads/shot1/_READY").as_bytes());
    wait_for("the triggered frames", 120, || svc.media().join("styled/shot1/.stylestream/sequence.json").exists());
    assert!(std::fs::read(svc.media().join("styled/shot1/f_003.png")).unwrap() == png_styled_alone(13));
    let frames_before = svc.metric("stylestream_frames_total");
    // The trigger again, on a complete sequence: acked, no GPU work.
    svc.submit(&[
        "--id",
        "frames-2",
        "--input-prefix",
        "uploads/shot1",
        "--style",
        "udnie",
        "--output-frames-prefix",
        "direct/shot1",
    ]);
    wait_for("the second job's log", 60, || log("frames-2").exists());
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(log("frames-2")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "already-done", "{summary}");
    assert_eq!(summary["skipped"], 2, "{summary}");
    assert_eq!(svc.metric("stylestream_frames_total"), frames_before, "no frame was styled");
    assert!(svc.stop());
    assert_eq!(common::svc::ready(&svc.queue), 0, "every message was settled");
    assert!(common::svc::dead_letters(&svc.queue).is_empty());
}

/// Bytes of the files under `dir`, recursively (what a job keeps on local disk there).
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// 500 frames through the service from and to the S3 server: frames stream through memory,
/// never staged — the work directory and TMPDIR hold at most the frames in flight (× 2) while
/// it runs (a staged sequence would hold all 500), and memory stays flat from the first third
/// of the sequence to the last.
#[test]
fn a_500_frame_sequence_streams_within_the_local_disk_bound() {
    use common::s3::{create_bucket, s3, s3_vars, unique_bucket};
    s3();
    let bucket = unique_bucket();
    create_bucket(&bucket);
    let url = format!("s3://{bucket}/media");
    let store = BlockingStore::new(Store::open_with_vars(&url, &Default::default(), s3_vars()).unwrap()).unwrap();
    let n = 500u64;
    let mut largest = 0u64;
    for i in 0..n {
        let bytes = png_rgb(1000 + i);
        largest = largest.max(bytes.len() as u64);
        store.put_bytes_atomic(&ObjectKey::parse(&format!("in/{:05}.png", i)).unwrap(), bytes).unwrap();
    }
    let scratch = tempfile::tempdir().unwrap();
    let (work, tmp) = (scratch.path().join("work"), scratch.path().join("tmp"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let mut svc = Svc::with(&url, Extra::default().service(&format!("work_dir = \"{}\"\n", work.display())));
    svc.env = s3_vars();
    svc.env.push(("TMPDIR".into(), tmp.display().to_string()));
    svc.start();
    let pid = svc.child.as_ref().unwrap().id();
    svc.submit(&[
        "--id",
        "long-sequence",
        "--input-prefix",
        "in/",
        "--style",
        "udnie",
        "--output-frames-prefix",
        "out/",
    ]);
    let log = svc.dir.path().join("system/logs/long-sequence.json");
    let (mut peak_disk, mut samples) = (0u64, Vec::new());
    let started = std::time::Instant::now();
    while !log.exists() {
        assert!(started.elapsed().as_secs() < 900, "the sequence did not finish in 15 minutes");
        peak_disk = peak_disk.max(bytes_under(&work) + bytes_under(&tmp));
        samples.push((started.elapsed().as_secs_f64(), rss_kib(pid)));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(summary["styled"], n, "{summary}");
    let in_flight = 4; // max_frames_in_flight's default
    let bound = in_flight * 2 * largest;
    assert!(
        peak_disk <= bound,
        "local disk peaked at {peak_disk} bytes, over {bound} (frames in flight × 2 × frame size)"
    );
    let total = samples.last().unwrap().0;
    let max_in = |from: f64, to: f64| {
        samples.iter().filter(|(t, _)| *t >= from * total && *t <= to * total).map(|(_, r)| *r).max().unwrap_or(0)
    };
    let (early, late) = (max_in(0.2, 0.4), max_in(0.8, 1.0));
    eprintln!("500 frames in {total:.1} s; local disk peak {peak_disk} B (bound {bound} B); RSS {early} KiB early, {late} KiB late");
    assert!(late <= early + 16 * 1024, "memory grew with the sequence: {early} KiB → {late} KiB");
    let listed = store.list("out/").unwrap().into_iter().filter(|k| k.parent() == Some("out")).count();
    assert_eq!(listed as u64, n);
    assert!(svc.stop());
}

/// The S3 server unreachable for a few seconds in the middle of a sequence: the frames' store
/// requests are retried (each frame on its own) and the sequence completes.
#[test]
fn a_store_outage_mid_sequence_is_waited_out() {
    use common::proxy::{Mode, Proxy};
    use common::s3::{create_bucket, s3, s3_vars, unique_bucket, S3_ADDR};
    s3();
    let bucket = unique_bucket();
    create_bucket(&bucket);
    let port: u16 = S3_ADDR.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = Proxy::start(port);
    let mut env = s3_vars();
    for (k, v) in env.iter_mut() {
        if k == "AWS_ENDPOINT" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    let url = format!("s3://{bucket}");
    let place = Place {
        store: BlockingStore::new(Store::open_with_vars(&url, &Default::default(), s3_vars()).unwrap()).unwrap(),
        url,
        env,
    };
    let n = 60u64;
    for i in 0..n {
        place.put(&format!("in/{i:03}.png"), png_rgb(300 + i));
    }
    let child = place.stylize_command("in/", "out/").stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for("the first styled frames", 120, || place.names("out/").len() >= 2);
    proxy.set(Mode::Down);
    std::thread::sleep(std::time::Duration::from_secs(6));
    proxy.set(Mode::Up);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "the outage failed the run:\n{}", stderr(&o));
    assert!(stderr(&o).contains("trying again"), "the outage was not noticed (too short?):\n{}", stderr(&o));
    assert_eq!(place.names("out/").len() as u64, n);
    for i in [0, n / 2, n - 1] {
        assert!(place.get(&format!("out/{i:03}.png")) == png_styled_alone(300 + i));
    }
}
