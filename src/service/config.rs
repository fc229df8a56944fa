//! The service's configuration (config/service.toml): broker, stores, models, routes and the
//! dataflow, checked field by field. Secrets never live here: the broker URL with credentials
//! comes from the environment (`url_env`), store credentials from the environment or a
//! credentials file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{ConfigError, RunConfig};

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
pub struct BrokerConfig {
    /// Environment variable holding the AMQP URL (`amqp://` or `amqps://`, with credentials).
    #[serde(default = "default_url_env")]
    pub url_env: String,
    /// The URL when the variable is unset; must not hold a password.
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Dead-letter exchange and queue (the reason is in the `x-stylestream-reason` header).
    #[serde(default = "default_dead_letter")]
    pub dead_letter: String,
    /// Unacknowledged deliveries this instance holds at once.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Deliveries of one message before the broker dead-letters it (quorum queue delivery
    /// limit: also bounds messages that crash the service every time).
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// Larger messages are dead-lettered unread.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where inputs are read and outputs written: `file:///dir`, `az://container/prefix`,
    /// `s3://bucket/prefix`.
    pub media: String,
    /// Where job logs go (`logs/`): may be another store.
    pub system: String,
    /// Credentials file (KEY=VALUE lines: AZURE_STORAGE_*, AWS_*), read at start.
    pub credentials_file: Option<PathBuf>,
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
    /// Videos styled together in one dataflow.
    pub jobs: usize,
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
}

impl Default for ServiceSection {
    fn default() -> Self {
        Self {
            jobs: 2,
            shutdown_grace_secs: 60.0,
            work_dir: None,
            metrics_addr: None,
            max_input_bytes: 8 << 30,
            max_prefix_frames: 100_000,
            codec: "libx264".into(),
            crf: 18,
            preset: "medium".into(),
        }
    }
}

/// A storage notification rule: objects created under `prefix` are styled with `style` and
/// written under `output_prefix`. With `trigger`, only an object of that name starts a job: on
/// the frames uploaded under its prefix (the reference's trigger file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: String,
    pub style: String,
    pub output_prefix: String,
    /// Name of the trigger object, e.g. `_READY`.
    pub trigger: Option<String>,
    /// Frame rate of triggered frame prefixes (else the prefix's fps.txt).
    pub fps: Option<f64>,
    /// Extension of video outputs (default: the input's, mp4 for frames).
    pub format: Option<String>,
}

fn default_url_env() -> String {
    "STYLESTREAM_AMQP_URL".into()
}
fn default_url() -> String {
    "amqp://127.0.0.1:5672/%2f".into()
}
fn default_queue() -> String {
    "stylestream.jobs".into()
}
fn default_dead_letter() -> String {
    "stylestream.dead".into()
}
fn default_prefetch() -> u16 {
    2
}
fn default_max_deliveries() -> u32 {
    5
}
fn default_max_message_bytes() -> usize {
    64 * 1024
}
fn default_network() -> String {
    "transformnet-tf".into()
}

impl ServiceConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
        let invalid = |reason: String| ConfigError::Invalid { path: path.to_path_buf(), reason };
        let config: Self = toml::from_str(&text).map_err(|e| invalid(e.to_string().trim().replace('\n', " ")))?;
        config.validate().map_err(invalid)?;
        Ok(config)
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
        if has_password(&self.broker.url) {
            problems.push(format!("broker.url holds a password: put the URL in ${} instead", self.broker.url_env));
        }
        if !(self.broker.url.starts_with("amqp://") || self.broker.url.starts_with("amqps://")) {
            problems.push(format!("broker.url = {:?}: expected amqp:// or amqps://", self.broker.url));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.prefix.is_empty() || r.output_prefix.is_empty() {
                problems.push(format!("routes[{i}]: prefix and output_prefix must not be empty"));
            }
            if r.output_prefix.starts_with(&r.prefix) {
                problems.push(format!("routes[{i}]: output_prefix {:?} is inside prefix {:?} (outputs would trigger jobs)", r.output_prefix, r.prefix));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The broker URL: `$url_env`, else `url`.
    pub fn broker_url(&self) -> String {
        std::env::var(&self.broker.url_env).unwrap_or_else(|_| self.broker.url.clone())
    }
}

/// Whether an AMQP URL has a password (`user:pass@`).
fn has_password(url: &str) -> bool {
    url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).is_some_and(|(auth, _)| auth.contains(':'))
}

/// The URL with its password replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_refused_in_the_file() {
        assert_eq!(redact("amqp://u:s3cret@h:5672/%2f"), "amqp://u:***@h:5672/%2f");
        assert_eq!(redact("amqps://h/v"), "amqps://h/v");
        assert!(has_password("amqp://u:p@h"));
        assert!(!has_password("amqp://u@h"));
        assert!(!has_password("amqp://h:5672"));
    }
}
