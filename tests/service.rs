//! `stylestream serve` against the real RabbitMQ on 127.0.0.1:5672 and real stores (local
//! directories and Azurite): jobs end up complete in the store with manifest and logs, poison
//! messages land in the dead-letter queue with their reason, a kill -9 mid-video still gives
//! exactly one output, a burst stays bounded, trigger objects start jobs on stored frames, and no
//! secret reaches a log. Every test uses its own queues, directories and containers.

mod common;

use std::process::Command;
use std::time::Duration;

use common::svc::*;
use common::*;

#[test]
fn a_job_is_styled_into_the_store_acked_and_a_redelivery_does_no_gpu_work() {
    let mut svc = Svc::new("", "");
    let input = svc.media().join("incoming/talk.mp4");
    clip(&input, 6, "64x48");
    svc.start();
    assert!(http_get(svc.metrics, "/healthz").starts_with("HTTP/1.1 200"));
    svc.submit(&["--input", "incoming/talk.mp4", "--style", "udnie", "--output-prefix", "styled/", "--id", "job-1"]);
    let out = svc.media().join("styled/talk.udnie.mp4");
    let manifest = svc.media().join("styled/talk.udnie.mp4.manifest.json");
    wait_for("the manifest", 120, || manifest.exists());
    assert_eq!(probe_frames(&out), 6);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!((m["frames"].as_u64(), m["output_size"].as_u64()), (Some(6), Some(std::fs::metadata(&out).unwrap().len())));
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
    wait_for("the second event to be settled", 60, || http_get(svc.metrics, "/metrics").contains("stylestream_jobs_total{outcome=\"already_done\"} 1"));
    assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), stamp);
    let metrics = http_get(svc.metrics, "/metrics");
    assert!(metrics.contains("stylestream_jobs_total{outcome=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("stylestream_frames_total 6"), "{metrics}");
    assert!(metrics.contains("stylestream_stage_seconds_count{stage=\"style\"} 1"), "{metrics}");

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
fn poison_messages_are_dead_lettered_with_their_reason_while_valid_jobs_complete() {
    let mut svc = Svc::new("", "max_message_bytes = 2048\n");
    clip(&svc.media().join("in/good.mp4"), 3, "64x48");
    std::fs::write(svc.media().join("in/corrupt.mp4"), b"\x00\x00\x00\x18ftypmp42 this is not really a video").unwrap();
    svc.start();
    let job = |input: &str, style: &str| format!(r#"{{"schema":"stylestream.job/1","input":"{input}","style":"{style}","output_prefix":"out/"}}"#);
    publish_raw(&svc.queue, b"{this is not json");
    publish_raw(&svc.queue, br#"{"schema":"stylestream.job/7","input":"in/good.mp4","style":"udnie","output":"x.mp4"}"#);
    publish_raw(&svc.queue, job("in/missing.mp4", "udnie").as_bytes());
    publish_raw(&svc.queue, job("in/corrupt.mp4", "udnie").as_bytes());
    publish_raw(&svc.queue, job("in/good.mp4", "no-such-style").as_bytes());
    publish_raw(&svc.queue, format!(r#"{{"schema":"stylestream.job/1","pad":"{}"}}"#, "x".repeat(4000)).as_bytes());
    publish_raw(&svc.queue, job("../../etc/passwd", "udnie").as_bytes());
    publish_raw(&svc.queue, job("in/good.mp4", "udnie").as_bytes());
    let out = svc.media().join("out/good.udnie.mp4.manifest.json");
    wait_for("the valid job after the poison ones", 180, || out.exists());
    wait_for("seven dead letters", 30, || ready(&format!("{}.dead", svc.queue)) == 7);
    let mut reasons: Vec<String> = dead_letters(&format!("{}.dead", svc.queue)).into_iter().map(|(r, _)| r).collect();
    reasons.sort();
    assert_eq!(reasons, ["corrupt-input", "invalid-key", "malformed-json", "missing-input", "oversized", "unknown-schema", "unknown-style"]);
    assert_eq!(probe_frames(&svc.media().join("out/good.udnie.mp4")), 3);
    assert_eq!(count_files(&svc.media().join("out"), |n| n.contains("corrupt")), 0, "nothing is written for a corrupt input");
    let metrics = http_get(svc.metrics, "/metrics");
    assert!(metrics.contains("stylestream_dead_lettered_total{reason=\"corrupt-input\"} 1"), "{metrics}");
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
    // Each failure is logged once, as an error naming the reason.
    let log = svc.log_text();
    assert_eq!(log.matches("\"reason\":\"missing-input\"").count(), 1, "{log}");
}

#[test]
fn kill_9_mid_video_then_restart_gives_exactly_one_output_identical_to_an_uninterrupted_run() {
    let mut svc = Svc::new("", "");
    let input = svc.media().join("in/long.mp4");
    clip(&input, 30, "64x48");
    svc.start();
    svc.submit(&["--input", "in/long.mp4", "--style", "wave", "--output", "out/long.mp4"]);
    wait_for("the job to start", 60, || svc.log_text().contains("worker GPU ready"));
    std::thread::sleep(Duration::from_millis(1500));
    svc.kill9();
    let out = svc.media().join("out/long.mp4");
    assert!(!out.exists(), "an output appeared although the job was killed");
    svc.start();
    wait_for("the redelivered job", 180, || svc.media().join("out/long.mp4.manifest.json").exists());
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0, "a message was left in the queue");
    let names: Vec<String> = std::fs::read_dir(svc.media().join("out")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "exactly the output and its manifest: {names:?}");
    let alone = svc.dir.path().join("alone.mp4");
    let o = stylestream(&["stylize", input.to_str().unwrap(), "-o", alone.to_str().unwrap(), "--model", "wave", "-q"]);
    assert!(o.status.success());
    assert!(std::fs::read(&alone).unwrap() == std::fs::read(&out).unwrap(), "the output differs from an uninterrupted run");
}

#[test]
fn a_trigger_object_styles_the_frames_uploaded_under_its_prefix() {
    let routes = "---\n[[routes]]\nprefix = \"uploads/\"\nstyle = \"scream\"\noutput_prefix = \"styled/\"\ntrigger = \"_READY\"\nfps = 25\n";
    let mut svc = Svc::new("", routes);
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
    let s3 = |key: &str| format!(r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"media"}},"object":{{"key":"{key}"}}}}}}]}}"#);
    publish_raw(&svc.queue, s3("uploads/shot7/00001.png").as_bytes());
    std::fs::write(frames.join("_READY"), b"").unwrap();
    publish_raw(&svc.queue, s3("uploads/shot7/_READY").as_bytes());
    let out = svc.media().join("styled/shot7.scream.mp4");
    wait_for("the video of the triggered prefix", 120, || svc.media().join("styled/shot7.scream.mp4.manifest.json").exists());
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
    clip(&local, 3, "64x48");
    let vars = vec![("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string())];
    let store = stylestream::storage::Store::open_with_vars(&format!("az://{container}/media"), &Default::default(), vars).unwrap();
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

#[test]
fn a_burst_of_fifty_events_completes_once_each_with_bounded_memory() {
    let mut svc = Svc::new("", "prefetch = 8\n---\n");
    for i in 0..50 {
        clip(&svc.media().join(format!("burst/c{i:02}.mp4")), 2, "32x24");
    }
    svc.start();
    for i in 0..50 {
        let body = format!(r#"{{"schema":"stylestream.job/1","input":"burst/c{i:02}.mp4","style":"wave","output_prefix":"out/"}}"#);
        publish_raw(&svc.queue, body.as_bytes());
    }
    // Two duplicates, as at-least-once delivery may bring.
    publish_raw(&svc.queue, br#"{"schema":"stylestream.job/1","input":"burst/c07.mp4","style":"wave","output_prefix":"out/"}"#);
    publish_raw(&svc.queue, br#"{"schema":"stylestream.job/1","input":"burst/c31.mp4","style":"wave","output_prefix":"out/"}"#);
    let out = svc.media().join("out");
    wait_for("50 manifests", 600, || count_files(&out, |n| n.ends_with(".manifest.json")) == 50);
    wait_for("the queue to drain", 60, || http_get(svc.metrics, "/metrics").contains("stylestream_jobs_total{outcome=\"already_done\"} 2") || ready(&svc.queue) == 0 && svc.log_text().matches("already done").count() >= 2);
    let pid = svc.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status.lines().find(|l| l.starts_with("VmHWM")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    eprintln!("burst of 50 events: peak RSS {peak_kib} KiB");
    assert!(peak_kib < 1_500_000, "peak RSS {peak_kib} KiB");
    assert!(svc.stop());
    assert_eq!(count_files(&out, |n| n.ends_with(".mp4")), 50, "one output per video, no duplicates");
    assert_eq!(count_files(&out, |n| n.ends_with(".partial")), 0);
    assert_eq!(ready(&svc.queue), 0);
    let metrics_frames = svc.log_text().matches("\"message\":\"job done\"").count();
    assert_eq!(metrics_frames, 50, "each video styled exactly once");
}


/// A broker that drops the service's channel in the middle of a job — what RabbitMQ does when
/// a delivery stays unacked past its consumer timeout (30 min by default; RabbitMQ 3.10 has no
/// per-queue setting and checks it about once a minute, so the test closes the connection the
/// same way, at once). The job still commits once; the redelivery is acked without GPU work.
#[test]
fn a_channel_closed_mid_job_like_a_consumer_timeout_still_gives_exactly_one_output() {
    let mut svc = Svc::new("", "");
    clip(&svc.media().join("in/slow.mp4"), 24, "64x48");
    svc.start();
    svc.submit(&["--input", "in/slow.mp4", "--style", "udnie", "--output", "out/slow.mp4"]);
    wait_for("the job to start", 60, || svc.log_text().contains("worker GPU ready"));
    let o = Command::new("rabbitmqctl").args(["close_all_connections", "consumer timeout simulated by a test"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for("the redelivery to be acked as done", 180, || svc.log_text().contains("already done: acked without styling"));
    assert!(svc.stop());
    assert_eq!(ready(&svc.queue), 0);
    let log = svc.log_text();
    assert_eq!(log.matches("\"message\":\"job done\"").count(), 1, "styled more than once: {log}");
    assert!(log.contains("reconnecting"), "{log}");
    assert_eq!(probe_frames(&svc.media().join("out/slow.mp4")), 24);
}

#[test]
fn sigterm_lets_the_job_in_flight_finish_and_without_grace_hands_it_back() {
    // Enough grace: the job completes, is acked, and the service exits cleanly.
    let mut svc = Svc::new("", "");
    clip(&svc.media().join("in/a.mp4"), 16, "64x48");
    svc.start();
    svc.submit(&["--input", "in/a.mp4", "--style", "wave", "--output", "out/a.mp4"]);
    wait_for("the job to start", 60, || svc.log_text().contains("worker GPU ready"));
    let _ = Command::new("kill").args(["-TERM", &svc.child.as_ref().unwrap().id().to_string()]).status();
    assert!(svc.stop(), "no clean exit after SIGTERM");
    assert_eq!(probe_frames(&svc.media().join("out/a.mp4")), 16);
    assert_eq!(ready(&svc.queue), 0);
    drop(svc);

    // No grace: the job is interrupted, nothing is published, the message goes back.
    let mut svc = Svc::new("", "---\nshutdown_grace_secs = 0\n");
    clip(&svc.media().join("in/b.mp4"), 40, "64x48");
    svc.start();
    svc.submit(&["--input", "in/b.mp4", "--style", "wave", "--output", "out/b.mp4"]);
    wait_for("the job to start", 60, || svc.log_text().contains("worker GPU ready"));
    let _ = Command::new("kill").args(["-TERM", &svc.child.as_ref().unwrap().id().to_string()]).status();
    assert!(svc.stop(), "no clean exit after SIGTERM");
    assert!(!svc.media().join("out/b.mp4").exists(), "an interrupted job published an output");
    assert_eq!(ready(&svc.queue), 1, "the interrupted job's message was not handed back");
}
