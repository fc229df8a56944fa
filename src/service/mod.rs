//! `stylestream serve`: a long-running service that takes trigger events from RabbitMQ, reads
//! and writes media through object storage, and styles videos in the frame dataflow.
//!
//! ```text
//! RabbitMQ ──deliveries──> parse (poison → dead-letter queue, reason in a header)
//!    ^                        │ requests (≤ service.jobs at a time)
//!    │ ack after commit       v
//!    └──────────────── jobs thread: done? → ack without GPU work
//!                             stage input → dataflow → upload (temp key → final) → manifest → logs
//! ```
//! At-least-once delivery, exactly-once in effect: an output appears only complete, its manifest
//! records the input's etag and the model's hash, and a message is acked only after both are
//! committed; a redelivered message whose output is complete is acked without styling it again.

pub mod config;
pub mod job;
pub mod owner;
pub mod staging;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::app::{dataflow_options_from, AppError};
use crate::cli::{RunArgs, ServeArgs, SubmitArgs};
use crate::storage::{BlockingStore, StoreOptions};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::progress::ProgressMode;
use crate::ingress::broker::{self, Broker};
use crate::ingress::event::{self, JobRequest};
use config::ServiceConfig;
use job::{Ctx, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    #[error("{0}")]
    Setup(String),
}

static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// SIGTERM / Ctrl-C: stop consuming, let in-flight jobs finish within the grace period.
pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::SeqCst);
}

fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::SeqCst)
}

/// One round for the jobs thread, and where its outcomes go.
type Round = (Vec<(String, JobRequest)>, tokio::sync::oneshot::Sender<Vec<Outcome>>);

