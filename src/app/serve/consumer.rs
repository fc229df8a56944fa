//! The consumer: one `select!` over deliveries, control messages, job outcomes and a clock
//! (timeouts, shutdown, metrics). It admits deliveries as jobs (at most `service.jobs` in
//! progress, each on a thread of its own), and settles each message by its jobs' outcomes: ack,
//! retry later, dead-letter or hand back. It never waits on styling.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::jobs::{self, Ctx};
use super::{ServiceError, Telemetry};
use crate::config::service::ServiceConfig;
use crate::dataflow::Engine;
use crate::ingress::broker::{self, Broker, Delivery};
use crate::ingress::event::{self, Request};
use crate::job::{Cause, Outcome, PoisonCode};
use crate::stop::{StopReason, StopToken};
use crate::telemetry::metrics::{Metrics, Stage};

/// A delivery whose jobs are waiting or running; settled once all have ended.
struct Message {
    delivery: Delivery,
    pending: usize,
    outcomes: Vec<Outcome>,
    /// Messages its jobs ask to publish before it is settled (segment jobs, a stitch).
    publish: Vec<Vec<u8>>,
}

/// A job waiting for a free slot.
struct Waiting {
    msg: u64,
    id: String,
    request: Request,
    since: Instant,
}

/// A job in progress on a thread of its own.
struct Active {
    msg: u64,
    id: String,
    /// The cut video it is a part of (a segment, a stitch).
    plan: Option<String>,
    stop: StopToken,
    started: Instant,
}

/// The consumer's state; it outlives broker connections (jobs keep running while the service
/// reconnects).
pub(super) struct Jobs {
    ctx: Arc<Ctx>,
    engine: Arc<Engine>,
    messages: HashMap<u64, Message>,
    next_msg: u64,
    waiting: VecDeque<Waiting>,
    active: HashMap<u64, Active>,
    next_job: u64,
    /// Job outcomes, from the job threads.
    done_tx: tokio::sync::mpsc::UnboundedSender<(u64, Outcome, Vec<Vec<u8>>)>,
    done_rx: tokio::sync::mpsc::UnboundedReceiver<(u64, Outcome, Vec<Vec<u8>>)>,
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

impl Jobs {
    pub(super) fn new(ctx: Arc<Ctx>, engine: Arc<Engine>) -> Self {
        let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            ctx,
            engine,
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
        }
    }

