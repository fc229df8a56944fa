//! The service's configuration (config/service.toml): broker, stores, models, routes and the
//! dataflow, checked field by field. Secrets never live here: the broker URL with credentials
//! comes from the environment (`url_env`), store credentials from the environment or a
//! credentials file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, RunConfig};
use crate::ingress::broker::{has_password, BrokerConfig};
use crate::ingress::event::{self, Route, Source};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub broker: BrokerConfig,
    pub storage: StorageConfig,
    pub models: ModelsConfig,
    #[serde(default)]
    pub service: ServiceSection,
    /// Workers, GPUs, batching, retries of the frame dataflow.
    #[serde(default)]
    pub dataflow: RunConfig,
    /// Storage notifications (Event Grid, S3) and trigger objects → jobs.
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where inputs are read and outputs written: `file:///dir`, `az://container/prefix`,
    /// `s3://bucket/prefix`.
    pub media: String,
    /// Where job logs go (`logs/`): may be another store.
    pub system: String,
    /// Credentials file (KEY=VALUE lines: AZURE_STORAGE_*, AWS_*), read at start and again
    /// whenever the store refuses the credentials.
    pub credentials_file: Option<PathBuf>,
    /// The bucket (S3) or container (Azure) that storage notifications must name. Defaults to
    /// the media store's own for `az://` and `s3://`; a local media store accepts notifications
    /// only when this is set.
    pub notification_source: Option<String>,
    /// The Azure storage account that Event Grid notifications must come from (their `topic`);
    /// unchecked when unset.
    pub notification_account: Option<String>,
    /// Retries, timeouts and upload parts of store requests (`[storage.options]`).
    #[serde(default)]
    pub options: crate::storage::StoreOptions,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Directory of style models: style `udnie` is `<dir>/udnie.safetensors`.
    pub dir: PathBuf,
    #[serde(default = "default_network")]
    pub network: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSection {
    /// Jobs in progress at once (each joins the running dataflow as soon as a slot is free).
    pub jobs: usize,
    /// A job running longer than this is stopped, publishes nothing and is dead-lettered as
    /// `timed-out` (0: no limit).
    pub job_timeout_secs: f64,
    /// `/healthz` fails when jobs are in progress and none has styled a frame for this long.
    pub stall_secs: f64,
    /// Environment variable holding the bearer token of the status page, `GET /jobs` and
    /// `DELETE /jobs/<id>` (unset: those are open read-only, and cancelling over HTTP is off).
    pub http_token_env: String,
    /// On SIGTERM: how long in-flight jobs may take before they are handed back.
    pub shutdown_grace_secs: f64,
    /// Local staging directory for inputs and outputs (default: the system temp dir).
    pub work_dir: Option<PathBuf>,
    /// `host:port` for /metrics, /healthz, /readyz (overridden by --metrics-addr).
    pub metrics_addr: Option<String>,
    /// Largest input object accepted, bytes.
    pub max_input_bytes: u64,
    /// Most frames in a stored frame prefix.
    pub max_prefix_frames: usize,
    /// Encoder defaults for outputs (events may override crf and preset).
    pub codec: String,
    pub crf: u32,
    pub preset: String,
    /// Quality of JPEG frames written back to a frames prefix (1-100; events may override).
    pub jpeg_quality: u8,
    /// Local disk a job needs, as a multiple of its input's size (input + output + room), plus
    /// 64 MiB. An input whose need exceeds the work directory's whole file system is refused
    /// (`oversized-input`); one that does not fit in the free space now waits in the retry queue.
    pub staging_factor: f64,
    /// Free space kept beyond a job's need, bytes.
    pub staging_margin_bytes: u64,
    /// This instance's id in the names of its upload temporaries and its heartbeat object
    /// (default: `<host>-<pid>-<random>`, new at every start).
    pub instance_id: Option<String>,
    /// How often the instance writes its heartbeat (`instances/<id>.json` in the system store);
    /// an instance silent for three intervals is taken as dead and its temporaries are removed.
    pub heartbeat_secs: f64,
    /// Limits on stored media, checked from their headers before decoding and again while
    /// decoding (`[service.media_limits]`: max_width_px, max_height_px, max_frames,
    /// max_duration_secs).
    pub media_limits: crate::media::policy::MediaLimits,
    /// A video longer than this is cut at keyframes (a frame prefix: by frame ranges) into
    /// segment jobs that any replica of the service can take, stitched into one output when
    /// all are done (0: every video is styled whole by one instance).
    pub segment_secs: f64,
}

impl Default for ServiceSection {
    fn default() -> Self {
        Self {
            jobs: 2,
            job_timeout_secs: 6.0 * 3600.0,
            stall_secs: 600.0,
            http_token_env: "STYLESTREAM_HTTP_TOKEN".into(),
            shutdown_grace_secs: 60.0,
            work_dir: None,
            metrics_addr: None,
            max_input_bytes: 8 << 30,
            max_prefix_frames: 100_000,
            codec: "libx264".into(),
            crf: 18,
            preset: "medium".into(),
            jpeg_quality: 90,
            staging_factor: 3.0,
            staging_margin_bytes: 64 << 20,
            instance_id: None,
            heartbeat_secs: 15.0,
            media_limits: Default::default(),
            segment_secs: 60.0,
        }
    }
}

fn default_network() -> String {
    "transformnet-tf".into()
}

