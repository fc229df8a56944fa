//! `stylestream serve` against the real RabbitMQ on 127.0.0.1:5672 and real stores (local
//! directories and Azurite): jobs end up complete in the store with manifest and logs, poison
//! messages land in the dead-letter queue with their reason, a kill -9 mid-video still gives
//! exactly one output, a burst stays bounded, trigger objects start jobs on stored frames, and no
//! secret reaches a log. Every test uses its own queues, directories and containers.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

fn clip(path: &Path, frames: u32, size: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let src = format!("testsrc2=size={size}:rate=25");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &src, "-f", "lavfi", "-i", "sine=sample_rate=44100"])
        .args(["-frames:v", &frames.to_string(), "-t", &format!("{}", frames as f64 / 25.0), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A service under test: its directories, config and process; killed when dropped.
struct Svc {
    dir: tempfile::TempDir,
    queue: String,
    config: PathBuf,
    metrics: u16,
    child: Option<Child>,
    log: PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Svc {
    fn new(media: &str, extra: &str) -> Self {
        // One service at a time: lavapipe shares the machine's cores, and parallel services
        // would only slow each other past their deadlines.
        let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let queue = unique("ss-test");
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let media = if media.is_empty() { format!("file://{}/media", dir.path().display()) } else { media.to_string() };
        let config = dir.path().join("service.toml");
        std::fs::write(
            &config,
            format!(
                "[broker]\nqueue = \"{queue}\"\ndead_letter = \"{queue}.dead\"\n{extra_broker}\n\
                 [storage]\nmedia = \"{media}\"\nsystem = \"file://{d}/system\"\n\n\
                 [models]\ndir = \"{models}\"\n\n[service]\njobs = 4\n{grace}work_dir = \"{d}\"\n{extra_service}",
                grace = if extra.contains("shutdown_grace_secs") { "" } else { "shutdown_grace_secs = 30\n" },
                d = dir.path().display(),
                models = models_dir().display(),
                extra_broker = extra.split("---").next().unwrap_or(""),
                extra_service = extra.split("---").nth(1).unwrap_or(""),
            ),
        )
        .unwrap();
        let log = dir.path().join("serve.log");
        Self { dir, queue, config, metrics, child: None, log, _serial: guard }
    }

    fn media(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = stylestream_command(&["serve", "--config", self.config.to_str().unwrap(), "--metrics-addr", &format!("127.0.0.1:{}", self.metrics), "--log-format", "json"])
            .env("STYLESTREAM_AMQP_URL", AMQP)
            .env("AZURE_STORAGE_USE_EMULATOR", "true")
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for("/readyz", 60, || http_get(self.metrics, "/readyz").starts_with("HTTP/1.1 200"));
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit; returns whether it exited successfully.
    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn submit(&self, args: &[&str]) {
        let mut all = vec!["submit", "--config", self.config.to_str().unwrap()];
        all.extend(args);
        let o = stylestream_command(&all).env("STYLESTREAM_AMQP_URL", AMQP).output().unwrap();
        assert!(o.status.success(), "submit: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        self.kill9();
        let rt = runtime();
        let _ = rt.block_on(async {
            let ch = channel().await;
            for q in [self.queue.clone(), format!("{}.dead", self.queue)] {
                let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
            }
            let _ = ch.exchange_delete(format!("{}.dead", self.queue).as_str().into(), Default::default()).await;
        });
    }
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn channel() -> lapin::Channel {
    let conn = Connection::connect(AMQP, ConnectionProperties::default()).await.unwrap();
    conn.create_channel().await.unwrap()
}

/// Publishes a raw body to the job queue.
fn publish_raw(queue: &str, body: &[u8]) {
    runtime().block_on(async {
        let ch = channel().await;
        ch.confirm_select(Default::default()).await.unwrap();
        let c = ch.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, BasicProperties::default()).await.unwrap().await.unwrap();
        assert!(c.is_ack());
    });
}

/// Messages ready in a queue.
fn ready(queue: &str) -> u32 {
    runtime().block_on(async {
        let ch = channel().await;
        // Passive declares must repeat the arguments of quorum queues: read via a purge-free get count.
        match ch.queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await {
            Ok(q) => q.message_count(),
            Err(_) => u32::MAX,
        }
    })
}

/// Takes every message of the dead-letter queue: (reason header, body).
fn dead_letters(queue: &str) -> Vec<(String, String)> {
    runtime().block_on(async {
        let ch = channel().await;
        let mut out = Vec::new();
        while let Ok(Some(m)) = ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await {
            let reason = m
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-stylestream-reason").cloned())
                .map(|v| match v {
                    AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            out.push((reason, String::from_utf8_lossy(&m.delivery.data).into_owned()));
        }
        let _ = ch.queue_purge(queue.into(), QueuePurgeOptions::default()).await;
        out
    })
}

fn count_files(dir: &Path, pred: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir).map(|r| r.flatten().filter(|e| pred(&e.file_name().to_string_lossy())).count()).unwrap_or(0)
}

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