    /// Lets `DELETE /jobs/<id>` cancel the jobs waiting or running here.
    pub(super) fn cancel_over_http(&mut self, board: &crate::telemetry::JobBoard) {
        let (cancel_tx, cancel_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let known = self.known.clone();
        board.set_canceller(Arc::new(move |id: &str| {
            known.lock().map(|k| k.contains(id)).unwrap_or(false) && cancel_tx.send(id.to_string()).is_ok()
        }));
        self.cancel_rx = Some(cancel_rx);
    }

    /// Whether a job is still running (after the drain: one stuck in a hung request).
    pub(super) fn any_active(&self) -> bool {
        !self.active.is_empty()
    }
}

/// Connects, consumes until shutdown, and reconnects (with backoff) when the broker goes away or
/// closes the channel. Jobs in progress keep running while it reconnects.
pub(super) async fn consume_forever(
    config: &ServiceConfig,
    tel: &Telemetry,
    jobs: &mut Jobs,
    shutdown: &StopToken,
) -> Result<(), ServiceError> {
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
async fn consume(
    broker: &Broker,
    config: &ServiceConfig,
    tel: &Telemetry,
    jobs: &mut Jobs,
    shutdown: &StopToken,
) -> Result<(), ServiceError> {
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
            Some((job, outcome, publish)) = jobs.done_rx.recv() => {
                jobs.ended(job, outcome, publish, tel);
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
                        tel.metrics.queue_depth.set(n as f64);
                    }
                    last_depth = Instant::now();
                }
                tel.metrics.jobs_in_flight.set(jobs.active.len() as f64);
                let lag = jobs.waiting.front().map_or(0.0, |w| w.since.elapsed().as_secs_f64());
                tel.metrics.queue_lag_seconds.set(lag);
                let opened = crate::model::gpu::devices_opened();
                if opened > jobs.devices_seen {
                    tel.metrics.gpu_device_opens_total.add((opened - jobs.devices_seen) as f64);
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
    async fn admit(
        &mut self,
        broker: &Broker,
        config: &ServiceConfig,
        tel: &Telemetry,
        d: Delivery,
    ) -> Result<(), ServiceError> {
        tel.metrics.messages_total.inc();
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
                self.messages
                    .insert(msg, Message { delivery: d, pending: n, outcomes: Vec::new(), publish: Vec::new() });
                for (i, request) in requests.into_iter().enumerate() {
                    let id = request.id(&if n == 1 { base.clone() } else { format!("{base}-{i}") });
                    // A cut video cancelled here before this part arrived.
                    let cancelled = self.cancelled.remove(&id).is_some()
                        || request.plan().is_some_and(|p| self.cancelled.contains_key(p));
                    if cancelled {
                        self.record_outcome(
                            msg,
                            Outcome::poison(PoisonCode::Cancelled, format!("job {id} was cancelled before it started")),
                        );
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
            let (ctx, done, job_stop, id) = (self.ctx.clone(), self.done_tx.clone(), stop.clone(), w.id.clone());
            tel.metrics.stage_seconds.observe(Stage::Wait, w.since.elapsed().as_secs_f64());
            let plan_of = w.request.plan().map(str::to_string);
            let (input, style, output) = match &w.request {
                Request::Job(r) => {
                    let input = match &r.input {
                        event::Input::Object(k) | event::Input::Prefix(k) => k.clone(),
                    };
                    let output = match &r.output {
                        event::Output::Object(k) | event::Output::Prefix(k) | event::Output::Frames(k) => k.clone(),
                    };
                    (input, r.style.clone(), output)
                }
                Request::Segment { plan, index } => {
                    (format!("segment {index} of {plan}"), String::new(), String::new())
                }
                Request::Stitch { plan } => (format!("the segments of {plan}"), String::new(), String::new()),
            };
            tel.board.started_part(&w.id, plan_of.as_deref(), &input, &style, &output, None);
            let spawned = std::thread::Builder::new().name(format!("job-{key}")).spawn(move || {
                let (outcome, publish) = jobs::run(&ctx, id, w.request, job_stop);
                let _ = done.send((key, outcome, publish));
            });
            match spawned {
                Ok(_) => {
                    self.active.insert(
                        key,
                        Active { msg: w.msg, id: w.id, plan: plan_of.clone(), stop, started: Instant::now() },
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not start a job thread");
                    let outcome = Outcome::transient(Cause::Other, format!("starting a job thread: {e}"));
                    tel.board.finished(&w.id, outcome.kind(), outcome.error());
                    self.record_outcome(w.msg, outcome);
                }
            }
        }
        if (self.waiting.len(), self.active.len()) != before {
            self.publish_known();
        }
    }

    fn ended(&mut self, job: u64, outcome: Outcome, publish: Vec<Vec<u8>>, tel: &Telemetry) {
        if let Some(a) = self.active.remove(&job) {
            if let Some(m) = self.messages.get_mut(&a.msg) {
                m.publish.extend(publish);
            }
            tracing::debug!(job = %a.id, secs = a.started.elapsed().as_secs_f64(), "job ended");
            tel.board.finished(&a.id, outcome.kind(), outcome.error());
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
            if let Err(e) = settle(broker, config, tel, &m.delivery, &m.outcomes, &m.publish).await {
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
        // A cut video: every replica, including those that start later, reads its stop mark.
        let ctx = self.ctx.clone();
        let video = id.to_string();
        tokio::task::spawn_blocking(move || ctx.mark_cancelled(&video));
        let mut found = false;
        for a in self.active.values().filter(|a| a.id == id || a.plan.as_deref() == Some(id)) {
            tracing::info!(job = %a.id, "cancelling the job");
            a.stop.stop(StopReason::Cancelled);
            found = true;
        }
        let (gone, kept): (Vec<Waiting>, Vec<Waiting>) =
            std::mem::take(&mut self.waiting).into_iter().partition(|w| w.id == id || w.request.plan() == Some(id));
        self.waiting = kept.into();
        for w in gone {
            found = true;
            self.record_outcome(
                w.msg,
                Outcome::poison(PoisonCode::Cancelled, format!("job {id} was cancelled before it started")),
            );
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

/// Settles a delivery by the worst outcome of its jobs.
async fn settle(
    broker: &Broker,
    config: &ServiceConfig,
    tel: &Telemetry,
    d: &Delivery,
    outcomes: &[Outcome],
    publish: &[Vec<u8>],
) -> Result<(), ServiceError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    // What the jobs hand on (segment jobs, a due stitch) is confirmed before the message goes:
    // a crash or a broker failure in between redelivers it, and the plan or the manifests make
    // the repeat harmless.
    for body in publish {
        if let Err(e) = broker.publish_job(body).await {
            tracing::warn!(error = %e, "could not publish a follow-up message: handing the message back");
            d.nack_requeue().await?;
            return Ok(());
        }
    }
    for o in outcomes {
        record(&tel.metrics, o);
    }
    if let Some(Outcome::Poison { code, reason }) = outcomes.iter().find(|o| matches!(o, Outcome::Poison { .. })) {
        dead_letter(broker, tel, d, *code, reason).await?;
    } else if outcomes.iter().any(|o| matches!(o, Outcome::Interrupted)) {
        // Shutdown: back to the queue at once, for another instance.
        d.nack_requeue().await?;
    } else if let Some((cause, reason)) =
        outcomes.iter().find_map(|o| Some((o.cause()?, o.error().unwrap_or_default())))
    {
        let state = broker::RetryState::of(d);
        // Credentials do not spend the retry budget: the job waits for them.
        let held = cause == Cause::Credentials;
        let first_failure =
            if held { state.first_failure_unix_ms } else { Some(state.first_failure_unix_ms.unwrap_or(now_ms)) };
        let budget = config.broker.retry_budget_secs;
        if !held && state.failing_for_secs(now_ms) > budget {
            let why = format!(
                "still failing after {:.0} s of retries (retry_budget_secs = {budget}): {reason}",
                state.failing_for_secs(now_ms)
            );
            dead_letter(broker, tel, d, PoisonCode::RetryBudgetSpent, &why).await?;
        } else {
            let delay = broker.retry_later(d, state.attempts, first_failure, reason).await?;
            tel.metrics.retries_total.inc(cause);
            tracing::warn!(cause = cause.as_str(), retry_in = ?delay, attempt = state.attempts + 1, error = %reason, "job handed to the retry queue");
            d.ack().await?;
        }
    } else {
        d.ack().await?;
    }
    Ok(())
}

fn record(metrics: &Metrics, o: &Outcome) {
    match o {
        Outcome::Done { output, frames } => tracing::info!(%output, frames, "job done"),
        Outcome::AlreadyDone { output } => tracing::info!(%output, "already done: acked without styling"),
        _ => {}
    }
    metrics.jobs_total.inc(o.kind());
}

async fn dead_letter(
    broker: &Broker,
    tel: &Telemetry,
    d: &Delivery,
    code: PoisonCode,
    reason: &str,
) -> Result<(), ServiceError> {
    tracing::error!(reason = code.as_str(), error = %reason, "message dead-lettered");
    broker.dead_letter(d.data(), code.as_str(), reason).await?;
    tel.metrics.dead_lettered_total.inc(code);
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
