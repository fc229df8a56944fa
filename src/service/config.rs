//! The service's configuration (config/service.toml): broker, stores, models, routes and the
//! dataflow, checked field by field. Secrets never live here: the broker URL with credentials
//! comes from the environment (`url_env`), store credentials from the environment or a
//! credentials file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{ConfigError, RunConfig};
use crate::ingress::broker::{has_password, BrokerConfig};
use crate::ingress::event::Route;

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
