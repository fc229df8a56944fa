//! Deployment configuration: typed TOML (config/*.toml), checked field by field, merged under
//! the command line (a flag given on the command line wins).

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod service;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A run configuration (see config/*.toml for examples).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Worker threads per process, each with its own GPU device.
    pub workers: Option<usize>,
    /// Adapter indices (as `stylestream adapters` lists them) for the workers of a process:
    /// worker i uses gpus[i mod len]. Default: worker i uses adapter i mod adapters.
    pub gpus: Option<Vec<usize>>,
    /// Frames between the decoder and the sink, whatever the number of workers.
    pub max_frames_in_flight: Option<usize>,
    /// Consecutive frames sent to one worker together.
    pub frames_per_batch: Option<u64>,
    /// Retries of a failed frame, each on another worker.
    pub retries: Option<u32>,
    /// GPU precision of the convolution weights: "f32", "f16" or "auto" (the default).
    pub precision: Option<crate::model::gpu::Precision>,
    /// How the kernel set is chosen: "auto" (the default: fixed on CPU adapters, timed on GPUs),
    /// "timed", or one set ("subgroup", "subgroup-unfused", "plain", "plain-unfused").
    pub kernels: Option<crate::model::gpu::KernelChoice>,
    /// Several processes: the addresses of all of them, in process order.
    pub cluster: Option<ClusterConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port` of every process, in process order.
    pub hosts: Vec<String>,
    /// This process's index; usually given on the command line (`--process I`) instead.
    pub process: Option<usize>,
}

/// What the command line sets over a run configuration (each `None`: the file's, else the
/// default).
#[derive(Debug, Clone, Default)]
pub struct RunOverrides {
    pub workers: Option<usize>,
    pub max_frames_in_flight: Option<usize>,
    pub frames_per_batch: Option<u64>,
    pub retries: Option<u32>,
    pub precision: Option<crate::model::gpu::Precision>,
    pub kernels: Option<crate::model::gpu::KernelChoice>,
    /// Test hook: frame `.0` fails its first `.1` attempts.
    pub fail_frame: Option<(u64, u32)>,
    /// First adapter of the workers.
    pub adapter: Option<usize>,
}

/// Reads a TOML configuration and checks it: errors name the file, and the field.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
    let invalid = |reason: String| ConfigError::Invalid { path: path.to_path_buf(), reason };
    let config: T = toml::from_str(&text).map_err(|e| invalid(e.to_string().trim().replace('\n', " ")))?;
    validate(&config).map_err(invalid)?;
    Ok(config)
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_toml(path, Self::validate)
    }

    /// The engine's options: `o` over this configuration over the defaults (1 worker, 4 frames
    /// in flight, batches of 1, 2 retries, auto precision); `cluster` as already resolved.
    pub fn resolve(
        &self,
        o: &RunOverrides,
        cluster: Option<crate::dataflow::Cluster>,
    ) -> crate::dataflow::DataflowOptions {
        crate::dataflow::DataflowOptions {
            workers: o.workers.or(self.workers).unwrap_or(1).max(1),
            cluster,
            max_frames_in_flight: o.max_frames_in_flight.or(self.max_frames_in_flight).unwrap_or(4).max(1),
            gpu: crate::model::gpu::GpuOptions {
                adapter: o.adapter,
                precision: o.precision.or(self.precision).unwrap_or_default(),
                kernels: o.kernels.or(self.kernels).unwrap_or_default(),
                ..Default::default()
            },
            frames_per_batch: o.frames_per_batch.or(self.frames_per_batch).unwrap_or(1).max(1),
            retries: o.retries.or(self.retries).unwrap_or(2),
            fail_frame: o.fail_frame,
            gpus: self.gpus.clone(),
        }
    }

    /// Every problem, each with its field and value.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.workers == Some(0) {
            problems.push("workers = 0: at least 1".to_string());
        }
        if self.max_frames_in_flight == Some(0) {
            problems.push("max_frames_in_flight = 0: at least 1".to_string());
        }
        if self.frames_per_batch == Some(0) {
            problems.push("frames_per_batch = 0: at least 1".to_string());
        }
        if self.gpus.as_ref().is_some_and(|g| g.is_empty()) {
            problems.push("gpus = []: list at least one adapter, or leave it out".to_string());
        }
        if let Some(c) = &self.cluster {
            if c.hosts.len() < 2 {
                problems.push(format!("cluster.hosts has {} entries: a cluster needs at least 2", c.hosts.len()));
            }
            for h in &c.hosts {
                if h.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                    problems.push(format!("cluster.hosts: `{h}` is not host:port"));
                }
            }
            if let Some(p) = c.process.filter(|&p| p >= c.hosts.len()) {
                problems.push(format!("cluster.process = {p}: not below the {} hosts", c.hosts.len()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let c: RunConfig = toml::from_str("workers = 0\ngpus = []\n[cluster]\nhosts = ['a']\n").unwrap();
        let e = c.validate().unwrap_err();
        for want in ["workers = 0", "gpus = []", "cluster.hosts has 1", "`a` is not host:port"] {
            assert!(e.contains(want), "{e}");
        }
        assert!(toml::from_str::<RunConfig>("wrokers = 2").is_err(), "unknown fields are refused");
        let c: RunConfig = toml::from_str("precision = \"f16\"").unwrap();
        assert_eq!(c.precision, Some(crate::model::gpu::Precision::F16));
        assert!(toml::from_str::<RunConfig>("precision = \"f8\"").is_err(), "an unknown precision is refused");
    }
}