impl ServiceConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        crate::config::load_toml(path, Self::validate)
    }

    /// Every problem, each with its field and value.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Err(p) = self.dataflow.validate() {
            problems.push(format!("[dataflow] {p}"));
        }
        if self.broker.prefetch == 0 {
            problems.push("broker.prefetch = 0: at least 1".into());
        }
        if self.broker.max_deliveries == 0 {
            problems.push("broker.max_deliveries = 0: at least 1".into());
        }
        if self.service.jobs == 0 {
            problems.push("service.jobs = 0: at least 1".into());
        }
        if !(self.service.job_timeout_secs >= 0.0 && self.service.job_timeout_secs.is_finite()) {
            problems
                .push(format!("service.job_timeout_secs = {}: 0 (no limit) or more", self.service.job_timeout_secs));
        }
        if !(self.service.stall_secs > 0.0 && self.service.stall_secs.is_finite()) {
            problems.push(format!("service.stall_secs = {}: more than 0", self.service.stall_secs));
        }
        if has_password(&self.broker.url) {
            problems.push(format!("broker.url holds a password: put the URL in ${} instead", self.broker.url_env));
        }
        if !(self.broker.url.starts_with("amqp://") || self.broker.url.starts_with("amqps://")) {
            problems.push(format!("broker.url = {:?}: expected amqp:// or amqps://", self.broker.url));
        }
        for p in self.service.media_limits.problems() {
            problems.push(format!("service.media_limits.{p}"));
        }
        if !(self.service.heartbeat_secs.is_finite() && self.service.heartbeat_secs >= 0.1) {
            problems.push(format!("service.heartbeat_secs = {}: at least 0.1", self.service.heartbeat_secs));
        }
        if !(self.service.segment_secs.is_finite() && self.service.segment_secs >= 0.0) {
            problems.push(format!("service.segment_secs = {}: 0 (never cut) or more", self.service.segment_secs));
        }
        if !(self.service.staging_factor.is_finite() && self.service.staging_factor >= 1.0) {
            problems.push(format!("service.staging_factor = {}: at least 1", self.service.staging_factor));
        }
        if !event::PRESETS.contains(&self.service.preset.as_str()) {
            problems.push(format!("service.preset = {:?}: one of {}", self.service.preset, event::PRESETS.join(", ")));
        }
        if !(1..=100).contains(&self.service.jpeg_quality) {
            problems.push(format!("service.jpeg_quality = {}: 1 to 100", self.service.jpeg_quality));
        }
        if self.service.crf > event::MAX_CRF {
            problems.push(format!("service.crf = {}: at most {}", self.service.crf, event::MAX_CRF));
        }
        if self.broker.retry_delays_secs.is_empty()
            || self.broker.retry_delays_secs.iter().any(|d| !(d.is_finite() && *d > 0.0))
        {
            problems.push(format!(
                "broker.retry_delays_secs = {:?}: one or more delays above 0",
                self.broker.retry_delays_secs
            ));
        }
        if !(self.broker.retry_budget_secs.is_finite() && self.broker.retry_budget_secs >= 0.0) {
            problems.push(format!("broker.retry_budget_secs = {}: 0 or more", self.broker.retry_budget_secs));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let frames_out = r.output_frames_prefix.as_deref().unwrap_or_default();
            if r.prefix.is_empty() || (r.output_prefix.is_empty() == frames_out.is_empty()) {
                problems.push(format!(
                    "routes[{i}]: give a prefix and exactly one of output_prefix and output_frames_prefix"
                ));
            }
            if !frames_out.is_empty() && r.trigger.is_none() {
                problems.push(format!("routes[{i}]: output_frames_prefix needs a trigger (frames go back as frames when their trigger arrives)"));
            }
            if !frames_out.is_empty() && frames_out.starts_with(&r.prefix) {
                problems.push(format!("routes[{i}]: output_frames_prefix {frames_out:?} is inside prefix {:?} (outputs would trigger jobs)", r.prefix));
            }
            if let Err(e) = event::check_style(&r.style) {
                problems.push(format!("routes[{i}].style: {e}"));
            }
            if let Some(Err(e)) = r.format.as_deref().map(event::map_format) {
                problems.push(format!("routes[{i}].format: {e}"));
            }
            if let Some(t) = &r.trigger {
                if t.is_empty() || t.contains('/') || t.chars().any(char::is_control) {
                    problems.push(format!("routes[{i}].trigger = {t:?}: one object name, no /"));
                }
            }
            if !r.output_prefix.is_empty() && r.output_prefix.starts_with(&r.prefix) {
                problems.push(format!(
                    "routes[{i}]: output_prefix {:?} is inside prefix {:?} (outputs would trigger jobs)",
                    r.output_prefix, r.prefix
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Where storage notifications must come from: the configured source, else the media
    /// store's bucket or container; its root prefix.
    pub fn notification_source(&self) -> Source {
        let (bucket, prefix) = match self.storage.media.split_once("://") {
            Some(("az" | "azure" | "s3", rest)) => {
                let (b, p) = rest.split_once('/').unwrap_or((rest, ""));
                (Some(b.to_string()), p.trim_matches('/').to_string())
            }
            _ => (None, String::new()),
        };
        Source {
            bucket: self.storage.notification_source.clone().or(bucket),
            account: self.storage.notification_account.clone(),
            prefix,
        }
    }

    /// The broker URL: `$url_env`, else `url`.
    pub fn broker_url(&self) -> String {
        std::env::var(&self.broker.url_env).unwrap_or_else(|_| self.broker.url.clone())
    }
}
