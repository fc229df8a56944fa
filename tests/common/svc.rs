//! A `stylestream serve` under test and the broker helpers its tests use: its own queues,
//! directories and config per test, one service at a time per test binary, deadlines on every
//! wait.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// Extra lines for each section of a test service's config.
#[derive(Default, Clone)]
pub struct Extra {
    pub broker: String,
    pub storage: String,
    pub service: String,
    pub routes: String,
}

impl Extra {
    pub fn broker(mut self, s: &str) -> Self {
        self.broker.push_str(s);
        self.broker.push('\n');
        self
    }
    pub fn storage(mut self, s: &str) -> Self {
        self.storage.push_str(s);
        self.storage.push('\n');
        self
    }
    pub fn service(mut self, s: &str) -> Self {
        self.service.push_str(s);
        self.service.push('\n');
        self
    }
    pub fn routes(mut self, s: &str) -> Self {
        self.routes.push_str(s);
        self.routes.push('\n');
        self
    }
}

/// A service under test: its directories, config and process; killed when dropped.
pub struct Svc {
    pub dir: tempfile::TempDir,
    pub queue: String,
    pub config: PathBuf,
    pub metrics: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Environment for the service process (beyond the broker URL and Azurite's flag).
    pub env: Vec<(String, String)>,
    /// Work directory (default: the test directory).
    work_dir: PathBuf,
    _serial: Option<std::sync::MutexGuard<'static, ()>>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Svc {
    /// `extra`: broker lines, then optionally `---` and service lines, `---` storage lines.
    pub fn new(media: &str, extra: &str) -> Self {
        let mut parts = extra.split("---");
        let e = Extra::default()
            .broker(parts.next().unwrap_or(""))
            .service(parts.next().unwrap_or(""))
            .storage(parts.next().unwrap_or(""));
        Self::with(media, e)
    }

    pub fn with(media: &str, extra: Extra) -> Self {
        // One service at a time: lavapipe shares the machine's cores, and parallel services
        // would only slow each other past their deadlines.
        let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let work_dir = dir.path().to_path_buf();
        let mut svc = Self {
            dir,
            queue: unique("ss-test"),
            config: PathBuf::new(),
            metrics: 0,
            child: None,
            log: PathBuf::new(),
            env: Vec::new(),
            work_dir,
            _serial: Some(guard),
        };
        svc.configure(media, &extra);
        svc
    }

    /// A second instance beside `first`: same queue, media and system stores, its own work
    /// directory, log and metrics port (it takes no test lock: `first` holds it).
    pub fn beside(first: &Svc, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work_dir = dir.path().join("work");
        std::fs::create_dir_all(&work_dir).unwrap();
        let text = std::fs::read_to_string(&first.config).unwrap().replace(
            &format!("work_dir = \"{}\"", first.work_dir.display()),
            &format!("work_dir = \"{}\"", work_dir.display()),
        );
        let config = dir.path().join("service.toml");
        std::fs::write(&config, text).unwrap();
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.path().join(format!("{name}.log"));
        Self {
            dir,
            queue: first.queue.clone(),
            config,
            metrics,
            child: None,
            log,
            env: first.env.clone(),
            work_dir,
            _serial: None,
        }
    }

    fn configure(&mut self, media: &str, extra: &Extra) {
        let d = self.dir.path().display().to_string();
        let queue = &self.queue;
        self.metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let media = if media.is_empty() { format!("file://{d}/media") } else { media.to_string() };
        let mut broker = extra.broker.clone();
        if !broker.contains("retry_delays_secs") {
            broker.push_str("retry_delays_secs = [1.0]\n");
        }
        let mut service = extra.service.clone();
        if !service.contains("shutdown_grace_secs") {
            service.push_str("shutdown_grace_secs = 30\n");
        }
        if !service.contains("work_dir") {
            service.push_str(&format!("work_dir = \"{}\"\n", self.work_dir.display()));
        }
        if !service.contains("staging_margin_bytes") {
            service.push_str("staging_margin_bytes = 0\n");
        }
        if !service.lines().any(|l| l.trim_start().starts_with("jobs ")) {
            service.push_str("jobs = 4\n");
        }
        if !service.contains("heartbeat_secs") {
            service.push_str("heartbeat_secs = 0.5\n");
        }
        self.config = self.dir.path().join("service.toml");
        // The system store: a local directory unless the extra storage lines name one.
        let system = if extra.storage.lines().any(|l| l.trim_start().starts_with("system ")) {
            String::new()
        } else {
            format!("system = \"file://{d}/system\"\n")
        };
        std::fs::write(
            &self.config,
            format!(
                "[broker]\nqueue = \"{queue}\"\ndead_letter = \"{queue}.dead\"\n{broker}\n\
                 [storage]\nmedia = \"{media}\"\n{system}{storage}\n\
                 [models]\ndir = \"{models}\"\n\n[service]\n{service}\n{routes}",
                models = models_dir().display(),
                storage = extra.storage,
                routes = extra.routes,
            ),
        )
        .unwrap();
        self.log = self.dir.path().join("serve.log");
    }

    pub fn media(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Starts the service and waits until it consumes (`/readyz`).
    pub fn start(&mut self) {
        self.spawn();
        wait_for("/readyz", 60, || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("the service exited ({status}) before it was ready:\n{}", self.log_text());
            }
            http_get(self.metrics, "/readyz").starts_with("HTTP/1.1 200")
        });
    }

