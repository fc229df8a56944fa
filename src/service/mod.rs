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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::storage::{BlockingStore, StoreOptions};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{serve_http, HttpOptions, JobBoard};
use crate::dataflow::Engine;
use crate::ingress::broker::{self, Broker, Delivery};
use crate::stop::{StopReason, StopToken};
use crate::ingress::event::{self, JobRequest};
use config::ServiceConfig;
use job::{Ctx, Outcome};

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

/// A delivery whose jobs are waiting or running; settled once all have ended.
struct Message {
    delivery: Delivery,
    pending: usize,
    outcomes: Vec<Outcome>,
}

/// A job waiting for a free slot.
struct Waiting {
    msg: u64,
    id: String,
    request: JobRequest,
    since: Instant,
}

/// A job in progress on a thread of its own.
struct Active {
    msg: u64,
    id: String,
    stop: StopToken,
    started: Instant,
}

/// The consumer's state; it outlives broker connections (jobs keep running while the service
/// reconnects).
struct Jobs {
    ctx: Arc<Ctx>,
    engine: Arc<Engine>,
    messages: HashMap<u64, Message>,
    next_msg: u64,
    waiting: VecDeque<Waiting>,
    active: HashMap<u64, Active>,
    next_job: u64,
    /// Job outcomes, from the job threads.
    done_tx: tokio::sync::mpsc::UnboundedSender<(u64, Outcome)>,
    done_rx: tokio::sync::mpsc::UnboundedReceiver<(u64, Outcome)>,
    /// Ids cancelled before their job arrived (kept an hour).
    cancelled: HashMap<String, Instant>,
    /// SIGTERM seen at this time: no new jobs, the running ones get the grace period.
    draining_since: Option<Instant>,
    /// Ids of the jobs waiting or running (what `DELETE /jobs/<id>` may cancel).
    known: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Cancellations asked for over HTTP.
    cancel_rx: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    /// GPU devices opened, as last reported to the metrics.
    devices_seen: u64,
}

/// Where the service reports what it does: metrics, and the job board of the status page.
pub struct Telemetry {
    pub metrics: Metrics,
    pub board: JobBoard,
}

