//! One service job, blocking, on a thread of its own: the request checked against the models
//! and the stores and made a job (`job::Job`), run on the one path every job takes
//! (`job::run`), its log written and its metrics counted. Knows nothing of the broker: it
//! returns the job's `Outcome` and the consumer acks, dead-letters or hands back the message it
//! came in.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ServiceError, Telemetry};
use crate::config::service::ServiceConfig;
use crate::dataflow::{DataflowOptions, Engine};
use crate::frame::Rate;
use crate::ingress::event::{self, Input, JobRequest, Output, Request};
use crate::job::{self, Cause, Env, Job, Limits, Observe, Outcome, Owner, PoisonCode, Settings, Sink, Source, Style};
use crate::media::video_out::EncodeSettings;
use crate::model::{NetworkDescription, Weights};
use crate::stop::StopToken;
use crate::storage::{BlockingStore, ObjectKey};
use crate::telemetry::metrics::{Metrics, Stage};
use crate::telemetry::progress::ProgressMode;
use crate::telemetry::JobBoard;

/// What stays loaded between jobs; shared by the jobs running at once.
pub struct Ctx {
    config: ServiceConfig,
    media: Arc<BlockingStore>,
    system: Arc<BlockingStore>,
    env: Env,
    workers: usize,
    precision: crate::model::gpu::Precision,
    metrics: Metrics,
    /// The status page's view of the jobs.
    board: JobBoard,
    desc: Arc<NetworkDescription>,
    models: Mutex<BTreeMap<String, Arc<Weights>>>,
    /// The store refused the credentials: re-read them before the next job.
    credentials_refused: AtomicBool,
}

impl Ctx {
    pub fn new(
        config: ServiceConfig,
        media: Arc<BlockingStore>,
        system: Arc<BlockingStore>,
        engine: Arc<Engine>,
        opts: &DataflowOptions,
        tel: &Telemetry,
        instance_id: String,
    ) -> Result<Self, ServiceError> {
        let desc = Arc::new(NetworkDescription::load(&config.models.network)?);
        let s = &config.service;
        let work_dir = s.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        let removed = job::staging::clean(&work_dir);
        if removed > 0 {
            tracing::info!(removed, work_dir = %work_dir.display(), "removed staging directories of stopped runs");
        }
        let limits = Limits {
            media: s.media_limits.clone(),
            max_input_bytes: s.max_input_bytes,
            max_prefix_frames: s.max_prefix_frames,
            staging_factor: s.staging_factor,
            staging_margin_bytes: s.staging_margin_bytes,
        };
        let owner = Owner {
            instance_id: instance_id.clone(),
            system: system.clone(),
            heartbeat: Duration::from_secs_f64(s.heartbeat_secs),
        };
        let mut env = Env::new(engine, limits, work_dir, Some(owner));
        env.segments = Some(job::segments::SegmentOptions {
            segment_secs: s.segment_secs,
            system: system.clone(),
            instance: instance_id,
            timeout_secs: s.job_timeout_secs,
            resolve: resolver(opts.gpu.clone()),
        });
        Ok(Self {
            env,
            workers: opts.workers,
            precision: opts.gpu.precision,
            config,
            media,
            system,
            metrics: tel.metrics.clone(),
            board: tel.board.clone(),
            desc,
            models: Default::default(),
            credentials_refused: Default::default(),
        })
    }

    /// Opens the stores again, re-reading `credentials_file` (rotated or renewed credentials).
    fn reopen_stores(&self) {
        match self.media.reopen().and_then(|()| self.system.reopen()) {
            Ok(()) => tracing::info!("stores opened again with the credentials as they are now"),
            Err(e) => tracing::warn!(error = %e, "could not open the stores again"),
        }
    }

    /// Whether the media store accepts the service's credentials as a whole (a request on a key
    /// that does not exist answers "not found", not "denied").
    fn store_accepts_credentials(&self) -> bool {
        let Ok(probe) = ObjectKey::parse(".stylestream-credentials-probe") else { return false };
        match self.media.head(&probe) {
            Ok(_) => true,
            Err(e) => !e.is_auth_failure(),
        }
    }

