//! The commands: each parses nothing (the CLI did), builds the jobs its user asked for,
//! submits them to the one engine, and reports. The only top of the crate: nothing below
//! imports it.

pub mod batch;
pub mod bench;
pub mod bench_video;
pub mod cancel;
pub mod models;
pub mod serve;
pub mod stylize;
pub mod submit;

use std::sync::Arc;

use crate::cli::{ClusterArgs, ModelArgs, RunArgs};
use crate::dataflow::PipelineError;
use crate::job::JobError;
use crate::media::MediaError;
use crate::model::gpu::GpuError;
use crate::model::{ModelError, NetworkDescription, Weights};

/// Everything that can end a command, each with the thing that is wrong named. The errors of
/// the layers below are boxed: a command's error is small to pass around, whatever they hold.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Model(Box<ModelError>),
    #[error(transparent)]
    Gpu(Box<GpuError>),
    #[error(transparent)]
    Media(Box<MediaError>),
    #[error(transparent)]
    Pipeline(Box<PipelineError>),
    #[error(transparent)]
    Config(Box<crate::config::ConfigError>),
    #[error(transparent)]
    Service(Box<serve::ServiceError>),
    #[error(transparent)]
    Zoo(Box<crate::model::zoo::ZooError>),
    #[error(transparent)]
    Job(Box<JobError>),
    #[error(transparent)]
    Store(Box<crate::storage::StoreError>),
    #[error("{0}")]
    Usage(String),
}

/// `From` each layer's error, boxed.
macro_rules! app_error_from {
    ($($variant:ident($error:ty)),* $(,)?) => {
        $(impl From<$error> for AppError {
            fn from(e: $error) -> Self {
                AppError::$variant(Box::new(e))
            }
        })*
    };
}

app_error_from!(
    Model(ModelError),
    Gpu(GpuError),
    Media(MediaError),
    Pipeline(PipelineError),
    Config(crate::config::ConfigError),
    Service(serve::ServiceError),
    Zoo(crate::model::zoo::ZooError),
    Job(JobError),
    Store(crate::storage::StoreError),
);

/// `stylestream adapters`: the GPUs wgpu sees, one per line, numbered as `--adapter` takes them.
pub fn adapters() -> Result<(), AppError> {
    let adapters = crate::model::gpu::GpuContext::adapters();
    if adapters.is_empty() {
        eprintln!("no GPU adapters found");
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("{i}: {a} [{}]", a.driver);
    }
    Ok(())
}

/// An error as the one line a command prints: wgpu and others nest multi-line causes into their
/// messages.
pub fn error_line(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let parts: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    format!("error: {}", parts.join(" | "))
}

/// The description and checked weights named on the command line (a path, or a name in
/// `$STYLESTREAM_MODELS_DIR`). An `.onnx` model carries its own description (its graph);
/// `--network` is then ignored.
pub fn load_model(args: &ModelArgs) -> Result<(Arc<NetworkDescription>, Arc<Weights>), AppError> {
    let m = crate::model::load::load(&args.model, crate::model::load::env_dir().as_deref(), &args.network, None)?;
    Ok((m.desc, m.weights))
}

/// The broker settings of the service configuration at `path` (queue names, limits), or the
/// defaults: what `submit` and `cancel` publish with.
pub fn broker_config(path: Option<&std::path::Path>) -> Result<crate::ingress::broker::BrokerConfig, AppError> {
    match path {
        Some(p) => Ok(crate::config::service::ServiceConfig::load(p)?.broker),
        None => toml::from_str("").map_err(|e: toml::de::Error| AppError::Usage(e.to_string())),
    }
}

/// The model named on the command line, as a job's style.
pub fn load_style(args: &ModelArgs) -> Result<crate::job::Style, AppError> {
    let (desc, weights) = load_model(args)?;
    Ok(crate::job::Style { name: args.model.clone(), desc, weights })
}

/// Refuses cluster hosts that resolve to a public address: timely's cluster transport has no
/// authentication or encryption, so it belongs on a private network or a tunnel.
fn refuse_public_hosts(hosts: &[String]) -> Result<(), AppError> {
    use std::net::ToSocketAddrs;
    for host in hosts {
        let addrs = host
            .to_socket_addrs()
            .map_err(|e| AppError::Usage(format!("cluster host {host}: cannot resolve it: {e}")))?;
        if let Some(public) = addrs.map(|a| a.ip()).find(|ip| is_public(*ip)) {
            return Err(AppError::Usage(format!(
                "cluster host {host} resolves to the public address {public}: the cluster transport is unauthenticated and \
                 unencrypted; use private addresses or a tunnel, or pass --allow-public-cluster"
            )));
        }
    }
    Ok(())
}

/// Whether `ip` is reachable from the internet at large: not loopback, private, link-local,
/// shared (carrier-grade NAT), unique-local or unspecified.
fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || shared)
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(std::net::IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || unique_local || link_local)
        }
    }
}

/// How the dataflow runs: the command line over the config file over the defaults.
pub(crate) fn dataflow_options(
    run: &RunArgs,
    cluster: Option<&ClusterArgs>,
    adapter: Option<usize>,
) -> Result<crate::dataflow::DataflowOptions, AppError> {
    let file = match &run.config {
        Some(p) => crate::config::RunConfig::load(p)?,
        None => crate::config::RunConfig::default(),
    };
    let usage = |m: String| AppError::Usage(m);
    // Cluster: --processes with --hostfile, else the config's [cluster].
    let none = ClusterArgs { processes: None, process: None, hostfile: None, allow_public_cluster: false };
    let args = cluster.unwrap_or(&none);
    let hosts: Option<Vec<String>> = match (&args.hostfile, &file.cluster) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| MediaError::Read { path: path.clone(), source: e })?;
            Some(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect(),
            )
        }
        (None, Some(c)) => Some(c.hosts.clone()),
        (None, None) => None,
    };
    let processes = args.processes.unwrap_or_else(|| hosts.as_ref().map_or(1, Vec::len));
    let cluster = if processes <= 1 {
        None
    } else {
        let hosts = hosts.ok_or_else(|| {
            usage("--processes needs --hostfile (one host:port per line) or a config with [cluster]".into())
        })?;
        if hosts.len() < processes {
            return Err(usage(format!("{} addresses for {processes} processes", hosts.len())));
        }
        let process = args.process.or(file.cluster.as_ref().and_then(|c| c.process)).unwrap_or(0);
        if process >= processes {
            return Err(usage(format!("--process {process} is not below --processes {processes}")));
        }
        let addresses = hosts[..processes].to_vec();
        if !args.allow_public_cluster {
            refuse_public_hosts(&addresses)?;
        }
        Some(crate::dataflow::Cluster { process, addresses })
    };
    let overrides = crate::config::RunOverrides {
        workers: run.workers,
        max_frames_in_flight: run.max_frames_in_flight,
        frames_per_batch: run.frames_per_batch,
        retries: run.retries,
        precision: run.precision,
        kernels: run.kernels,
        fail_frame: run.fail_frame,
        adapter,
    };
    Ok(file.resolve(&overrides, cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_loopback_and_link_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.3.4",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860::8888", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(refuse_public_hosts(&["127.0.0.1:7000".into(), "localhost:7001".into()]).is_ok());
        let e = refuse_public_hosts(&["127.0.0.1:7000".into(), "8.8.8.8:7001".into()]).unwrap_err().to_string();
        assert!(e.contains("8.8.8.8:7001") && e.contains("--allow-public-cluster"), "{e}");
    }
}
