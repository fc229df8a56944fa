//! `stylestream serve`: a long-running service that takes trigger events from RabbitMQ, reads
//! and writes media through object storage, and styles them as jobs in the one engine.
//!
//! ```text
//! RabbitMQ ──deliveries──> parse (poison → dead-letter queue, reason in a header)
//!    ^                        │ requests (≤ service.jobs at a time)          consumer.rs
//!    │ ack after commit       v
//!    └──────────────── a thread per job: request → job (checked) → job::run   jobs.rs
//!                      (done? stage → engine → commit → manifest) → log, metrics → Outcome
//! ```
//! At-least-once delivery, exactly-once in effect: an output appears only complete, its manifest
//! records the input's etag and the model's hash, and a message is acked only after both are
//! committed; a redelivered message whose output is complete is acked without styling it again.

mod consumer;
mod jobs;

use std::sync::Arc;
use std::time::Duration;

use crate::config::service::ServiceConfig;
use crate::dataflow::Engine;
use crate::ingress::broker;
use crate::stop::StopToken;
use crate::storage::{owner, BlockingStore, StoreOptions};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{serve_http, HttpOptions, JobBoard};
use consumer::Jobs;
use jobs::Ctx;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Dataflow(#[from] crate::dataflow::PipelineError),
    #[error("{0}")]
    Setup(String),
}

/// Where the service reports what it does: metrics, and the job board of the status page.
pub struct Telemetry {
    pub metrics: Metrics,
    pub board: JobBoard,
}

/// Runs the service with the configuration at `config_path` until `shutdown` (SIGTERM, Ctrl-C)
/// and the drain that follows; `metrics_addr` overrides `service.metrics_addr`.
pub fn serve(
    config_path: &std::path::Path,
    metrics_addr: Option<String>,
    shutdown: &StopToken,
) -> Result<(), ServiceError> {
    let config = ServiceConfig::load(config_path)?;
    let metrics = Metrics::new().map_err(|e| ServiceError::Setup(format!("metrics: {e}")))?;
    let tel = Telemetry { metrics, board: JobBoard::new() };
    if let Some(addr) = metrics_addr.or_else(|| config.service.metrics_addr.clone()) {
        // A secret: from the environment only.
        let token = std::env::var(&config.service.http_token_env).ok().filter(|t| !t.trim().is_empty());
        let options = HttpOptions { addr: addr.clone(), token, stall_secs: config.service.stall_secs };
        let bound = serve_http(options, tel.metrics.clone(), tel.board.clone())
            .map_err(|e| ServiceError::Setup(format!("HTTP address {addr}: {e}")))?;
        tracing::info!(%bound, "status page on /, jobs on /jobs, metrics on /metrics, health on /healthz and /readyz");
    }
    let instance_id = owner::new_instance_id(config.service.instance_id.as_deref());
    let store_options = StoreOptions {
        credentials_file: config.storage.credentials_file.clone(),
        owner: Some(instance_id.clone()),
        ..config.storage.options.clone()
    };
    let media = Arc::new(BlockingStore::open(&config.storage.media, &store_options)?);
    let system = Arc::new(BlockingStore::open(&config.storage.system, &store_options)?);
    let opts = config.dataflow.resolve(&crate::config::RunOverrides::default(), None);
    let heartbeat_store = system.store();
    // One engine for the service's lifetime: its workers and GPU devices stay warm. Jobs are
    // stopped one by one (grace period), never all at once by the engine.
    let engine = Arc::new(Engine::start(opts.clone(), StopToken::new())?);
    let ctx = Ctx::new(config.clone(), media, system, engine.clone(), &opts, &tel, instance_id.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Setup(format!("starting the async runtime: {e}")))?;
    tracing::info!(instance = %instance_id, "instance id (owner of its upload temporaries)");
    let board = tel.board.clone();
    let parts: owner::HeartbeatExtra = Arc::new(move || serde_json::to_value(board.parts()).unwrap_or_default());
    let interval = Duration::from_secs_f64(config.service.heartbeat_secs);
    let beat = rt.spawn(owner::heartbeat(heartbeat_store, instance_id, interval, parts));
    let ctx = Arc::new(ctx);
    // Cut videos, as every instance's status page shows them: progress across instances.
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (poll_ctx, poll_on, board) = (ctx.clone(), watching.clone(), tel.board.clone());
    let poller = std::thread::Builder::new()
        .name("videos".into())
        .spawn(move || {
            while poll_on.load(std::sync::atomic::Ordering::SeqCst) {
                board.set_videos(poll_ctx.videos());
                let until = std::time::Instant::now() + interval.max(Duration::from_millis(500));
                while std::time::Instant::now() < until && poll_on.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .map_err(|e| ServiceError::Setup(format!("starting the video progress thread: {e}")))?;
    let mut jobs = Jobs::new(ctx, engine.clone());
    jobs.cancel_over_http(&tel.board);
    let result = rt.block_on(consumer::consume_forever(&config, &tel, &mut jobs, shutdown));
    beat.abort();
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = poller.join();
    let hung = jobs.any_active();
    drop(jobs);
    match Arc::try_unwrap(engine) {
        // Every job ended: stop the workers.
        Ok(engine) if !hung => engine.shutdown(),
        // A job thread stuck in a hung request was given up on: do not wait for it.
        Ok(engine) => std::mem::forget(engine),
        Err(_) => {}
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}