pub fn serve(args: &ServeArgs) -> Result<(), AppError> {
    let config = ServiceConfig::load(&args.config)?;
    let metrics = Metrics::new();
    if let Some(addr) = args.metrics_addr.clone().or_else(|| config.service.metrics_addr.clone()) {
        let bound = metrics.serve(&addr).map_err(|e| AppError::Usage(format!("metrics address {addr}: {e}")))?;
        tracing::info!(%bound, "metrics on /metrics, health on /healthz and /readyz");
    }
    let instance_id = owner::new_instance_id(config.service.instance_id.as_deref());
    let store_options = StoreOptions {
        credentials_file: config.storage.credentials_file.clone(),
        owner: Some(instance_id.clone()),
        ..config.storage.options.clone()
    };
    let media = BlockingStore::open(&config.storage.media, &store_options).map_err(ServiceError::from)?;
    let system = BlockingStore::open(&config.storage.system, &store_options).map_err(ServiceError::from)?;
    let run = RunArgs {
        progress: ProgressMode::None,
        quiet: true,
        max_frames_in_flight: None,
        workers: None,
        frames_per_batch: None,
        retries: None,
        config: None,
        precision: None,
        fail_frame: None,
    };
    let opts = dataflow_options_from(&run, &config.dataflow, None, None)?;
    let heartbeat_store = system.store().clone();
    let ctx = Ctx::new(config.clone(), media, system, opts, metrics.clone(), instance_id.clone())?;

    // The jobs thread owns the stores (blocking) and runs the dataflow; the async side owns the
    // broker.
    let (rounds, inbox) = std::sync::mpsc::channel::<Round>();
    let jobs = std::thread::Builder::new()
        .name("jobs".into())
        .spawn(move || {
            let mut ctx = ctx;
            for (requests, reply) in inbox {
                let _ = reply.send(job::process(&mut ctx, requests));
            }
        })
        .map_err(|e| AppError::Usage(format!("starting the jobs thread: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AppError::Usage(format!("starting the async runtime: {e}")))?;
    tracing::info!(instance = %instance_id, "instance id (owner of its upload temporaries)");
    let beat = rt.spawn(owner::heartbeat(heartbeat_store, instance_id, Duration::from_secs_f64(config.service.heartbeat_secs)));
    let result = rt.block_on(consume_forever(&config, &metrics, rounds));
    beat.abort();
    // A jobs thread stuck in a hung request was given up on: do not wait for it.
    let waited = Instant::now();
    while !jobs.is_finished() && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if jobs.is_finished() {
        let _ = jobs.join();
    }
    result.map_err(AppError::from)
}

/// Connects, consumes until shutdown, and reconnects (with backoff) when the broker goes away or
/// closes the channel.
async fn consume_forever(
    config: &ServiceConfig,
    metrics: &Metrics,
    rounds: std::sync::mpsc::Sender<Round>,
) -> Result<(), ServiceError> {
    let url = config.broker_url();
    let mut backoff = Duration::from_millis(500);
    let mut first = true;
    while !shutting_down() {
        let broker = match Broker::connect(&url, &config.broker).await {
            Ok(b) => b,
            Err(e) if first => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "broker unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        first = false;
        backoff = Duration::from_millis(500);
        let result = consume(&broker, config, metrics, &rounds).await;
        metrics.set_ready(false);
        broker.close().await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "lost the broker channel; reconnecting");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Consumes on one channel until shutdown or until the channel fails.
async fn consume(broker: &Broker, config: &ServiceConfig, metrics: &Metrics, rounds: &std::sync::mpsc::Sender<Round>) -> Result<(), ServiceError> {
    let tag = format!("stylestream-{}", std::process::id());
    let mut consumer = broker.consume(&tag).await?;
    metrics.set_ready(true);
    let mut last_depth = Instant::now() - Duration::from_secs(10);
    loop {
        if shutting_down() {
            let _ = broker.cancel(&tag).await;
            return Ok(());
        }
        if last_depth.elapsed() > Duration::from_secs(2) {
            if let Ok(n) = broker.depth().await {
                metrics.set("stylestream_queue_depth", &[], n as f64);
            }
            last_depth = Instant::now();
        }
        let next = tokio::select! {
            d = consumer.next() => d,
            _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
        };
        let first = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(broker::BrokerError::Op { what: "consuming".into(), reason: e.to_string() }.into()),
            None => return Err(broker::BrokerError::Op { what: "consuming".into(), reason: "the consumer was cancelled".into() }.into()),
        };
        let mut batch = vec![first];
        while batch.len() < config.service.jobs {
            match tokio::time::timeout(Duration::from_millis(50), consumer.next()).await {
                Ok(Some(Ok(d))) => batch.push(d),
                _ => break,
            }
        }
        handle(broker, config, metrics, rounds, batch).await?;
    }
}

/// Parses a batch of deliveries, runs their jobs in rounds of at most `service.jobs` (a message
/// may name many objects: jobs are bounded, not messages), and settles every delivery.
async fn handle(
    broker: &Broker,
    config: &ServiceConfig,
    metrics: &Metrics,
    rounds: &std::sync::mpsc::Sender<Round>,
    deliveries: Vec<lapin::message::Delivery>,
) -> Result<(), ServiceError> {
    let source = config.notification_source();
    let mut requests = Vec::new();
    let mut owners = Vec::new(); // delivery index of each request
    let mut live = Vec::new(); // deliveries with requests
    for d in deliveries {
        metrics.inc("stylestream_messages_total", &[], 1.0);
        match event::parse(&d.data, config.broker.max_message_bytes, &config.routes, &source) {
            Err(p) => dead_letter(broker, metrics, &d, p.code(), &p.to_string()).await?,
            Ok(jobs) if jobs.is_empty() => {
                tracing::debug!("event names nothing to do (a frame waiting for its trigger?)");
                broker::ack(&d).await?;
            }
            Ok(jobs) => {
                let base = message_id(&d);
                let n = jobs.len();
                for (i, j) in jobs.into_iter().enumerate() {
                    let id = j.id.clone().unwrap_or_else(|| if n == 1 { base.clone() } else { format!("{base}-{i}") });
                    requests.push((id, j));
                    owners.push(live.len());
                }
                live.push(d);
            }
        }
    }
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(requests.len());
    let mut pending = requests.into_iter().peekable();
    while pending.peek().is_some() {
        let round: Vec<(String, JobRequest)> = pending.by_ref().take(config.service.jobs.max(1)).collect();
        if shutting_down() {
            outcomes.extend(round.iter().map(|_| Outcome::Interrupted));
            continue;
        }
        outcomes.extend(run_round(config, rounds, round).await?);
    }
    // Settle each delivery by the worst outcome of its requests.
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (i, d) in live.iter().enumerate() {
        let mine: Vec<&Outcome> = outcomes.iter().zip(&owners).filter(|(_, o)| **o == i).map(|(x, _)| x).collect();
        for o in &mine {
            record(metrics, o);
        }
        if let Some(Outcome::Poison { code, reason }) = mine.iter().find(|o| matches!(o, Outcome::Poison { .. })) {
            dead_letter(broker, metrics, d, code, reason).await?;
        } else if mine.iter().any(|o| matches!(o, Outcome::Interrupted)) {
            // Shutdown: back to the queue at once, for another instance.
            broker::nack_requeue(d).await?;
        } else if let Some(o) = mine.iter().find(|o| matches!(o, Outcome::Transient { .. } | Outcome::Held { .. })) {
            let state = broker::RetryState::of(d);
            let (cause, reason) = match o {
                Outcome::Held { reason } => ("credentials", reason.as_str()),
                Outcome::Transient { cause, reason } => (cause.label(), reason.as_str()),
                _ => ("other", ""),
            };
            // Credentials do not spend the retry budget: the job waits for them.
            let first_failure = if cause == "credentials" { state.first_failure_unix_ms } else { Some(state.first_failure_unix_ms.unwrap_or(now_ms)) };
            let budget = config.broker.retry_budget_secs;
            if cause != "credentials" && state.failing_for_secs(now_ms) > budget {
                let why = format!("still failing after {:.0} s of retries (retry_budget_secs = {budget}): {reason}", state.failing_for_secs(now_ms));
                dead_letter(broker, metrics, d, "retry-budget-spent", &why).await?;
            } else {
                let delay = broker.retry_later(d, state.attempts, first_failure, reason).await?;
                metrics.inc("stylestream_retries_total", &[("cause", cause)], 1.0);
                tracing::warn!(cause, retry_in = ?delay, attempt = state.attempts + 1, error = %reason, "job handed to the retry queue");
                broker::ack(d).await?;
            }
        } else {
            broker::ack(d).await?;
        }
    }
    Ok(())
}

/// Sends one round to the jobs thread and waits for its outcomes. On shutdown the round gets
/// the grace period, then is interrupted; a round still stuck 10 s later (a hung store request)
/// is given up: its jobs are handed back unpublished and the service exits without it.
async fn run_round(config: &ServiceConfig, rounds: &std::sync::mpsc::Sender<Round>, round: Vec<(String, JobRequest)>) -> Result<Vec<Outcome>, ServiceError> {
    let n = round.len();
    let (reply, outcomes) = tokio::sync::oneshot::channel();
    rounds.send((round, reply)).map_err(|_| ServiceError::Setup("the jobs thread stopped".into()))?;
    let grace = Duration::from_secs_f64(config.service.shutdown_grace_secs.max(0.0));
    let deadline = async move {
        while !shutting_down() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(grace = ?grace, "shutting down: finishing the jobs in flight");
        tokio::time::sleep(grace).await;
        tracing::warn!("grace period over: handing the unfinished jobs back");
        crate::pipeline::interrupt();
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    tokio::select! {
        o = outcomes => o.map_err(|_| ServiceError::Setup("the jobs thread stopped".into())),
        _ = deadline => {
            tracing::warn!(jobs = n, "jobs still busy after the grace period: handed back unpublished");
            Ok(vec![Outcome::Interrupted; n])
        }
    }
}

fn record(metrics: &Metrics, o: &Outcome) {
    let outcome = match o {
        Outcome::Done { output, frames } => {
            tracing::info!(%output, frames, "job done");
            "succeeded"
        }
        Outcome::AlreadyDone { output } => {
            tracing::info!(%output, "already done: acked without styling");
            "already_done"
        }
        Outcome::Poison { .. } => "failed",
        Outcome::Transient { .. } | Outcome::Held { .. } => "retried",
        Outcome::Interrupted => "interrupted",
    };
    metrics.inc("stylestream_jobs_total", &[("outcome", outcome)], 1.0);
}

async fn dead_letter(broker: &Broker, metrics: &Metrics, d: &lapin::message::Delivery, code: &str, reason: &str) -> Result<(), ServiceError> {
    tracing::error!(reason = code, error = %reason, "message dead-lettered");
    broker.dead_letter(&d.data, code, reason).await?;
    metrics.inc("stylestream_dead_lettered_total", &[("reason", code)], 1.0);
    broker::ack(d).await?;
    Ok(())
}

/// The message's id, else a hash of its body (stable across redeliveries).
fn message_id(d: &lapin::message::Delivery) -> String {
    if let Some(id) = d.properties.message_id() {
        return id.to_string();
    }
    let h = Sha256::digest(&d.data);
    format!("msg-{}", h.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
}

/// `stylestream submit`: publishes one job event with publisher confirms.
pub fn submit(args: &SubmitArgs) -> Result<(), AppError> {
    let config = match &args.config {
        Some(p) => ServiceConfig::load(p)?.broker,
        None => toml::from_str::<broker::BrokerConfig>("").map_err(|e| AppError::Usage(e.to_string()))?,
    };
    let url = std::env::var(&config.url_env).unwrap_or_else(|_| config.url.clone());
    let mut event = serde_json::json!({ "schema": event::SCHEMA, "style": args.style });
    let obj = event.as_object_mut().ok_or_else(|| AppError::Usage("internal: event".into()))?;
    match (&args.input, &args.input_prefix) {
        (Some(i), None) => obj.insert("input".into(), i.clone().into()),
        (None, Some(p)) => obj.insert("input_prefix".into(), p.clone().into()),
        _ => return Err(AppError::Usage("give --input KEY or --input-prefix PREFIX".into())),
    };
    match (&args.output, &args.output_prefix) {
        (Some(o), None) => obj.insert("output".into(), o.clone().into()),
        (None, Some(p)) => obj.insert("output_prefix".into(), p.clone().into()),
        _ => return Err(AppError::Usage("give --output KEY or --output-prefix PREFIX".into())),
    };
    if let Some(id) = &args.id {
        obj.insert("id".into(), id.clone().into());
    }
    if let Some(fps) = args.fps {
        obj.insert("fps".into(), fps.into());
    }
    let body = serde_json::to_vec(&event).map_err(|e| AppError::Usage(e.to_string()))?;
    // Checked as the service will check it.
    event::parse(&body, config.max_message_bytes, &[], &event::Source::default()).map_err(|e| AppError::Usage(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| AppError::Usage(e.to_string()))?;
    rt.block_on(broker::submit(&url, &config, &body)).map_err(ServiceError::from)?;
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