    /// The cut videos with segments in progress, as the system store shows them: each plan,
    /// its committed segments, and the segments in flight in the live instances' heartbeats.
    pub fn videos(&self) -> Vec<crate::telemetry::jobs::VideoProgress> {
        use std::collections::BTreeMap;
        let system = &self.system;
        let Ok(listed) = system.list("segments/") else { return Vec::new() };
        let mut plans: BTreeMap<String, (bool, bool, Vec<u32>)> = BTreeMap::new();
        for k in &listed {
            let mut parts = k.as_str().split('/').skip(1);
            let (Some(id), Some(rest)) = (parts.next(), parts.next()) else { continue };
            let entry = plans.entry(id.to_string()).or_default();
            match (rest, parts.next()) {
                ("plan.json", None) => entry.0 = true,
                ("stopped", None) => entry.1 = true,
                ("out", Some(name)) => entry.2.extend(name.strip_suffix(".json").and_then(|n| n.parse::<u32>().ok())),
                _ => {}
            }
        }
        // Segments in flight on every live instance.
        let interval = self.env.owner.as_ref().map_or(Duration::from_secs(15), |o| o.heartbeat);
        let mut flying: BTreeMap<String, u64> = BTreeMap::new();
        for k in system.list("instances/").unwrap_or_default() {
            let fresh = system.head(&k).ok().flatten().is_some_and(|m| {
                chrono::Utc::now().signed_duration_since(m.last_modified).to_std().is_ok_and(|age| age < interval * 3)
            });
            let body = if fresh { system.get_bytes(&k, 1 << 20).ok() } else { None };
            let parts = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|v| {
                serde_json::from_value::<Vec<crate::telemetry::jobs::PartProgress>>(v["parts"].clone()).ok()
            });
            for p in parts.unwrap_or_default() {
                *flying.entry(p.video).or_default() += p.frames_done;
            }
        }
        let mut out = Vec::new();
        for (id, (has_plan, stopped, done)) in plans {
            if !has_plan || stopped {
                continue;
            }
            let Ok(Some(plan)) = job::segments::read_plan(system, &id) else { continue };
            let committed: u64 = done.iter().filter_map(|i| plan.segments.get(*i as usize)).map(|s| s.frames).sum();
            let frames_done = (committed + flying.get(&id).copied().unwrap_or(0)).min(plan.frames);
            out.push(crate::telemetry::jobs::VideoProgress {
                id: plan.id.clone(),
                input: plan.input.clone(),
                style: plan.style.clone(),
                output: plan.output.clone(),
                total_frames: plan.frames,
                frames_done,
                segments_done: done.len() as u32,
                segments: plan.segments.len() as u32,
                started_at: chrono::DateTime::from_timestamp_millis(plan.created_ms).unwrap_or_else(chrono::Utc::now),
            });
        }
        out
    }

    /// Marks the cut video `id` stopped, when it has a plan here: its segment jobs stop on
    /// every replica, and those not started never style.
    pub fn mark_cancelled(&self, id: &str) {
        if event::check_id(id).is_err() {
            return;
        }
        match job::segments::read_plan(&self.system, id) {
            Ok(Some(_)) => {
                if let Err(e) = job::segments::write_stopped(&self.system, id, PoisonCode::Cancelled) {
                    tracing::warn!(video = %id, error = %e, "could not mark the cut video cancelled");
                } else {
                    tracing::info!(video = %id, "cut video marked cancelled for every replica");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(video = %id, error = %e, "could not read the plan of a cancelled job"),
        }
    }

    /// Reports a job's passing troubles to the metrics and `/readyz`, and clears those that its
    /// outcome shows are over.
    fn note_troubles(&self, outcome: &Outcome) {
        let worked = matches!(
            outcome,
            Outcome::Done { .. } | Outcome::AlreadyDone { .. } | Outcome::Planned { .. } | Outcome::Poison { .. }
        );
        match outcome {
            Outcome::Held { reason } => {
                self.credentials_refused.store(true, Ordering::SeqCst);
                self.metrics
                    .set_trouble(Cause::Credentials, Some(format!("the store refuses the credentials: {reason}")));
            }
            _ if worked => {
                self.credentials_refused.store(false, Ordering::SeqCst);
                self.metrics.set_trouble(Cause::Credentials, None);
            }
            _ => {}
        }
        for cause in [Cause::Store, Cause::Disk] {
            match outcome {
                Outcome::Transient { cause: c, reason } if *c == cause => {
                    self.metrics.set_trouble(cause, Some(reason.clone()))
                }
                _ if worked => self.metrics.set_trouble(cause, None),
                _ => {}
            }
        }
    }

    /// The weights of style `name`: `<models dir>/<name>.safetensors`, loaded once.
    fn model(&self, name: &str) -> Result<Arc<Weights>, Outcome> {
        event::check_style(name).map_err(|e| Outcome::poison(PoisonCode::UnknownStyle, e.to_string()))?;
        let mut models =
            self.models.lock().map_err(|_| Outcome::transient(Cause::Other, "the model cache is unusable"))?;
        if let Some(w) = models.get(name) {
            return Ok(w.clone());
        }
        // The one loader, confined to the models directory: a checked bare name, never a path.
        let path = self.config.models.dir.join(format!("{name}.safetensors"));
        if !path.is_file() {
            return Err(Outcome::poison(
                PoisonCode::UnknownStyle,
                format!("no style {name:?}: {} does not exist", path.display()),
            ));
        }
        let m = crate::model::load::load_path(&path, &self.config.models.network, Some(&self.desc))
            .map_err(|e| Outcome::poison(PoisonCode::UnknownStyle, e.to_string()))?;
        models.insert(name.to_string(), m.weights.clone());
        Ok(m.weights)
    }

    /// The job a request asks for, every field checked: a bare style name, keys the store
    /// accepts, a container from the fixed set.
    fn job(&self, id: String, request: &JobRequest) -> Result<Job, Outcome> {
        let weights = self.model(&request.style)?;
        let key = |k: &str| ObjectKey::parse(k).map_err(|e| Outcome::poison(PoisonCode::InvalidKey, e.to_string()));
        let fps = request.fps.and_then(|f| Rate::parse(&f.to_string()));
        let (source, stem, ext) = match &request.input {
            Input::Object(k) => {
                let k = key(k)?;
                // The container: a known one from the key's extension, else mp4. Never event text.
                let ext = Path::new(k.name())
                    .extension()
                    .and_then(|e| event::map_format(&e.to_string_lossy()).ok())
                    .unwrap_or_else(|| "mp4".into());
                let stem =
                    Path::new(k.name()).file_stem().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
                (Source::StoredVideo { store: self.media.clone(), key: k }, stem, ext)
            }
            Input::Prefix(p) => {
                key(p.trim_end_matches('/'))?;
                let stem = p.trim_end_matches('/').rsplit('/').next().unwrap_or("frames").to_string();
                (Source::StoredFrames { store: self.media.clone(), prefix: p.clone(), fps }, stem, "mp4".to_string())
            }
        };
        // `format` was mapped from a fixed set by the event parser; map again, never trust.
        let ext = match request.format.as_deref() {
            Some(f) => event::map_format(f).map_err(|e| Outcome::poison(PoisonCode::InvalidEvent, e.to_string()))?,
            None => ext,
        };
        let sink = match &request.output {
            Output::Object(o) => Sink::StoredVideo { store: self.media.clone(), key: key(o)? },
            Output::Prefix(p) => Sink::StoredVideo {
                store: self.media.clone(),
                key: key(&format!("{p}{stem}.{}.{}", request.style, ext.trim_start_matches('.')))?,
            },
            Output::Frames(p) => {
                if !matches!(source, Source::StoredFrames { .. }) {
                    return Err(Outcome::poison(
                        PoisonCode::InvalidEvent,
                        "`output_frames_prefix` needs an `input_prefix` of frames",
                    ));
                }
                key(p.trim_end_matches('/')).map_err(|o| match o {
                    Outcome::Poison { code, reason } => {
                        Outcome::poison(code, format!("output_frames_prefix: {reason}"))
                    }
                    o => o,
                })?;
                Sink::StoredFrames { store: self.media.clone(), prefix: p.clone() }
            }
        };
        if let Sink::StoredVideo { key, .. } = &sink {
            let out_ext = Path::new(key.name()).extension().and_then(|e| event::map_format(&e.to_string_lossy()).ok());
            if out_ext.is_none() {
                return Err(Outcome::poison(
                    PoisonCode::InvalidEvent,
                    format!("{key}: the output must end in .{}", event::FORMATS.join(", .")),
                ));
            }
        }
        let s = &self.config.service;
        let settings = Settings {
            encode: EncodeSettings {
                codec: s.codec.clone(),
                crf: request.crf.unwrap_or(s.crf),
                preset: request.preset.clone().unwrap_or_else(|| s.preset.clone()),
            },
            jpeg_quality: request.jpeg_quality.unwrap_or(s.jpeg_quality),
            precision: self.precision,
            network: self.config.models.network.clone(),
        };
        let style = Style { name: request.style.clone(), desc: self.desc.clone(), weights };
        Ok(Job { id, source, sink, style, settings })
    }
}

impl Ctx {
    /// The job of a segment or stitch message: everything but the plan's id and the segment's
    /// index is read from the plan, which must exist.
    fn part(&self, id: String, plan_id: &str, index: Option<u32>) -> Result<Job, Outcome> {
        let system = &self.system;
        let plan =
            job::segments::read_plan(system, plan_id).map_err(|e| job::JobError::read(e).outcome(plan_id, None))?;
        let Some(plan) = plan else {
            // A video stopped (and cleaned up) before this part came: what stopped it.
            if let Ok(Some(s)) = job::segments::read_stopped(system, plan_id) {
                return Err(Outcome::poison(
                    s.code(),
                    format!("video {plan_id} was {}: nothing is published", s.reason),
                ));
            }
            return Err(Outcome::poison(PoisonCode::UnknownPlan, format!("no plan {plan_id:?} in the system store")));
        };
        let weights = self.model(&plan.style)?;
        if weights.sha256 != plan.model_sha256 {
            return Err(Outcome::poison(
                PoisonCode::UnknownStyle,
                format!("style {} changed since video {plan_id} was planned", plan.style),
            ));
        }
        let style = Style { name: plan.style.clone(), desc: self.desc.clone(), weights };
        let settings = plan.settings();
        let output =
            ObjectKey::parse(&plan.output).map_err(|e| Outcome::poison(PoisonCode::InvalidKey, e.to_string()))?;
        let plan = Arc::new(plan);
        let (source, sink) = match index {
            Some(i) => {
                if i as usize >= plan.segments.len() {
                    return Err(Outcome::poison(
                        PoisonCode::InvalidEvent,
                        format!("plan {plan_id} has {} segments, not {}", plan.segments.len(), i + 1),
                    ));
                }
                (
                    Source::Segment { plan: plan.clone(), index: i, media: self.media.clone() },
                    Sink::Segment { plan: plan.id.clone(), index: i },
                )
            }
            None => (
                Source::Segments { plan: plan.clone(), media: self.media.clone() },
                Sink::StoredVideo { store: self.media.clone(), key: output },
            ),
        };
        Ok(Job { id, source, sink, style, settings })
    }
}

/// Runs one request to its end: returns how it ended, and the messages it hands on (a cut
/// video's segments, a stitch that is due). `stop` cancels it or times it out (nothing is
/// published then); its progress goes to the job board.
pub fn run(ctx: &Ctx, id: String, request: Request, stop: StopToken) -> (Outcome, Vec<Vec<u8>>) {
    if ctx.credentials_refused.load(Ordering::SeqCst) {
        ctx.reopen_stores();
    }
    let built = match &request {
        Request::Job(r) => ctx.job(id, r),
        Request::Segment { plan, index } => ctx.part(id, plan, Some(*index)),
        Request::Stitch { plan } => ctx.part(id, plan, None),
    };
    let (mut outcome, publish) = match built {
        Err(o) => (o, Vec::new()),
        Ok(job) => run_job(ctx, &job, &stop),
    };
    // A refusal of one object is that object's problem; only a store that refuses everything
    // holds the job.
    if let Outcome::Held { reason } = &outcome {
        if ctx.store_accepts_credentials() {
            outcome = Outcome::poison(PoisonCode::AccessDenied, reason.clone());
        }
    }
    ctx.note_troubles(&outcome);
    (outcome, publish)
}

/// Runs a checked job, writes its log and counts it in the metrics.
fn run_job(ctx: &Ctx, job: &Job, stop: &StopToken) -> (Outcome, Vec<Vec<u8>>) {
    let (board, id) = (ctx.board.clone(), job.id.clone());
    let (board2, id2) = (ctx.board.clone(), job.id.clone());
    let observe = Observe {
        mode: ProgressMode::None,
        on_total: Some(Arc::new(move |total| board.set_total_frames(&id, total))),
        on_frames: Some(Arc::new(move |done| board2.progress(&id2, done))),
    };
    let report = job::run(job, &ctx.env, &observe, stop);
    let m = &ctx.metrics;
    match (&job.sink, &report.outcome) {
        (Sink::Segment { .. }, Outcome::Done { .. }) => m.segments_total.inc(),
        (_, Outcome::Done { .. }) if report.segments.is_some() => m.stitches_total.inc(),
        _ => {}
    }
    if let Outcome::Done { frames, .. } = &report.outcome {
        m.stage_seconds.observe(Stage::Download, report.secs.stage);
        m.stage_seconds.observe(Stage::Style, report.secs.style);
        m.stage_seconds.observe(Stage::Upload, report.secs.commit);
        m.frames_total.add(*frames as f64);
        m.gpu_busy_seconds_total.add(report.records.iter().map(|r| r.gpu_ms as f64 / 1e3).sum());
    }
    job::log::write(&ctx.system, &report, ctx.workers);
    (report.outcome, report.publish)
}

/// Resolves a video's precision and kernel set on a device of this instance's own (opened on
/// first use, kept): what `auto` and `timed` mean here, made explicit for every replica.
fn resolver(gpu: crate::model::gpu::GpuOptions) -> job::segments::Resolve {
    let device: Arc<Mutex<Option<crate::model::gpu::GpuContext>>> = Default::default();
    Arc::new(move |style: &Style, width: u32, height: u32| {
        let mut held = device.lock().map_err(|_| "the planning device is unusable".to_string())?;
        if held.is_none() {
            *held = Some(crate::model::gpu::GpuContext::new(&gpu).map_err(|e| e.to_string())?);
        }
        let ctx = held.as_ref().ok_or_else(|| "no planning device".to_string())?;
        crate::model::gpu::NetworkPlan::resolve_choice(ctx, &style.desc, &style.weights, width, height)
            .map_err(|e| e.to_string())
    })
}
