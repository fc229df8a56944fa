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
            (
                f[0].into(),
                f.get(1).copied().unwrap_or_default().into(),
                f.get(2).copied().unwrap_or_default().into(),
                f.get(3).copied().unwrap_or_default().into(),
                f.get(4).copied().unwrap_or_default().into(),
            )
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
    let o = stylestream(&[
        "stylize",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        "udnie",
        "--crf",
        "0",
        "--preset",
        "medium",
        "-q",
    ]);
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
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(svc.dir.path().join("system/logs/cut-1.json")).unwrap()).unwrap();
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

/// This instance's id, from its log (it names the owner of its temporaries and heartbeat): the
/// last one logged (a restarted instance has a new one).
fn instance_of(svc: &Svc) -> String {
    svc.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["instance"].as_str().map(str::to_string))
        .next_back()
        .expect("the instance logs its id")
}

/// Frames the segments in flight on instance `id` have styled, from its heartbeat object.
fn heartbeat_frames(system: &Path, id: &str) -> u64 {
    let body = std::fs::read(system.join(format!("instances/{id}.json"))).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["parts"].as_array().map_or(0, |p| p.iter().filter_map(|x| x["frames_done"].as_u64()).sum())
}

/// The status page's JSON (`/jobs`) of an instance.
fn jobs_json(svc: &Svc) -> serde_json::Value {
    let answer = http_get(svc.metrics, "/jobs");
    serde_json::from_str(answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or_default()
}

/// Two instances on one queue share a cut video: both style segments, both status pages show
/// the video as one job with its progress across instances, and it is stitched once.
#[test]
fn two_instances_style_one_cut_video_shown_as_one_job_on_both() {
    let mut first = Svc::with("", Extra::default().broker("prefetch = 1").service("segment_secs = 1\njobs = 1"));
    long_clip(&first.media().join("in/long.mp4"), 8);
    let mut second = Svc::beside(&first, "second");
    first.start();
    second.start();
    first.submit(&["--input", "in/long.mp4", "--style", "wave", "--output", "out/long.mp4", "--id", "shared"]);
    // While it runs, each status page lists the video once (its segments are not jobs of
    // their own there), with segments and frames counted across both instances.
    let one_job = |s: &Svc| {
        let v = jobs_json(s);
        let list = v["in_progress"].as_array().cloned().unwrap_or_default();
        list.len() == 1 && list[0]["id"] == "shared" && list[0]["segments"].is_array() && list[0]["total_frames"] == 200
    };
    first.wait("the video on the first status page", 300, |s| one_job(s));
    second.wait("the video on the second status page", 60, |s| one_job(s));
    let manifest = first.media().join("out/long.mp4.manifest.json");
    first.wait("the stitched output", 600, |_| manifest.exists());
    first.wait("the clean-up", 60, |s| leftovers(s).is_empty());
    assert_eq!(probe_frames(&first.media().join("out/long.mp4")), 200);
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.dir.path().join("system/logs/shared.json")).unwrap()).unwrap();
    let instances: std::collections::BTreeSet<String> = log["segments"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instance"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(instances.len(), 2, "one instance styled every segment: {log}");
    assert_eq!(
        first.metric("stylestream_segments_total") + second.metric("stylestream_segments_total"),
        log["segments"]["count"].as_f64().unwrap()
    );
    assert_eq!(first.metric("stylestream_stitches_total") + second.metric("stylestream_stitches_total"), 1.0);
    assert!(first.stop() && second.stop());
    assert_eq!(count_files(&first.media().join("out"), |n| n.ends_with(".mp4")), 1);
    assert!(dead_letters(&format!("{}.dead", first.queue)).is_empty());
}