/// Runs the service with the configuration at `config_path` until `shutdown` (SIGTERM, Ctrl-C)
/// and the drain that follows; `metrics_addr` overrides `service.metrics_addr`.
pub fn serve(config_path: &std::path::Path, metrics_addr: Option<String>, shutdown: &StopToken) -> Result<(), ServiceError> {
    let config = ServiceConfig::load(config_path)?;
    let tel = Telemetry { metrics: Metrics::new(), board: JobBoard::new() };
    if let Some(addr) = metrics_addr.or_else(|| config.service.metrics_addr.clone()) {
        // A secret: from the environment only.
        let token = std::env::var(&config.service.http_token_env).ok().filter(|t| !t.trim().is_empty());
        let options = HttpOptions { addr: addr.clone(), token, stall_secs: config.service.stall_secs };
        let bound = serve_http(options, tel.metrics.clone(), tel.board.clone()).map_err(|e| ServiceError::Setup(format!("HTTP address {addr}: {e}")))?;
        tracing::info!(%bound, "status page on /, jobs on /jobs, metrics on /metrics, health on /healthz and /readyz");
    }
    let metrics = tel.metrics.clone();
    let instance_id = owner::new_instance_id(config.service.instance_id.as_deref());
    let store_options = StoreOptions {
        credentials_file: config.storage.credentials_file.clone(),
        owner: Some(instance_id.clone()),
        ..config.storage.options.clone()
    };
    let media = BlockingStore::open(&config.storage.media, &store_options).map_err(ServiceError::from)?;
    let system = BlockingStore::open(&config.storage.system, &store_options).map_err(ServiceError::from)?;
    let opts = config.dataflow.resolve(&crate::config::RunOverrides::default(), None);
    let heartbeat_store = system.store();
    let ctx = Arc::new(Ctx::new(config.clone(), media, system, opts.clone(), metrics.clone(), tel.board.clone(), instance_id.clone())?);
    // One engine for the service's lifetime: its workers and GPU devices stay warm. Jobs are
    // stopped one by one (grace period), never all at once by the engine.
    let engine = Arc::new(Engine::start(opts, StopToken::new())?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Setup(format!("starting the async runtime: {e}")))?;
    tracing::info!(instance = %instance_id, "instance id (owner of its upload temporaries)");
    let beat = rt.spawn(owner::heartbeat(heartbeat_store, instance_id, Duration::from_secs_f64(config.service.heartbeat_secs)));
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut jobs = Jobs {
        ctx,
        engine: engine.clone(),
        messages: HashMap::new(),
        next_msg: 0,
        waiting: VecDeque::new(),
        active: HashMap::new(),
        next_job: 0,
        done_tx,
        done_rx,
        cancelled: HashMap::new(),
        draining_since: None,
        known: Default::default(),
        cancel_rx: None,
        devices_seen: 0,
    };
    let (cancel_tx, cancel_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let known = jobs.known.clone();
    tel.board.set_canceller(Arc::new(move |id: &str| known.lock().map(|k| k.contains(id)).unwrap_or(false) && cancel_tx.send(id.to_string()).is_ok()));
    jobs.cancel_rx = Some(cancel_rx);
    let result = rt.block_on(consume_forever(&config, &tel, &mut jobs, shutdown));
    beat.abort();
    let hung = !jobs.active.is_empty();
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

/// Connects, consumes until shutdown, and reconnects (with backoff) when the broker goes away or
/// closes the channel. Jobs in progress keep running while it reconnects.
async fn consume_forever(config: &ServiceConfig, tel: &Telemetry, jobs: &mut Jobs, shutdown: &StopToken) -> Result<(), ServiceError> {
    let url = config.broker_url();
    let mut backoff = Duration::from_millis(500);
    let mut first = true;
    loop {
        if jobs.draining_since.is_some() && jobs.active.is_empty() {
            break;
        }
        let broker = match Broker::connect(&url, &config.broker).await {
            Ok(b) => b,
            Err(e) if first => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "broker unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                if shutdown.is_stopped() && jobs.draining_since.is_none() {
                    jobs.draining_since = Some(Instant::now());
                }
                jobs.give_up_if_hung(config);
                continue;
            }
        };
        first = false;
        backoff = Duration::from_millis(500);
        let result = consume(&broker, config, tel, jobs, shutdown).await;
        tel.metrics.set_ready(false);
        broker.close().await;
        match result {
            Ok(()) => break,
            Err(e) => tracing::warn!(error = %e, "lost the broker channel; reconnecting"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// One `select!` over deliveries, control messages, job outcomes and a clock (timeouts,
/// shutdown, metrics); never waits on styling. Returns `Ok` once drained after shutdown, `Err`
/// when the channel fails.
async fn consume(broker: &Broker, config: &ServiceConfig, tel: &Telemetry, jobs: &mut Jobs, shutdown: &StopToken) -> Result<(), ServiceError> {
    let tag = format!("stylestream-{}", std::process::id());
    let mut deliveries = if jobs.draining_since.is_none() { Some(broker.consume(&tag).await?) } else { None };
    let mut control = broker.control(&format!("{tag}-control")).await?;
    tel.metrics.set_ready(true);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_depth = Instant::now() - Duration::from_secs(10);
    loop {
        jobs.start_waiting(config, tel);
        if jobs.draining_since.is_some() && jobs.active.is_empty() && jobs.waiting.is_empty() {
            jobs.settle_ready(broker, config, tel).await;
            return Ok(());
        }
        // Bounded local backlog: deliveries wait in the broker once `jobs` are waiting here.
        let room = jobs.waiting.len() < config.service.jobs.max(1);
        tokio::select! {
            d = next_delivery(&mut deliveries), if room && deliveries.is_some() => {
                match d {
                    Some(Ok(d)) => jobs.admit(broker, config, tel, d).await?,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(broker::BrokerError::Op { what: "consuming".into(), reason: "the consumer was cancelled".into() }.into()),
                }
            }
            c = control.next() => match c {
                Some(Ok(c)) => jobs.control(broker, config, tel, c.data()).await,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(broker::BrokerError::Op { what: "consuming control messages".into(), reason: "the consumer was cancelled".into() }.into()),
            },
            Some(id) = next_cancel(&mut jobs.cancel_rx) => {
                jobs.cancel(&id);
                jobs.settle_ready(broker, config, tel).await;
            }
            Some((job, outcome)) = jobs.done_rx.recv() => {
                jobs.ended(job, outcome, tel);
                jobs.settle_ready(broker, config, tel).await;
            }
            _ = tick.tick() => {
                if shutdown.is_stopped() && jobs.draining_since.is_none() {
                    tracing::info!(grace_secs = config.service.shutdown_grace_secs, running = jobs.active.len(), "shutting down: no new jobs; finishing the jobs in progress");
                    jobs.draining_since = Some(Instant::now());
                    if deliveries.take().is_some() {
                        let _ = broker.cancel(&tag).await;
                    }
                    // Not started: straight back to the queue.
                    for w in std::mem::take(&mut jobs.waiting) {
                        jobs.record_outcome(w.msg, Outcome::Interrupted);
                    }
                    jobs.settle_ready(broker, config, tel).await;
                }
                jobs.police(config);
                if jobs.give_up_if_hung(config) {
                    for (_, m) in jobs.messages.drain() {
                        let _ = m.delivery.nack_requeue().await;
                    }
                    tracing::warn!("jobs still busy after the grace period: handed back unpublished");
                    return Ok(());
                }
                if last_depth.elapsed() > Duration::from_secs(2) {
                    if let Ok(n) = broker.depth().await {
                        tel.metrics.set("stylestream_queue_depth", &[], n as f64);
                    }
                    last_depth = Instant::now();
                }
                tel.metrics.set("stylestream_jobs_in_flight", &[], jobs.active.len() as f64);
                let lag = jobs.waiting.front().map_or(0.0, |w| w.since.elapsed().as_secs_f64());
                tel.metrics.set("stylestream_queue_lag_seconds", &[], lag);
                let opened = crate::model::gpu::devices_opened();
                if opened > jobs.devices_seen {
                    tel.metrics.inc("stylestream_gpu_device_opens_total", &[], (opened - jobs.devices_seen) as f64);
                    jobs.devices_seen = opened;
                }
                tel.board.set_engine_alive(jobs.engine.is_alive());
            }
        }
    }
}

/// The next cancellation asked for over HTTP; never, without a channel.
async fn next_cancel(rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The next job delivery; never, when not consuming (draining).
async fn next_delivery(d: &mut Option<broker::Deliveries>) -> Option<Result<Delivery, broker::BrokerError>> {
    match d {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

impl Jobs {
    /// Parses a delivery into its jobs; poison is dead-lettered and empty events acked at once.
    async fn admit(&mut self, broker: &Broker, config: &ServiceConfig, tel: &Telemetry, d: Delivery) -> Result<(), ServiceError> {
        tel.metrics.inc("stylestream_messages_total", &[], 1.0);
        if event::is_control(d.data()) {
            // On the job queue by mistake: apply it here, and pass it on to every instance.
            self.control(broker, config, tel, d.data()).await;
            let _ = broker.publish_control(d.data()).await;
            d.ack().await?;
            return Ok(());
        }
        let source = config.notification_source();
        match event::parse(d.data(), config.broker.max_message_bytes, &config.routes, &source) {
            Err(p) => dead_letter(broker, tel, &d, p.code(), &p.to_string()).await?,
            Ok(requests) if requests.is_empty() => {
                tracing::debug!("event names nothing to do (a frame waiting for its trigger?)");
                d.ack().await?;
            }
            Ok(requests) => {
                let base = message_id(&d);
                let n = requests.len();
                let msg = self.next_msg;
                self.next_msg += 1;
                // Lag counts from publication when the publisher stamped it.
                let waited = d.published_unix_secs().and_then(|t| {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
                    Some(Duration::from_secs(now.saturating_sub(t)))
                });
                let since = waited.and_then(|w| Instant::now().checked_sub(w)).unwrap_or_else(Instant::now);
                self.messages.insert(msg, Message { delivery: d, pending: n, outcomes: Vec::new() });
                for (i, request) in requests.into_iter().enumerate() {
                    let id = request.id.clone().unwrap_or_else(|| if n == 1 { base.clone() } else { format!("{base}-{i}") });
                    if self.cancelled.remove(&id).is_some() {
                        self.record_outcome(msg, Outcome::Poison { code: "cancelled", reason: format!("job {id} was cancelled before it started") });
                        continue;
                    }
                    self.waiting.push_back(Waiting { msg, id, request, since });
                }
                self.publish_known();
                self.settle_ready(broker, config, tel).await;
            }
        }
        Ok(())
    }

    /// Starts waiting jobs while slots are free, each on a thread of its own.
    fn start_waiting(&mut self, config: &ServiceConfig, tel: &Telemetry) {
        let before = (self.waiting.len(), self.active.len());
        while self.active.len() < config.service.jobs.max(1) && self.draining_since.is_none() {
            let Some(w) = self.waiting.pop_front() else { break };
            let key = self.next_job;
            self.next_job += 1;
            let stop = StopToken::new();
            let (ctx, engine, done, job_stop, id) = (self.ctx.clone(), self.engine.clone(), self.done_tx.clone(), stop.clone(), w.id.clone());
            tel.metrics.observe("stylestream_stage_seconds", &[("stage", "wait")], w.since.elapsed().as_secs_f64());
            let named = |i: &event::Input| match i {
                event::Input::Object(k) | event::Input::Prefix(k) => k.clone(),
            };
            let output = match &w.request.output {
                event::Output::Object(k) | event::Output::Prefix(k) | event::Output::Frames(k) => k.clone(),
            };
            tel.board.started(&w.id, &named(&w.request.input), &w.request.style, &output, None);
            let spawned = std::thread::Builder::new().name(format!("job-{key}")).spawn(move || {
                let outcome = job::run(&ctx, &engine, id, w.request, job_stop);
                let _ = done.send((key, outcome));
            });
            match spawned {
                Ok(_) => {
                    self.active.insert(key, Active { msg: w.msg, id: w.id, stop, started: Instant::now() });
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not start a job thread");
                    tel.board.finished(&w.id, "handed-back", Some("could not start a job thread"));
                    self.record_outcome(w.msg, Outcome::Transient { cause: job::Cause::Other, reason: format!("starting a job thread: {e}") });
                }
            }
        }
        if (self.waiting.len(), self.active.len()) != before {
            self.publish_known();
        }
    }

    fn ended(&mut self, job: u64, outcome: Outcome, tel: &Telemetry) {
        if let Some(a) = self.active.remove(&job) {
            tracing::debug!(job = %a.id, secs = a.started.elapsed().as_secs_f64(), "job ended");
            let (label, error) = board_outcome(&outcome);
            tel.board.finished(&a.id, label, error);
            self.record_outcome(a.msg, outcome);
        }
        self.publish_known();
    }

    /// Updates the ids `DELETE /jobs/<id>` may cancel.
    fn publish_known(&self) {
        if let Ok(mut k) = self.known.lock() {
            k.clear();
            k.extend(self.waiting.iter().map(|w| w.id.clone()));
            k.extend(self.active.values().map(|a| a.id.clone()));
        }
    }

    fn record_outcome(&mut self, msg: u64, outcome: Outcome) {
        if let Some(m) = self.messages.get_mut(&msg) {
            m.outcomes.push(outcome);
            m.pending = m.pending.saturating_sub(1);
        }
    }

    /// Settles every message whose jobs have all ended.
    async fn settle_ready(&mut self, broker: &Broker, config: &ServiceConfig, tel: &Telemetry) {
        let ready: Vec<u64> = self.messages.iter().filter(|(_, m)| m.pending == 0).map(|(k, _)| *k).collect();
        for k in ready {
            let Some(m) = self.messages.remove(&k) else { continue };
            if let Err(e) = settle(broker, config, tel, &m.delivery, &m.outcomes).await {
                // The broker redelivers it: a finished output is then found done.
                tracing::warn!(error = %e, "could not settle a message; the broker will deliver it again");
            }
        }
    }

    /// Applies a control message.
    async fn control(&mut self, broker: &Broker, config: &ServiceConfig, tel: &Telemetry, body: &[u8]) {
        match event::parse_control(body, config.broker.max_message_bytes) {
            Ok(event::Control::Cancel(id)) => {
                let _ = self.cancel(&id);
                self.settle_ready(broker, config, tel).await;
            }
            Err(e) => tracing::warn!(error = %e, "control message ignored"),
        }
    }

    /// Cancels job `id`: running, it stops and publishes nothing; waiting, it never starts; not
    /// here yet, it is refused when it arrives (for an hour). Whether it was found here.
    fn cancel(&mut self, id: &str) -> bool {
        let mut found = false;
        for a in self.active.values().filter(|a| a.id == id) {
            tracing::info!(job = %id, "cancelling the job");
            a.stop.stop(StopReason::Cancelled);
            found = true;
        }
        let (gone, kept): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting).into_iter().partition(|w| w.id == id);
        self.waiting = kept.into();
        for w in gone {
            found = true;
            self.record_outcome(w.msg, Outcome::Poison { code: "cancelled", reason: format!("job {id} was cancelled before it started") });
        }
        if !found {
            self.cancelled.retain(|_, t| t.elapsed() < Duration::from_secs(3600));
            self.cancelled.insert(id.to_string(), Instant::now());
        }
        self.publish_known();
        found
    }

    /// Time limits: a job over `job_timeout_secs` is stopped; after SIGTERM and the grace
    /// period, every job still running is stopped and handed back.
    fn police(&mut self, config: &ServiceConfig) {
        let limit = config.service.job_timeout_secs;
        for a in self.active.values() {
            if limit > 0.0 && a.started.elapsed().as_secs_f64() > limit && !a.stop.is_stopped() {
                tracing::warn!(job = %a.id, limit_secs = limit, "job timed out: stopping it");
                a.stop.stop(StopReason::TimedOut);
            }
        }
        let grace = Duration::from_secs_f64(config.service.shutdown_grace_secs.max(0.0));
        if self.draining_since.is_some_and(|t| t.elapsed() > grace) {
            for a in self.active.values().filter(|a| !a.stop.is_stopped()) {
                tracing::warn!(job = %a.id, "grace period over: handing the job back unpublished");
                a.stop.stop(StopReason::Interrupted);
            }
        }
    }

    /// Whether jobs are still busy 10 s after the grace period (stuck in a hung request): they
    /// are given up on.
    fn give_up_if_hung(&mut self, config: &ServiceConfig) -> bool {
        let limit = Duration::from_secs_f64(config.service.shutdown_grace_secs.max(0.0)) + Duration::from_secs(10);
        !self.active.is_empty() && self.draining_since.is_some_and(|t| t.elapsed() > limit)
    }
}

/// How the status page names an outcome, and its error.
fn board_outcome(o: &Outcome) -> (&'static str, Option<&str>) {
    match o {
        Outcome::Done { .. } => ("succeeded", None),
        Outcome::AlreadyDone { .. } => ("already-done", None),
        Outcome::Poison { code: "cancelled", reason } => ("cancelled", Some(reason.as_str())),
        Outcome::Poison { code: "timed-out", reason } => ("timed-out", Some(reason.as_str())),
        Outcome::Poison { reason, .. } => ("failed", Some(reason.as_str())),
        Outcome::Transient { reason, .. } | Outcome::Held { reason } => ("handed-back", Some(reason.as_str())),
        Outcome::Interrupted => ("interrupted", None),
    }
}

/// Settles a delivery by the worst outcome of its jobs.
async fn settle(broker: &Broker, config: &ServiceConfig, tel: &Telemetry, d: &Delivery, outcomes: &[Outcome]) -> Result<(), ServiceError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for o in outcomes {
        record(&tel.metrics, o);
    }
    if let Some(Outcome::Poison { code, reason }) = outcomes.iter().find(|o| matches!(o, Outcome::Poison { .. })) {
        dead_letter(broker, tel, d, code, reason).await?;
    } else if outcomes.iter().any(|o| matches!(o, Outcome::Interrupted)) {
        // Shutdown: back to the queue at once, for another instance.
        d.nack_requeue().await?;
    } else if let Some(o) = outcomes.iter().find(|o| matches!(o, Outcome::Transient { .. } | Outcome::Held { .. })) {
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
            dead_letter(broker, tel, d, "retry-budget-spent", &why).await?;
        } else {
            let delay = broker.retry_later(d, state.attempts, first_failure, reason).await?;
            tel.metrics.inc("stylestream_retries_total", &[("cause", cause)], 1.0);
            tracing::warn!(cause, retry_in = ?delay, attempt = state.attempts + 1, error = %reason, "job handed to the retry queue");
            d.ack().await?;
        }
    } else {
        d.ack().await?;
    }
    Ok(())
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

async fn dead_letter(broker: &Broker, tel: &Telemetry, d: &Delivery, code: &str, reason: &str) -> Result<(), ServiceError> {
    tracing::error!(reason = code, error = %reason, "message dead-lettered");
    broker.dead_letter(d.data(), code, reason).await?;
    tel.metrics.inc("stylestream_dead_lettered_total", &[("reason", code)], 1.0);
    tel.board.dead_lettered(code);
    d.ack().await?;
    Ok(())
}

/// The message's id, else a hash of its body (stable across redeliveries).
fn message_id(d: &Delivery) -> String {
    if let Some(id) = d.message_id() {
        return id;
    }
    let h = Sha256::digest(d.data());
    format!("msg-{}", h.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
}