    /// Starts the service without waiting for it.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = stylestream_command(&[
            "serve",
            "--config",
            self.config.to_str().unwrap(),
            "--metrics-addr",
            &format!("127.0.0.1:{}", self.metrics),
            "--log-format",
            "json",
        ]);
        cmd.env("STYLESTREAM_AMQP_URL", AMQP).env("AZURE_STORAGE_USE_EMULATOR", "true").stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Like [`wait_for`], with the end of the service's log in the failure message.
    pub fn wait(&self, what: &str, secs: u64, mut done: impl FnMut(&Svc) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(self) {
            if Instant::now() >= deadline {
                let log = self.log_text();
                let tail: String = log.chars().skip(log.chars().count().saturating_sub(4000)).collect();
                panic!("timed out after {secs} s waiting for {what}; the service's log ends:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Frames job `id` has written so far, from `/jobs`; `None` while it is not in progress.
    pub fn frames_done(&self, id: &str) -> Option<u64> {
        let answer = http_get(self.metrics, "/jobs");
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b)?;
        let jobs: serde_json::Value = serde_json::from_str(body).ok()?;
        jobs["in_progress"].as_array()?.iter().find(|j| j["id"] == id).and_then(|j| j["frames_done"].as_u64())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The service's metrics text.
    pub fn metrics(&self) -> String {
        http_get(self.metrics, "/metrics")
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// SIGTERM, then wait for the exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
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

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn submit(&self, args: &[&str]) {
        let mut all = vec!["submit", "--config", self.config.to_str().unwrap()];
        all.extend(args);
        let o = stylestream_command(&all).env("STYLESTREAM_AMQP_URL", AMQP).output().unwrap();
        assert!(o.status.success(), "submit: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        self.kill9();
        if self._serial.is_none() {
            return; // a second instance: the first one cleans up the queues
        }
        let retries = stylestream::config::service::ServiceConfig::load(&self.config)
            .map(|c| stylestream::ingress::broker::retry_queues(&c.broker))
            .unwrap_or_default();
        let rt = runtime();
        rt.block_on(async {
            let ch = channel().await;
            for q in [self.queue.clone(), format!("{}.dead", self.queue)].into_iter().chain(retries) {
                let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
            }
            let _ = ch.exchange_delete(format!("{}.dead", self.queue).as_str().into(), Default::default()).await;
        });
    }
}

pub fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub async fn channel() -> lapin::Channel {
    let conn = Connection::connect(AMQP, ConnectionProperties::default()).await.unwrap();
    conn.create_channel().await.unwrap()
}

/// Publishes a raw body to the job queue.
pub fn publish_raw(queue: &str, body: &[u8]) {
    runtime().block_on(async {
        let ch = channel().await;
        ch.confirm_select(Default::default()).await.unwrap();
        let c = ch
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, BasicProperties::default())
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(c.is_ack());
    });
}

/// Messages ready in a queue.
pub fn ready(queue: &str) -> u32 {
    runtime().block_on(async {
        let ch = channel().await;
        // Passive declares must repeat the arguments of quorum queues: read via a purge-free get count.
        match ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
        {
            Ok(q) => q.message_count(),
            Err(_) => u32::MAX,
        }
    })
}

/// Takes every message of the dead-letter queue: (reason header, body).
pub fn dead_letters(queue: &str) -> Vec<(String, String)> {
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

/// Takes every message of a queue: the `reason` of each one's first `x-death` entry (set by
/// the broker when it dead-letters a message itself).
pub fn death_reasons(queue: &str) -> Vec<String> {
    runtime().block_on(async {
        let ch = channel().await;
        let mut out = Vec::new();
        while let Ok(Some(m)) = ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await {
            let headers = m.delivery.properties.headers().as_ref().map(|h| h.inner().clone()).unwrap_or_default();
            let reason = match headers.get("x-death") {
                Some(AMQPValue::FieldArray(a)) => a.as_slice().first().and_then(|d| match d {
                    AMQPValue::FieldTable(t) => t.inner().get("reason").map(|r| match r {
                        AMQPValue::LongString(s) => s.to_string(),
                        other => format!("{other:?}"),
                    }),
                    _ => None,
                }),
                _ => None,
            };
            out.push(reason.unwrap_or_default());
        }
        out
    })
}

pub fn count_files(dir: &Path, pred: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir).map(|r| r.flatten().filter(|e| pred(&e.file_name().to_string_lossy())).count()).unwrap_or(0)
}

/// An S3 `ObjectCreated:Put` notification of `key` in `bucket` (one record).
pub fn s3_created(bucket: &str, key: &str) -> String {
    format!(
        r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{bucket}"}},"object":{{"key":"{key}"}}}}}}]}}"#
    )
}