/// kill -9 of an instance while it styles a segment: the other instance takes it (the broker
/// redelivers it), the output appears once and nothing stays in the stores.
#[test]
fn kill_9_while_styling_a_segment_gives_one_output_and_leaves_nothing() {
    let mut first =
        Svc::with("", Extra::default().broker("prefetch = 1").service("segment_secs = 1\njobs = 1\ncrf = 0"));
    let input = first.media().join("in/long.mp4");
    long_clip(&input, 6);
    let mut second = Svc::beside(&first, "second");
    first.start();
    second.start();
    let system = first.dir.path().join("system");
    let (a, b) = (instance_of(&first), instance_of(&second));
    first.submit(&["--input", "in/long.mp4", "--style", "udnie", "--output", "out/long.mp4", "--id", "killed"]);
    // The first instance has styled frames of a segment it has not committed.
    first.wait("the first instance to style a segment", 300, |_| heartbeat_frames(&system, &a) > 0);
    first.kill9();
    let manifest = first.media().join("out/long.mp4.manifest.json");
    second.wait("the output, from the second instance", 600, |_| manifest.exists());
    second.wait("the clean-up", 60, |_| leftovers(&first).is_empty());
    assert!(second.stop());
    assert_eq!(count_files(&first.media().join("out"), |n| n.ends_with(".mp4")), 1);
    assert_eq!(count_files(&first.media().join("out"), |n| n.contains("partial")), 0);
    let reference = first.dir.path().join("reference.mp4");
    styled_whole(&input, &reference);
    assert!(
        decoded_frames(&first.media().join("out/long.mp4")) == decoded_frames(&reference),
        "the frames differ from one instance's"
    );
    assert!(dead_letters(&format!("{}.dead", first.queue)).is_empty());
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(system.join("logs/killed.json")).unwrap()).unwrap();
    assert!(log["segments"]["segments"].as_array().unwrap().iter().any(|s| s["instance"] == b), "{log}");
}

