//! `stylestream serve` against the real RabbitMQ on 127.0.0.1:5672 and real stores (local
//! directories and Azurite): jobs end up complete in the store with manifest and logs, poison
//! messages land in the dead-letter queue with their reason, a kill -9 mid-video still gives
//! exactly one output, a burst stays bounded, trigger objects start jobs on stored frames, and no
//! secret reaches a log. Every test uses its own queues, directories and containers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::proxy::{Mode, Proxy};
use common::svc::*;
use common::*;

#[test]
fn a_job_is_styled_into_the_store_acked_and_a_redelivery_does_no_gpu_work() {
    let mut svc = Svc::new("", "");
    let input = svc.media().join("incoming/talk.mp4");
    Clip::new(6).size(64, 48).audio().write(&input);
    svc.start();
    assert!(http_get(svc.metrics, "/healthz").starts_with("HTTP/1.1 200"));
    svc.submit(&["--input", "incoming/talk.mp4", "--style", "udnie", "--output-prefix", "styled/", "--id", "job-1"]);
    let out = svc.media().join("styled/talk.udnie.mp4");
    let manifest = svc.media().join("styled/talk.udnie.mp4.manifest.json");
    wait_for("the manifest", 120, || manifest.exists());
    assert_eq!(probe_frames(&out), 6);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(
        (m["frames"].as_u64(), m["output_size"].as_u64()),
        (Some(6), Some(std::fs::metadata(&out).unwrap().len()))
    );
    assert_eq!(m["input_key"], "incoming/talk.mp4");
    // The job's logs: a summary and one line per frame.
    let logs = svc.dir.path().join("system/logs");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(logs.join("job-1.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "succeeded");
    assert_eq!(summary["frames"], 6);
    assert!(summary["seconds"]["style"].as_f64().unwrap() > 0.0);
    let lines = std::fs::read_to_string(logs.join("job-1.frames.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6);
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["gpu_ms"].as_f64().unwrap() > 0.0);

    // The same event again: acked without styling, output untouched.
    let stamp = std::fs::metadata(&out).unwrap().modified().unwrap();
    svc.submit(&["--input", "incoming/talk.mp4", "--style", "udnie", "--output-prefix", "styled/", "--id", "job-2"]);
    wait_for("the second event to be settled", 60, || {
        http_get(svc.metrics, "/metrics").contains("stylestream_jobs_total{outcome=\"already_done\"} 1")
    });
    assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), stamp);
    let metrics = http_get(svc.metrics, "/metrics");
    assert!(metrics.contains("stylestream_jobs_total{outcome=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("stylestream_frames_total 6"), "{metrics}");
    assert!(metrics.contains("stylestream_stage_seconds_count{stage=\"style\"} 1"), "{metrics}");

    // The same input and style with other settings is another job: styled again.
    publish_raw(&svc.queue, br#"{"schema":"stylestream.job/1","input":"incoming/talk.mp4","style":"udnie","output_prefix":"styled/","crf":30,"id":"job-3"}"#);
    wait_for("the job with other settings", 120, || svc.metric("stylestream_jobs_total{outcome=\"succeeded\"}") == 2.0);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!((m["schema"].as_u64(), m["settings"]["crf"].as_str()), (Some(2), Some("30")));
    // The output deleted behind the manifest's back: made again, not trusted as done.
    std::fs::remove_file(&out).unwrap();
    publish_raw(&svc.queue, br#"{"schema":"stylestream.job/1","input":"incoming/talk.mp4","style":"udnie","output_prefix":"styled/","crf":30,"id":"job-4"}"#);
    wait_for("the deleted output to be made again", 120, || {
        svc.metric("stylestream_jobs_total{outcome=\"succeeded\"}") == 3.0
    });
    assert_eq!(probe_frames(&out), 6);

    // SIGTERM: a clean exit, nothing left in the queue (unacked messages would return to it).
    assert!(svc.stop(), "the service did not exit cleanly on SIGTERM");
    assert_eq!(ready(&svc.queue), 0);
    // Logs are JSON lines and never hold the broker password.
    let log = svc.log_text();
    for line in log.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line}");
    }
    assert!(log.contains("amqp://guest:***@127.0.0.1"), "{log}");
    assert!(!log.contains("guest:guest"), "the broker password was logged: {log}");
    let job_logs = std::fs::read_to_string(logs.join("job-1.json")).unwrap();
    assert!(!job_logs.contains("guest:guest"));
}

#[test]
fn every_dead_letter_reason_at_the_service_level_while_valid_jobs_complete() {
    let extra = Extra::default()
        .broker("max_message_bytes = 2048")
        .service("max_input_bytes = 100000")
        .storage("notification_source = \"media\"")
        .routes("[[routes]]\nprefix = \"drop/\"\nstyle = \"udnie\"\noutput_prefix = \"styled/\"");
    let mut svc = Svc::with("", extra);
    Clip::new(3).size(64, 48).audio().write(&svc.media().join("in/good.mp4"));
    Clip::new(2).size(64, 48).audio().write(&svc.media().join("drop/grid.mp4"));
    std::fs::write(svc.media().join("in/corrupt.mp4"), b"\x00\x00\x00\x18ftypmp42 this is not really a video").unwrap();
    std::fs::write(svc.media().join("in/big.mp4"), vec![7u8; 150_000]).unwrap();
    // A concat list posing as a video, pointing at a file outside the store.
    let outside = svc.dir.path().join("outside.mp4");
    Clip::new(2).size(64, 48).audio().write(&outside);
    std::fs::write(svc.media().join("in/list.mp4"), format!("ffconcat version 1.0\nfile '{}'\n", outside.display()))
        .unwrap();
    svc.start();
    let job = |input: &str, style: &str| {
        format!(r#"{{"schema":"stylestream.job/1","input":"{input}","style":"{style}","output_prefix":"out/"}}"#)
    };
    let s3 = common::svc::s3_created;
    let grid = |container: &str, path: &str| {
        format!(
            r#"[{{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/{container}/blobs/{path}","data":{{}}}}]"#
        )
    };
    publish_raw(&svc.queue, b"{this is not json");
    publish_raw(
        &svc.queue,
        br#"{"schema":"stylestream.job/7","input":"in/good.mp4","style":"udnie","output":"x.mp4"}"#,
    );
    publish_raw(&svc.queue, job("in/missing.mp4", "udnie").as_bytes());
    publish_raw(&svc.queue, job("in/corrupt.mp4", "udnie").as_bytes());
    publish_raw(&svc.queue, job("in/good.mp4", "no-such-style").as_bytes());
    publish_raw(&svc.queue, format!(r#"{{"schema":"stylestream.job/1","pad":"{}"}}"#, "x".repeat(4000)).as_bytes());
    publish_raw(&svc.queue, job("../../etc/passwd", "udnie").as_bytes());
    publish_raw(&svc.queue, job("in/big.mp4", "udnie").as_bytes());
    publish_raw(&svc.queue, br#"{"schema":"stylestream.job/1","input":"in/good.mp4","style":"udnie","output_prefix":"out/","preset":"placebo"}"#);
    publish_raw(&svc.queue, s3("media", "elsewhere/a.mp4").as_bytes());
    publish_raw(&svc.queue, s3("someone-elses-bucket", "drop/grid.mp4").as_bytes());
    publish_raw(&svc.queue, grid("other", "drop/grid.mp4").as_bytes());
    publish_raw(&svc.queue, job("in/list.mp4", "udnie").as_bytes());
    // Valid: our schema, and an Event Grid notification from the media store's container.
    publish_raw(&svc.queue, job("in/good.mp4", "udnie").as_bytes());
    publish_raw(&svc.queue, grid("media", "drop/grid.mp4").as_bytes());
    let out = svc.media().join("out/good.udnie.mp4.manifest.json");
    let from_grid = svc.media().join("styled/grid.udnie.mp4.manifest.json");
    wait_for("the valid jobs after the poison ones", 180, || out.exists() && from_grid.exists());
    wait_for("thirteen dead letters", 30, || ready(&format!("{}.dead", svc.queue)) == 13);
    let mut reasons: Vec<String> = dead_letters(&format!("{}.dead", svc.queue)).into_iter().map(|(r, _)| r).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "corrupt-input",
            "foreign-source",
            "foreign-source",
            "invalid-event",
            "invalid-key",
            "malformed-json",
            "missing-input",
            "no-route",
            "oversized",
            "oversized-input",
            "unknown-schema",
            "unknown-style",
            "unsupported-input"
        ]
    );
    assert_eq!(probe_frames(&svc.media().join("out/good.udnie.mp4")), 3);
    assert_eq!(probe_frames(&svc.media().join("styled/grid.udnie.mp4")), 2);
    assert_eq!(
        count_files(&svc.media().join("out"), |n| n.contains("corrupt") || n.contains("big") || n.contains("list")),
        0,
        "nothing is written for a refused input"
    );
    assert!(svc.metrics().contains("stylestream_dead_lettered_total{reason=\"corrupt-input\"} 1"));
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
    // Each failure is logged once, as an error naming the reason.
    let log = svc.log_text();
    assert_eq!(log.matches("\"reason\":\"missing-input\"").count(), 1, "{log}");
}

/// Every field of our schema with traversal strings, absolute paths, NUL, very long and odd
/// Unicode values: nothing appears outside the job's staging directory and the configured
/// output keys, and every refused value is dead-lettered with its reason.
#[test]
fn hostile_event_fields_write_nothing_outside_the_stores_and_are_dead_lettered() {
    let mut svc = Svc::new("", "");
    Clip::new(2).size(32, 24).audio().write(&svc.media().join("in/a.mp4"));
    let root = svc.dir.path().to_path_buf();
    let escape = root.join("escaped");
    let hostile = [
        "../../escaped".to_string(),
        "/../../../escaped".to_string(),
        escape.display().to_string(),
        "in/\u{0}a.mp4".to_string(),
        "..".to_string(),
        "in/../../escaped".to_string(),
        "x".repeat(5000),
        "\u{202e}4pm.exe".to_string(),
        "in\\..\\..\\escaped".to_string(),
        "%2e%2e/escaped".to_string(),
    ];
    svc.start();
    let before = all_files(&root);
    let mut sent = 0;
    let fields = ["id", "input", "input_prefix", "output", "output_prefix", "style", "preset", "format"];
    for field in fields {
        for value in &hostile {
            let mut e = serde_json::json!({"schema": "stylestream.job/1", "input": "in/a.mp4", "style": "wave", "output_prefix": "out/"});
            let o = e.as_object_mut().unwrap();
            match field {
                "input_prefix" => {
                    o.remove("input");
                }
                "output" => {
                    o.remove("output_prefix");
                }
                _ => {}
            }
            o.insert(field.to_string(), value.clone().into());
            publish_raw(&svc.queue, e.to_string().as_bytes());
            sent += 1;
        }
    }
    for bad in [r#""crf":-1"#, r#""crf":99999999999"#, r#""fps":"25; rm -rf /""#, r#""fps":1e309"#] {
        publish_raw(
            &svc.queue,
            format!(
                r#"{{"schema":"stylestream.job/1","input":"in/a.mp4","style":"wave","output_prefix":"out/",{bad}}}"#
            )
            .as_bytes(),
        );
        sent += 1;
    }
    // One valid job after them all.
    publish_raw(&svc.queue, br#"{"schema":"stylestream.job/1","input":"in/a.mp4","style":"wave","output_prefix":"out/","id":"the-valid-one"}"#);
    wait_for("the valid job", 300, || svc.media().join("out/a.wave.mp4.manifest.json").exists());
    wait_for("every message to be settled", 120, || {
        svc.metric("stylestream_messages_total") >= (sent + 1) as f64 && ready(&svc.queue) == 0
    });
    assert!(svc.stop());
    let letters = dead_letters(&format!("{}.dead", svc.queue));
    for (reason, body) in &letters {
        assert!(
            ["invalid-event", "invalid-key", "unknown-style", "malformed-json", "missing-input"]
                .contains(&reason.as_str()),
            "{reason}: {body}"
        );
    }
    // Only one hostile value is a valid key the job may write to (an output prefix made of odd
    // Unicode): every other message was refused.
    assert_eq!(letters.len() as u32, sent - 1, "{letters:?}");
    assert!(!escape.exists(), "a file escaped the stores");
    let allowed = |p: &Path| {
        let rel = p.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        rel.starts_with("media/")
            || rel.starts_with("system/logs/")
            || rel.starts_with("system/instances/")
            || rel == "serve.log"
    };
    let new: Vec<PathBuf> = all_files(&root).into_iter().filter(|p| !before.contains(p) && !allowed(p)).collect();
    assert!(new.is_empty(), "files outside the staging directory and the output keys: {new:?}");
    assert!(root.join("system/logs/the-valid-one.json").exists());
    assert_eq!(staging_dirs(svc.work_dir()), 0, "a staging directory was left behind");
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A service on Azure Blob storage (Azurite) behind a proxy the test controls.
/// Store requests give up quickly (an outage is seen within seconds) unless `patient` (a held
/// request is then retried, and held again, for a minute).
fn azure_svc(extra: Extra) -> (Svc, Proxy, stylestream::storage::BlockingStore) {
    azure_svc_with(extra, false)
}

fn azure_svc_with(extra: Extra, patient: bool) -> (Svc, Proxy, stylestream::storage::BlockingStore) {
    use common::azurite::{azurite, create_container, unique_container};
    azurite();
    let container = unique_container();
    create_container(&container);
    let proxy = Proxy::start(10000);
    let options =
        if patient { "max_retries = 20\nretry_timeout_secs = 60" } else { "max_retries = 1\nretry_timeout_secs = 3" };
    let mut svc = Svc::with(
        &format!("az://{container}/media"),
        extra.storage(&format!("[storage.options]\n{options}\ninitial_backoff_ms = 50\nmax_backoff_ms = 200")),
    );
    svc.env.push(("AZURITE_BLOB_STORAGE_URL".into(), format!("http://127.0.0.1:{}", proxy.port)));
    let vars = vec![("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string())];
    let store =
        stylestream::storage::Store::open_with_vars(&format!("az://{container}/media"), &Default::default(), vars)
            .unwrap();
    (svc, proxy, stylestream::storage::BlockingStore::new(store).unwrap())
}

fn okey(k: &str) -> stylestream::storage::ObjectKey {
    stylestream::storage::ObjectKey::parse(k).unwrap()
}

/// Keys under `prefix`, upload temporaries included.
fn listed_with_partials(store: &stylestream::storage::BlockingStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store.list(prefix).unwrap().into_iter().map(|k| k.to_string()).collect();
    keys.extend(store.list_partials(prefix).unwrap().into_iter().map(|(k, _)| k.to_string()));
    keys.sort();
    keys
}

fn staging_dirs(dir: &Path) -> usize {
    count_files(dir, |n| n.starts_with("stylestream-job-"))
}

/// Waits until every instance heartbeat in the system store is older than `secs` (the killed
/// instance is then seen as dead).
fn wait_heartbeats_older_than(svc: &Svc, secs: f64) {
    let dir = svc.dir.path().join("system/instances");
    wait_for("the killed instance's heartbeat to go stale", 30, || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .all(|e| e.metadata().unwrap().modified().unwrap().elapsed().unwrap().as_secs_f64() > secs)
    });
}

/// kill -9 while the output is being committed (the store holds the final copy, so no GPU is
/// fast enough to finish first): no output appears; after a restart exactly one output exists,
/// byte-identical to an uninterrupted run, and the dead run's partial upload and staging
/// directory are gone.
#[test]
fn kill_9_during_the_upload_then_restart_gives_exactly_one_output_and_leaves_nothing_behind() {
    let (mut svc, proxy, store) = azure_svc_with(Extra::default(), true);
    let input = svc.dir.path().join("long.mp4");
    Clip::new(12).size(64, 48).audio().write(&input);
    store.upload_atomic(&input, &okey("in/long.mp4")).unwrap();
    proxy.set(Mode::HoldOn("x-ms-copy-source".into()));
    svc.start();
    svc.submit(&["--input", "in/long.mp4", "--style", "wave", "--output", "out/long.mp4"]);
    wait_for("the commit of the output to be held", 180, || proxy.held());
    svc.kill9();
    assert!(store.head(&okey("out/long.mp4")).unwrap().is_none(), "an output appeared although the job was killed");
    let left = listed_with_partials(&store, "out/");
    assert_eq!(left.len(), 1, "the killed run's partial upload: {left:?}");
    assert_eq!(staging_dirs(svc.work_dir()), 1, "the killed run's staging directory");
    proxy.set(Mode::Up);
    wait_heartbeats_older_than(&svc, 2.0);
    svc.start();
    wait_for("the redelivered job", 180, || store.head(&okey("out/long.mp4.manifest.json")).unwrap().is_some());
    wait_for("the dead run's partial to be removed", 30, || listed_with_partials(&store, "out/").len() == 2);
    assert_eq!(listed_with_partials(&store, "out/"), ["out/long.mp4", "out/long.mp4.manifest.json"]);
    assert_eq!(staging_dirs(svc.work_dir()), 0, "a staging directory was left behind");
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0, "a message was left in the queue");
    let fetched = svc.dir.path().join("fetched.mp4");
    store.download(&okey("out/long.mp4"), &fetched).unwrap();
    let alone = svc.dir.path().join("alone.mp4");
    let o = stylestream(&["stylize", input.to_str().unwrap(), "-o", alone.to_str().unwrap(), "--model", "wave", "-q"]);
    assert!(o.status.success());
    assert!(
        std::fs::read(&alone).unwrap() == std::fs::read(&fetched).unwrap(),
        "the output differs from an uninterrupted run"
    );
}

/// A message that kills its consumer every time is dead-lettered by the broker once its
/// delivery limit is spent (x-death reason `delivery_limit`), not redelivered forever.
#[test]
fn a_message_that_kills_the_service_every_time_is_dead_lettered_by_its_delivery_limit() {
    let (mut svc, proxy, store) = azure_svc_with(Extra::default().broker("max_deliveries = 1"), true);
    let input = svc.dir.path().join("c.mp4");
    Clip::new(2).size(32, 24).audio().write(&input);
    store.upload_atomic(&input, &okey("in/c.mp4")).unwrap();
    proxy.set(Mode::HoldOn("x-ms-copy-source".into()));
    for round in 0..2 {
        svc.start();
        if round == 0 {
            svc.submit(&["--input", "in/c.mp4", "--style", "wave", "--output", "out/c.mp4"]);
        }
        wait_for("the commit to be held", 180, || proxy.held());
        svc.kill9();
        proxy.reset_held();
    }
    let dead = format!("{}.dead", svc.queue);
    wait_for("the broker to dead-letter the message", 30, || ready(&dead) == 1);
    let reasons = death_reasons(&dead);
    assert_eq!(reasons, ["delivery_limit"]);
    assert_eq!(ready(&svc.queue), 0);
}

#[test]
fn a_trigger_object_styles_the_frames_uploaded_under_its_prefix() {
    let routes = "[[routes]]\nprefix = \"uploads/\"\nstyle = \"scream\"\noutput_prefix = \"styled/\"\ntrigger = \"_READY\"\nfps = 25";
    let mut svc = Svc::with("", Extra::default().storage("notification_source = \"media\"").routes(routes));
    let frames = svc.media().join("uploads/shot7");
    std::fs::create_dir_all(&frames).unwrap();
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "4"])
        .arg(frames.join("%05d.png"))
        .output()
        .unwrap();
    assert!(o.status.success());
    svc.start();
    // S3-style notifications: a frame (nothing happens), then the trigger.
    let s3 = |key: &str| common::svc::s3_created("media", key);
    publish_raw(&svc.queue, s3("uploads/shot7/00001.png").as_bytes());
    std::fs::write(frames.join("_READY"), b"").unwrap();
    publish_raw(&svc.queue, s3("uploads/shot7/_READY").as_bytes());
    let out = svc.media().join("styled/shot7.scream.mp4");
    wait_for("the video of the triggered prefix", 120, || {
        svc.media().join("styled/shot7.scream.mp4.manifest.json").exists()
    });
    assert_eq!(probe_frames(&out), 4);
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
}

#[test]
fn jobs_on_azure_blob_storage_through_azurite() {
    use common::azurite::{azurite, create_container, unique_container};
    azurite();
    let container = unique_container();
    create_container(&container);
    let mut svc = Svc::new(&format!("az://{container}/media"), "");
    // Upload the input with the project's own store (as a user's uploader would).
    let local = svc.dir.path().join("clip.mp4");
    Clip::new(3).size(64, 48).audio().write(&local);
    let vars = vec![("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string())];
    let store =
        stylestream::storage::Store::open_with_vars(&format!("az://{container}/media"), &Default::default(), vars)
            .unwrap();
    let store = stylestream::storage::BlockingStore::new(store).unwrap();
    let key = |k: &str| stylestream::storage::ObjectKey::parse(k).unwrap();
    store.upload_atomic(&local, &key("in/clip.mp4")).unwrap();
    svc.start();
    svc.submit(&["--input", "in/clip.mp4", "--style", "udnie", "--output", "out/clip.mp4"]);
    wait_for("the manifest in Azurite", 120, || store.head(&key("out/clip.mp4.manifest.json")).unwrap().is_some());
    let fetched = svc.dir.path().join("fetched.mp4");
    store.download(&key("out/clip.mp4"), &fetched).unwrap();
    assert_eq!(probe_frames(&fetched), 3);
    let listed: Vec<String> = store.list("out/").unwrap().into_iter().map(|k| k.to_string()).collect();
    assert_eq!(listed, ["out/clip.mp4", "out/clip.mp4.manifest.json"]);
    assert!(svc.stop());
    assert!(!svc.log_text().contains(common::azurite::AZURITE_KEY), "the storage key was logged");
}

/// A hundred small jobs (and two duplicates) through one long-lived engine: each completes
/// once, the GPU device is opened once for the service's life, and memory stays flat from the
/// tenth job to the hundredth.
#[test]
fn a_hundred_small_jobs_complete_once_each_on_warm_gpus_with_flat_memory() {
    let mut svc = Svc::new("", "prefetch = 8\n---\n");
    Clip::new(1).size(32, 24).audio().write(&svc.media().join("burst/c.mp4"));
    svc.start();
    let event = |i: usize| {
        format!(
            r#"{{"schema":"stylestream.job/1","input":"burst/c.mp4","style":"wave","output":"out/c{i:03}.mp4","id":"j{i}"}}"#
        )
    };
    for i in 0..100 {
        publish_raw(&svc.queue, event(i).as_bytes());
    }
    // Two duplicates, as at-least-once delivery may bring.
    publish_raw(&svc.queue, event(7).as_bytes());
    publish_raw(&svc.queue, event(31).as_bytes());
    let out = svc.media().join("out");
    let pid = svc.child.as_ref().unwrap().id();
    wait_for("10 manifests", 300, || count_files(&out, |n| n.ends_with(".manifest.json")) >= 10);
    let at_ten = rss_kib(pid);
    let mut peak = at_ten;
    wait_for("100 manifests", 900, || {
        peak = peak.max(rss_kib(pid));
        count_files(&out, |n| n.ends_with(".manifest.json")) == 100
    });
    eprintln!("100 jobs: RSS {at_ten} KiB at job 10, peak {peak} KiB up to job 100");
    assert!(peak as f64 <= at_ten as f64 * 1.10, "memory grew from {at_ten} KiB at job 10 to {peak} KiB");
    wait_for("the duplicates to be settled", 120, || {
        svc.metric("stylestream_jobs_total{outcome=\"succeeded\"}")
            + svc.metric("stylestream_jobs_total{outcome=\"already_done\"}")
            >= 102.0
    });
    assert_eq!(svc.metric("stylestream_gpu_device_opens_total"), 1.0, "the worker's device was opened more than once");
    assert!(svc.stop());
    assert_eq!(count_files(&out, |n| n.ends_with(".mp4")), 100, "one output per job, no duplicates");
    assert_eq!(count_files(&out, |n| n.ends_with(".partial")), 0);
    assert_eq!(ready(&svc.queue), 0);
    assert_eq!(svc.log_text().matches("\"message\":\"job done\"").count(), 100, "each output styled exactly once");
}

/// Jobs stream through one engine: a short job submitted while a long one runs is styled,
/// committed and acked first. The order is read from the service's own log ("job done" is logged
/// when a message is settled), not from what has not happened yet after a sleep.
#[test]
fn a_short_job_submitted_after_a_long_one_is_done_and_acked_first() {
    let mut svc = Svc::new("", "---\njobs = 2");
    Clip::new(120).audio().write(&svc.media().join("in/long.mp4"));
    Clip::new(3).audio().write(&svc.media().join("in/short.mp4"));
    svc.start();
    svc.submit(&["--input", "in/long.mp4", "--style", "wave", "--output", "out/long.mp4", "--id", "long"]);
    // The long job has styled frames: it is running.
    svc.wait("the long job to style frames", 120, |s| s.frames_done("long").is_some_and(|n| n > 0));
    let (long, short) =
        (svc.media().join("out/long.mp4.manifest.json"), svc.media().join("out/short.mp4.manifest.json"));
    if long.exists() {
        return skip("the long job ended before the short one could be submitted (a fast GPU): nothing to compare");
    }
    svc.submit(&["--input", "in/short.mp4", "--style", "wave", "--output", "out/short.mp4", "--id", "short"]);
    svc.wait("both outputs", 600, |_| short.exists() && long.exists());
    svc.wait("both acks", 60, |s| s.metric("stylestream_jobs_total{outcome=\"succeeded\"}") == 2.0);
    let log = svc.log_text();
    let done_at = |output: &str| {
        log.lines()
            .position(|l| l.contains("\"message\":\"job done\"") && l.contains(output))
            .unwrap_or_else(|| panic!("no `job done` for {output}:\n{log}"))
    };
    assert!(done_at("out/short.mp4") < done_at("out/long.mp4"), "the short job waited behind the long one:\n{log}");
    assert_eq!(probe_frames(&svc.media().join("out/long.mp4")), 120);
    assert_eq!(probe_frames(&svc.media().join("out/short.mp4")), 3);
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
}

/// An HTTP request with a bearer token: the whole answer.
fn http_with_token(port: u16, method: &str, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ =
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `stylestream cancel ID` stops a running job, `DELETE /jobs/<id>` another, and
/// `service.job_timeout_secs` a third: none publishes anything; each is dead-lettered with its
/// reason, the status page and `/jobs` showed the job while it ran, and the service goes on.
#[test]
fn cancelled_and_timed_out_jobs_publish_nothing_and_are_dead_lettered() {
    let mut svc = Svc::new("", "---\njob_timeout_secs = 5");
    svc.env.push(("STYLESTREAM_HTTP_TOKEN".into(), "s3cret-t0ken".into()));
    for name in ["a", "b", "d"] {
        Clip::new(300).size(64, 48).audio().write(&svc.media().join(format!("in/{name}.mp4")));
    }
    Clip::new(2).size(32, 24).audio().write(&svc.media().join("in/c.mp4"));
    svc.start();
    svc.submit(&["--input", "in/a.mp4", "--style", "wave", "--output", "out/a.mp4", "--id", "cancel-me"]);
    svc.wait("the job to start", 60, |s| s.log_text().contains("job started"));
    let o = stylestream_command(&["cancel", "--config", svc.config.to_str().unwrap(), "cancel-me"])
        .env("STYLESTREAM_AMQP_URL", AMQP)
        .output()
        .unwrap();
    assert!(o.status.success(), "cancel: {}", String::from_utf8_lossy(&o.stderr));
    svc.wait("the cancelled job to be dead-lettered", 120, |s| {
        s.metric("stylestream_dead_lettered_total{reason=\"cancelled\"}") == 1.0
    });
    // Over HTTP, with the token: listed while it runs, then cancelled.
    svc.submit(&["--input", "in/d.mp4", "--style", "wave", "--output", "out/d.mp4", "--id", "via-http"]);
    svc.wait("the job on /jobs", 60, |s| {
        http_with_token(s.metrics, "GET", "/jobs", "s3cret-t0ken").contains("\"via-http\"")
    });
    assert!(
        http_with_token(svc.metrics, "GET", "/", "s3cret-t0ken").contains("via-http"),
        "the status page does not show the running job"
    );
    assert!(
        http_with_token(svc.metrics, "GET", "/jobs", "wrong").starts_with("HTTP/1.1 403"),
        "a wrong token was accepted"
    );
    let r = http_with_token(svc.metrics, "DELETE", "/jobs/via-http", "s3cret-t0ken");
    assert!(r.starts_with("HTTP/1.1 202"), "{r}");
    svc.wait("the job cancelled over HTTP to be dead-lettered", 120, |s| {
        s.metric("stylestream_dead_lettered_total{reason=\"cancelled\"}") == 2.0
    });
    assert!(
        http_with_token(svc.metrics, "DELETE", "/jobs/via-http", "s3cret-t0ken").starts_with("HTTP/1.1 404"),
        "an ended job was found again"
    );
    svc.submit(&["--input", "in/b.mp4", "--style", "wave", "--output", "out/b.mp4", "--id", "too-slow"]);
    svc.wait("the slow job to time out", 120, |s| {
        s.metric("stylestream_dead_lettered_total{reason=\"timed-out\"}") == 1.0
    });
    // The service goes on with other jobs.
    svc.submit(&["--input", "in/c.mp4", "--style", "wave", "--output", "out/c.mp4", "--id", "after"]);
    svc.wait("the next job", 120, |_| svc_done(&svc.media().join("out/c.mp4")));
    assert!(svc.stop());
    for key in ["out/a.mp4", "out/b.mp4", "out/d.mp4"] {
        assert!(!svc.media().join(key).exists(), "{key}: a stopped job published its output");
    }
    assert_eq!(count_files(&svc.media().join("out"), |n| n.ends_with(".partial")), 0);
    let mut reasons: Vec<String> = dead_letters(&format!("{}.dead", svc.queue)).into_iter().map(|(r, _)| r).collect();
    reasons.sort();
    assert_eq!(reasons, ["cancelled", "cancelled", "timed-out"]);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(svc.dir.path().join("system/logs/cancel-me.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "failed");
}

fn svc_done(output: &Path) -> bool {
    let mut m = output.as_os_str().to_os_string();
    m.push(".manifest.json");
    Path::new(&m).exists()
}

/// A broker that drops the service's channel in the middle of a job — what RabbitMQ does when
/// a delivery stays unacked past its consumer timeout (30 min by default; RabbitMQ 3.10 has no
/// per-queue setting and checks it about once a minute, so the test closes the connection the
/// same way, at once) — while the output is being committed (held by the store, so the job
/// cannot have ended before). The job still commits once; the redelivery is acked without GPU
/// work.
#[test]
fn a_channel_closed_mid_job_like_a_consumer_timeout_still_gives_exactly_one_output() {
    let (mut svc, proxy, store) = azure_svc_with(Extra::default(), true);
    let input = svc.dir.path().join("slow.mp4");
    Clip::new(6).size(64, 48).audio().write(&input);
    store.upload_atomic(&input, &okey("in/slow.mp4")).unwrap();
    proxy.set(Mode::HoldOn("x-ms-copy-source".into()));
    svc.start();
    svc.submit(&["--input", "in/slow.mp4", "--style", "udnie", "--output", "out/slow.mp4"]);
    wait_for("the commit to be held", 180, || proxy.held());
    let o = Command::new("rabbitmqctl")
        .args(["close_all_connections", "consumer timeout simulated by a test"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The commit goes through now; the ack then fails on the closed channel.
    proxy.set(Mode::Up);
    wait_for("the redelivery to be acked as done", 180, || {
        svc.log_text().contains("already done: acked without styling")
    });
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
    let log = svc.log_text();
    assert_eq!(log.matches("\"message\":\"job done\"").count(), 1, "styled more than once: {log}");
    assert!(log.contains("reconnecting"), "{log}");
    let fetched = svc.dir.path().join("fetched.mp4");
    store.download(&okey("out/slow.mp4"), &fetched).unwrap();
    assert_eq!(probe_frames(&fetched), 6);
}

#[test]
fn sigterm_lets_the_job_in_flight_finish_and_without_grace_hands_it_back() {
    // Enough grace: the job completes, is acked, and the service exits cleanly.
    let mut svc = Svc::new("", "");
    Clip::new(16).size(64, 48).audio().write(&svc.media().join("in/a.mp4"));
    svc.start();
    svc.submit(&["--input", "in/a.mp4", "--style", "wave", "--output", "out/a.mp4"]);
    wait_for("the job to start", 60, || svc.log_text().contains("job started"));
    let _ = Command::new("kill").args(["-TERM", &svc.child.as_ref().unwrap().id().to_string()]).status();
    assert!(svc.stop(), "no clean exit after SIGTERM");
    assert_eq!(probe_frames(&svc.media().join("out/a.mp4")), 16);
    assert_eq!(ready(&svc.queue), 0);
    drop(svc);

    // No grace, with the job's commit held by the store (so it is surely unfinished): the job
    // is given up, nothing is published, the message goes back, and the service still exits.
    let (mut svc, proxy, store) = azure_svc_with(Extra::default().service("shutdown_grace_secs = 0"), true);
    let input = svc.dir.path().join("b.mp4");
    Clip::new(4).size(64, 48).audio().write(&input);
    store.upload_atomic(&input, &okey("in/b.mp4")).unwrap();
    proxy.set(Mode::HoldOn("x-ms-copy-source".into()));
    svc.start();
    svc.submit(&["--input", "in/b.mp4", "--style", "wave", "--output", "out/b.mp4"]);
    wait_for("the commit to be held", 180, || proxy.held());
    let _ = Command::new("kill").args(["-TERM", &svc.child.as_ref().unwrap().id().to_string()]).status();
    assert!(svc.stop(), "no clean exit after SIGTERM");
    assert!(store.head(&okey("out/b.mp4")).unwrap().is_none(), "an interrupted job published an output");
    wait_for("the interrupted job's message to be back in the queue", 30, || ready(&svc.queue) == 1);
}

/// The store unreachable for 60 s while a job waits: the job is retried through the broker's
/// retry queue (the consumer never sleeps), `/readyz` and the metrics show the trouble, and
/// once the store is back the job completes; nothing is dead-lettered.
#[test]
fn a_store_outage_of_sixty_seconds_is_waited_out_and_nothing_is_dead_lettered() {
    let (mut svc, proxy, store) = azure_svc(Extra::default().broker("retry_delays_secs = [1.0, 2.0, 4.0]"));
    let input = svc.dir.path().join("o.mp4");
    Clip::new(3).size(64, 48).audio().write(&input);
    store.upload_atomic(&input, &okey("in/o.mp4")).unwrap();
    svc.start();
    proxy.set(Mode::Down);
    let down = std::time::Instant::now();
    svc.submit(&["--input", "in/o.mp4", "--style", "udnie", "--output", "out/o.mp4"]);
    wait_for("/readyz to report the store trouble", 60, || {
        let r = http_get(svc.metrics, "/readyz");
        r.starts_with("HTTP/1.1 503") && r.contains("store:")
    });
    wait_for("60 s of outage", 70, || down.elapsed() >= Duration::from_secs(60));
    let retries = svc.metric("stylestream_retries_total{cause=\"store\"}");
    assert!(retries >= 3.0, "only {retries} retries in a minute of outage");
    proxy.set(Mode::Up);
    wait_for("the job after the outage", 180, || store.head(&okey("out/o.mp4.manifest.json")).unwrap().is_some());
    wait_for("/readyz to recover", 30, || http_get(svc.metrics, "/readyz").starts_with("HTTP/1.1 200"));
    assert_eq!(ready(&format!("{}.dead", svc.queue)), 0, "a valid job was dead-lettered");
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
}

/// A job whose store stays down past the retry budget is dead-lettered with its reason.
#[test]
fn a_job_failing_past_its_retry_budget_is_dead_lettered_with_the_reason() {
    let (mut svc, proxy, store) =
        azure_svc(Extra::default().broker("retry_delays_secs = [0.5]\nretry_budget_secs = 3"));
    let input = svc.dir.path().join("o.mp4");
    Clip::new(2).size(32, 24).audio().write(&input);
    store.upload_atomic(&input, &okey("in/o.mp4")).unwrap();
    svc.start();
    proxy.set(Mode::Down);
    svc.submit(&["--input", "in/o.mp4", "--style", "udnie", "--output", "out/o.mp4"]);
    let dead = format!("{}.dead", svc.queue);
    wait_for("the dead letter", 120, || ready(&dead) == 1);
    assert_eq!(dead_letters(&dead).into_iter().map(|(r, _)| r).collect::<Vec<_>>(), ["retry-budget-spent"]);
    assert!(svc.stop());
}

/// A full work disk (a small tmpfs): the job waits (retried, `/readyz` says why) and completes
/// once space is freed; an input larger than the whole disk is refused as `oversized-input`.
#[test]
fn a_full_work_disk_makes_jobs_wait_and_an_input_that_can_never_fit_is_refused() {
    let Some(work) = Tmpfs::mount("4m") else { return };
    let extra = Extra::default().service(&format!("work_dir = \"{}\"\nstaging_factor = 3.0", work.path().display()));
    let mut svc = Svc::with("", extra);
    Clip::new(3).size(64, 48).audio().write(&svc.media().join("in/a.mp4"));
    let size = std::fs::metadata(svc.media().join("in/a.mp4")).unwrap().len();
    std::fs::write(svc.media().join("in/huge.mp4"), vec![1u8; 2 << 20]).unwrap(); // 3 × 2 MiB > 4 MiB
                                                                                  // Fill the disk, leaving less than the job needs.
    let filler = work.path().join("filler");
    let free = free_bytes(work.path());
    std::fs::write(&filler, vec![0u8; (free - size * 2) as usize]).unwrap();
    svc.start();
    svc.submit(&["--input", "in/a.mp4", "--style", "wave", "--output", "out/a.mp4"]);
    svc.submit(&["--input", "in/huge.mp4", "--style", "wave", "--output", "out/huge.mp4"]);
    wait_for("/readyz to report the full disk", 60, || http_get(svc.metrics, "/readyz").contains("disk:"));
    wait_for("a retry for lack of disk", 60, || svc.metric("stylestream_retries_total{cause=\"disk\"}") >= 1.0);
    let dead = format!("{}.dead", svc.queue);
    wait_for("the input that never fits to be refused", 60, || ready(&dead) == 1);
    assert_eq!(dead_letters(&dead).into_iter().map(|(r, _)| r).collect::<Vec<_>>(), ["oversized-input"]);
    assert!(!svc.media().join("out/a.mp4").exists());
    std::fs::remove_file(&filler).unwrap();
    wait_for("the job once the disk has room", 180, || svc.media().join("out/a.mp4.manifest.json").exists());
    assert_eq!(probe_frames(&svc.media().join("out/a.mp4")), 3);
    assert!(svc.stop());
    assert_eq!(ready(&dead), 0);
    assert_eq!(staging_dirs(work.path()), 0);
}

/// The disk fills while the output is being encoded (the check before the download passes): a
/// passing trouble, retried — not `corrupt-input` — and the job completes once there is room.
#[test]
fn a_disk_that_fills_while_encoding_is_waited_out_not_called_corrupt() {
    let Some(work) = Tmpfs::mount("2m") else { return };
    let extra = Extra::default().service(&format!("work_dir = \"{}\"\nstaging_factor = 1.0", work.path().display()));
    let mut svc = Svc::with("", extra);
    // A flat grey input compresses to almost nothing; its styled frames do not.
    let input = svc.media().join("in/grey.mp4");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    let o = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:size=256x144:rate=25",
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
    let filler = work.path().join("filler");
    std::fs::write(&filler, vec![0u8; (free_bytes(work.path()) - 8192) as usize]).unwrap();
    svc.start();
    svc.submit(&["--input", "in/grey.mp4", "--style", "wave", "--output", "out/grey.mp4"]);
    svc.wait("a retry for lack of disk", 120, |s| s.metric("stylestream_retries_total{cause=\"disk\"}") >= 1.0);
    assert!(svc.log_text().contains("cannot write"), "the failure was not the encoder's write: {}", svc.log_text());
    std::fs::remove_file(&filler).unwrap();
    wait_for("the job once the disk has room", 180, || svc.media().join("out/grey.mp4.manifest.json").exists());
    assert_eq!(ready(&format!("{}.dead", svc.queue)), 0, "a full disk was dead-lettered");
    assert!(svc.stop());
}

/// A small tmpfs on a fresh directory, unmounted when dropped; `None` (and a "skipped" line)
/// when not root, since only root may mount one (CI runs as root).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            skip("mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mount = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(mount.status.success(), "mount: {}", String::from_utf8_lossy(&mount.stderr));
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn free_bytes(dir: &Path) -> u64 {
    let o = Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Two instances on one queue with a burst of jobs: each output exactly once, nothing
/// dead-lettered, both instances did work.
#[test]
fn two_instances_on_one_queue_make_each_output_exactly_once() {
    let mut first = Svc::new("", "prefetch = 2\n");
    for i in 0..8 {
        Clip::new(2).size(32, 24).audio().write(&first.media().join(format!("burst/c{i}.mp4")));
    }
    let mut second = Svc::beside(&first, "second");
    first.start();
    second.start();
    for i in 0..8 {
        publish_raw(
            &first.queue,
            format!(
                r#"{{"schema":"stylestream.job/1","input":"burst/c{i}.mp4","style":"wave","output_prefix":"out/"}}"#
            )
            .as_bytes(),
        );
    }
    let out = first.media().join("out");
    wait_for("8 manifests", 300, || count_files(&out, |n| n.ends_with(".manifest.json")) == 8);
    assert!(first.stop() && second.stop());
    assert_eq!(count_files(&out, |n| n.ends_with(".mp4")), 8);
    assert_eq!(count_files(&out, |n| n.ends_with(".partial")), 0);
    assert_eq!(ready(&format!("{}.dead", first.queue)), 0);
    assert_eq!(ready(&first.queue), 0);
    let (a, b) = (
        first.log_text().matches("\"message\":\"job done\"").count(),
        second.log_text().matches("\"message\":\"job done\"").count(),
    );
    assert_eq!(a + b, 8, "each video styled exactly once");
    assert!(a > 0 && b > 0, "one instance did all the work ({a} + {b})");
}

/// The store refuses the service's credentials (an expired SAS token in the credentials file):
/// the service turns unready and holds the job — retried, never dead-lettered — until the file
/// holds a valid token; then the job completes and the service is ready again.
#[test]
fn refused_credentials_hold_jobs_until_a_renewed_sas_token_works() {
    use common::azurite::{account_sas, azurite, create_container, unique_container};
    azurite();
    let container = unique_container();
    create_container(&container);
    let creds_dir = tempfile::tempdir().unwrap();
    let creds = creds_dir.path().join("storage.env");
    let write_creds = |expiry: chrono::DateTime<chrono::Utc>| {
        std::fs::write(
            &creds,
            format!("AZURE_STORAGE_USE_EMULATOR=true\nAZURE_STORAGE_SAS_TOKEN={}\n", account_sas(expiry)),
        )
        .unwrap();
    };
    write_creds(chrono::Utc::now() - chrono::Duration::hours(1));
    let extra = Extra::default().storage(&format!("credentials_file = \"{}\"", creds.display()));
    let mut svc = Svc::with(&format!("az://{container}/media"), extra);
    let vars = vec![("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string())];
    let store =
        stylestream::storage::Store::open_with_vars(&format!("az://{container}/media"), &Default::default(), vars)
            .unwrap();
    let store = stylestream::storage::BlockingStore::new(store).unwrap();
    let input = svc.dir.path().join("c.mp4");
    Clip::new(3).size(64, 48).audio().write(&input);
    store.upload_atomic(&input, &okey("in/c.mp4")).unwrap();
    svc.start();
    svc.submit(&["--input", "in/c.mp4", "--style", "wave", "--output", "out/c.mp4"]);
    wait_for("/readyz to report the refused credentials", 60, || {
        let r = http_get(svc.metrics, "/readyz");
        r.starts_with("HTTP/1.1 503") && r.contains("credentials:")
    });
    wait_for("the job to be held twice", 60, || svc.metric("stylestream_retries_total{cause=\"credentials\"}") >= 2.0);
    assert!(store.head(&okey("out/c.mp4")).unwrap().is_none());
    write_creds(chrono::Utc::now() + chrono::Duration::hours(1));
    wait_for("the job once the token is valid", 180, || {
        store.head(&okey("out/c.mp4.manifest.json")).unwrap().is_some()
    });
    wait_for("/readyz to recover", 30, || http_get(svc.metrics, "/readyz").starts_with("HTTP/1.1 200"));
    assert_eq!(ready(&format!("{}.dead", svc.queue)), 0, "a held job was dead-lettered");
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
    assert!(!svc.log_text().contains("sig="), "a SAS signature reached the log");
}

/// One message naming many objects (an S3 notification with six records) runs at most
/// `service.jobs` jobs at a time: never more staging directories (downloads, encoders) at once.
#[test]
fn a_message_naming_many_objects_runs_at_most_service_jobs_jobs_at_a_time() {
    let extra = Extra::default()
        .service("jobs = 2")
        .storage("notification_source = \"media\"")
        .routes("[[routes]]\nprefix = \"drop/\"\nstyle = \"wave\"\noutput_prefix = \"styled/\"");
    let mut svc = Svc::with("", extra);
    let mut records = Vec::new();
    for i in 0..6 {
        Clip::new(2).size(32, 24).audio().write(&svc.media().join(format!("drop/c{i}.mp4")));
        records.push(format!(r#"{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"media"}},"object":{{"key":"drop/c{i}.mp4"}}}}}}"#));
    }
    svc.start();
    publish_raw(&svc.queue, format!(r#"{{"Records":[{}]}}"#, records.join(",")).as_bytes());
    let out = svc.media().join("styled");
    let mut most = 0;
    wait_for("six outputs", 300, || {
        most = most.max(staging_dirs(svc.work_dir()));
        count_files(&out, |n| n.ends_with(".manifest.json")) == 6
    });
    assert!(most <= 2, "{most} jobs staged at once with service.jobs = 2");
    assert!(most >= 1, "the sampling never saw a job");
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
}