/// An instance on Azurite behind a proxy that can hold one request: the media and the system
/// store in one container.
fn azure_svc(extra: Extra) -> (Svc, common::proxy::Proxy, stylestream::storage::BlockingStore, String) {
    use common::azurite::{azurite, create_container, unique_container};
    azurite();
    let container = unique_container();
    create_container(&container);
    let proxy = common::proxy::Proxy::start(10000);
    let storage = format!("system = \"az://{container}/system\"\n[storage.options]\nmax_retries = 20\nretry_timeout_secs = 60\ninitial_backoff_ms = 50\nmax_backoff_ms = 200");
    let mut svc = Svc::with(&format!("az://{container}/media"), extra.storage(&storage));
    svc.env.push(("AZURITE_BLOB_STORAGE_URL".into(), format!("http://127.0.0.1:{}", proxy.port)));
    let vars = vec![("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string())];
    let store =
        stylestream::storage::Store::open_with_vars(&format!("az://{container}"), &Default::default(), vars).unwrap();
    (svc, proxy, stylestream::storage::BlockingStore::new(store).unwrap(), container)
}

fn okey(k: &str) -> stylestream::storage::ObjectKey {
    stylestream::storage::ObjectKey::parse(k).unwrap()
}

/// Keys under `prefix` of the whole container, upload temporaries included.
fn keys_under(store: &stylestream::storage::BlockingStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store.list(prefix).unwrap().into_iter().map(|k| k.to_string()).collect();
    keys.extend(store.list_partials(prefix).unwrap().into_iter().map(|(k, _)| k.to_string()));
    keys.sort();
    keys
}

/// kill -9 while a segment's run is committed (the store holds the copy), and again while the
/// stitch commits the output: after each restart the output appears exactly once, and nothing
/// of the plan stays in the stores — not even the killed runs' partial uploads.
#[test]
fn kill_9_while_uploading_a_segment_and_during_the_stitch_gives_one_output() {
    let (mut svc, proxy, store, container) = azure_svc(Extra::default().service("segment_secs = 1"));
    let input = svc.dir.path().join("long.mp4");
    long_clip(&input, 3);
    store.upload_atomic(&input, &okey("media/in/long.mp4")).unwrap();
    let held = |what: &str| common::proxy::Mode::HoldOn(format!("PUT /devstoreaccount1/{container}/{what} HTTP"));
    proxy.set(held("system/segments/held/out/0.run"));
    svc.start();
    svc.submit(&["--input", "in/long.mp4", "--style", "wave", "--output", "out/long.mp4", "--id", "held"]);
    wait_for("segment 0's commit to be held", 300, || proxy.held());
    svc.kill9();
    assert!(
        store.head(&okey("system/segments/held/out/0.json")).unwrap().is_none(),
        "segment 0 committed although its run was held"
    );
    // Again, now holding the stitch's commit of the output.
    proxy.reset_held();
    proxy.set(held("media/out/long.mp4"));
    svc.start();
    wait_for("the stitch's commit to be held", 300, || proxy.held());
    let killed = instance_of(&svc);
    svc.kill9();
    assert!(
        store.head(&okey("media/out/long.mp4")).unwrap().is_none(),
        "an output appeared although the stitch was killed"
    );
    // Its partial upload goes once its heartbeat is stale (three intervals of 0.5 s).
    let beat = okey(&format!("system/instances/{killed}.json"));
    wait_for("the killed instance's heartbeat to go stale", 30, || {
        store
            .head(&beat)
            .unwrap()
            .is_none_or(|m| chrono::Utc::now().signed_duration_since(m.last_modified).num_milliseconds() > 2000)
    });
    proxy.set(common::proxy::Mode::Up);
    svc.start();
    wait_for("the output", 300, || store.head(&okey("media/out/long.mp4.manifest.json")).unwrap().is_some());
    wait_for("the plan's objects to go", 60, || keys_under(&store, "system/segments/").is_empty());
    assert!(svc.stop());
    assert_eq!(keys_under(&store, "media/out/"), ["media/out/long.mp4", "media/out/long.mp4.manifest.json"]);
    let fetched = svc.dir.path().join("fetched.mp4");
    store.download(&okey("media/out/long.mp4"), &fetched).unwrap();
    assert_eq!(probe_frames(&fetched), 75);
    assert_eq!(packets(&fetched, "a"), packets(&input, "a"));
    assert!(dead_letters(&format!("{}.dead", svc.queue)).is_empty());
}

/// A cancel published while a cut video runs on one instance: a replica started after the
/// cancel styles nothing of it, every segment message is dead-lettered as `cancelled`, no output
/// appears, and only the stop mark stays. Forged segment and stitch messages (a plan that does
/// not exist) are dead-lettered as `unknown-plan`, and a video whose keyframes are too far
/// apart to cut is styled whole, its job log saying why.
#[test]
fn a_cancel_reaches_replicas_that_start_later_and_forged_or_uncuttable_work_is_handled() {
    let mut first = Svc::with("", Extra::default().broker("prefetch = 1").service("segment_secs = 1\njobs = 1"));
    long_clip(&first.media().join("in/long.mp4"), 8);
    Clip::new(75).audio().extra(&["-g", "1000", "-keyint_min", "1000"]).write(&first.media().join("in/sparse.mp4"));
    first.start();
    let system = first.dir.path().join("system");
    let a = instance_of(&first);
    first.submit(&["--input", "in/long.mp4", "--style", "wave", "--output", "out/long.mp4", "--id", "doomed"]);
    first.wait("the first segment to be styled", 300, |_| heartbeat_frames(&system, &a) > 0);
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(system.join("segments/doomed/plan.json")).unwrap()).unwrap();
    let segments = plan["segments"].as_array().unwrap().len() as f64;
    let o = stylestream_command(&["cancel", "--config", first.config.to_str().unwrap(), "doomed"])
        .env("STYLESTREAM_AMQP_URL", AMQP)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    first.wait("the stop mark", 60, |_| system.join("segments/doomed/stopped").exists());
    let mut second = Svc::beside(&first, "second");
    second.start();
    let cancelled = |s: &Svc| s.metric("stylestream_dead_lettered_total{reason=\"cancelled\"}");
    first.wait("every segment dead-lettered as cancelled", 300, |f| cancelled(f) + cancelled(&second) == segments);
    // Forged parts of a video that does not exist.
    publish_raw(&first.queue, br#"{"schema":"stylestream.segment/1","plan":"nowhere","segment":0}"#);
    publish_raw(&first.queue, br#"{"schema":"stylestream.stitch/1","plan":"nowhere"}"#);
    let unknown = |s: &Svc| s.metric("stylestream_dead_lettered_total{reason=\"unknown-plan\"}");
    first.wait("the forged messages dead-lettered", 120, |f| unknown(f) + unknown(&second) == 2.0);
    // Keyframes too far apart: styled whole, and the job log says why.
    first.submit(&["--input", "in/sparse.mp4", "--style", "wave", "--output", "out/sparse.mp4", "--id", "sparse"]);
    first.wait("the sparse video", 300, |_| first.media().join("out/sparse.mp4.manifest.json").exists());
    assert!(first.stop() && second.stop());
    assert!(!first.media().join("out/long.mp4").exists(), "a cancelled video was published");
    let left: Vec<String> =
        leftovers(&first).iter().map(|p| p.strip_prefix(&system).unwrap().display().to_string()).collect();
    assert_eq!(left, ["segments/doomed/stopped"]);
    let mut reasons: Vec<String> = dead_letters(&format!("{}.dead", first.queue)).into_iter().map(|(r, _)| r).collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons, ["cancelled", "unknown-plan"]);
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(system.join("logs/sparse.json")).unwrap()).unwrap();
    assert_eq!(log["outcome"], "succeeded", "{log}");
    assert!(log["note"].as_str().unwrap_or_default().contains("too far apart"), "{log}");
    assert_eq!(probe_frames(&first.media().join("out/sparse.mp4")), 75);
}
