//! One job, blocking, on a thread of its own: check the request against the models and storage,
//! skip it when already done, stage the input locally, style it in the long-lived dataflow
//! engine (beside whatever other jobs run), commit the output atomically with its manifest, and
//! write the job log. Knows nothing of the broker: it returns the job's `Outcome` and the
//! consumer acks, dead-letters or hands back the message it came in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::config::ServiceConfig;
use super::{owner, staging};
use crate::ingress::event;
use crate::ingress::event::{Input, JobRequest, Output};
use crate::job::{open_job_with, OpenError};
use crate::media::policy::InputPolicy;
use crate::media::video_out::EncodeSettings;
use crate::dataflow::{DataflowOptions, Engine, Job, PipelineError};
use crate::stop::{StopReason, StopToken};
use crate::model::{NetworkDescription, Weights};
use crate::storage::{BlockingStore, Manifest, Meta, ObjectKey, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::progress::{FrameLog, Progress, ProgressMode};

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Styled and committed.
    Done { output: String, frames: u64 },
    /// Its output was already complete for this input and model: no GPU work.
    AlreadyDone { output: String },
    /// Can never succeed: dead-letter it with this reason.
    Poison { code: &'static str, reason: String },
    /// May succeed later (store unreachable, disk full, a GPU failure): retry it later, within
    /// the retry budget.
    Transient { cause: Cause, reason: String },
    /// The store refuses the service's credentials: the service is unready and the job waits
    /// (without spending its retry budget) until they work again.
    Held { reason: String },
    /// Stopped by shutdown: hand it back.
    Interrupted,
}

/// Why a job failed for a passing reason (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The store is unreachable, timing out or failing (5xx, 429).
    Store,
    /// The local work directory is full or failing.
    Disk,
    /// Anything else (a GPU failure, a busy output).
    Other,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::Store => "store",
            Cause::Disk => "disk",
            Cause::Other => "other",
        }
    }
}

fn transient(cause: Cause, reason: impl Into<String>) -> Outcome {
    Outcome::Transient { cause, reason: reason.into() }
}

/// What stays loaded between jobs; shared by the jobs running at once.
pub struct Ctx {
    pub config: ServiceConfig,
    pub media: BlockingStore,
    pub system: BlockingStore,
    pub opts: DataflowOptions,
    pub metrics: Metrics,
    /// The status page's view of the jobs.
    pub board: crate::telemetry::JobBoard,
    pub work_dir: PathBuf,
    desc: Arc<NetworkDescription>,
    models: std::sync::Mutex<BTreeMap<String, Arc<Weights>>>,
    /// The store refused the credentials: re-read them before the next job.
    credentials_refused: std::sync::atomic::AtomicBool,
    /// Output keys being made now: a second job for one of them waits for the first.
    taken: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// This instance's id (owner of its upload temporaries) and heartbeat interval.
    pub instance_id: String,
    pub heartbeat: std::time::Duration,
}

impl Ctx {
    pub fn new(
        config: ServiceConfig,
        media: BlockingStore,
        system: BlockingStore,
        opts: DataflowOptions,
        metrics: Metrics,
        board: crate::telemetry::JobBoard,
        instance_id: String,
    ) -> Result<Self, crate::model::ModelError> {
        let desc = Arc::new(NetworkDescription::load(&config.models.network)?);
        let work_dir = config.service.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        let removed = staging::clean(&work_dir);
        if removed > 0 {
            tracing::info!(removed, work_dir = %work_dir.display(), "removed staging directories of stopped runs");
        }
        let heartbeat = std::time::Duration::from_secs_f64(config.service.heartbeat_secs);
        Ok(Self {
            config,
            media,
            system,
            opts,
            metrics,
            board,
            work_dir,
            desc,
            models: Default::default(),
            credentials_refused: Default::default(),
            taken: Default::default(),
            instance_id,
            heartbeat,
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

    /// Reports a job's passing troubles to the metrics and `/readyz`, and clears those that a
    /// success shows are over.
    fn note_troubles(&self, outcomes: &[Outcome]) {
        let held = outcomes.iter().find_map(|o| if let Outcome::Held { reason } = o { Some(reason.clone()) } else { None });
        let worked = outcomes.iter().any(|o| matches!(o, Outcome::Done { .. } | Outcome::AlreadyDone { .. } | Outcome::Poison { .. }));
        let refused = &self.credentials_refused;
        if let Some(reason) = held {
            refused.store(true, std::sync::atomic::Ordering::SeqCst);
            self.metrics.set_trouble("credentials", Some(format!("the store refuses the credentials: {reason}")));
        } else if worked {
            refused.store(false, std::sync::atomic::Ordering::SeqCst);
            self.metrics.set_trouble("credentials", None);
        }
        for cause in [Cause::Store, Cause::Disk] {
            let failing = outcomes.iter().find_map(|o| match o {
                Outcome::Transient { cause: c, reason } if *c == cause => Some(reason.clone()),
                _ => None,
            });
            match failing {
                Some(reason) => self.metrics.set_trouble(cause.label(), Some(reason)),
                None if worked || outcomes.is_empty() => self.metrics.set_trouble(cause.label(), None),
                None => {}
            }
        }
    }

    /// The weights of style `name`: `<models dir>/<name>.safetensors`, loaded once.
    fn model(&self, name: &str) -> Result<Arc<Weights>, Outcome> {
        let valid = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(poison("unknown-style", format!("style {name:?} is not a model name (letters, digits, - and _)")));
        }
        let mut models = self.models.lock().map_err(|_| transient(Cause::Other, "the model cache is unusable"))?;
        if let Some(w) = models.get(name) {
            return Ok(w.clone());
        }
        // The one loader, confined to the models directory: a checked bare name, never a path.
        let path = self.config.models.dir.join(format!("{name}.safetensors"));
        if !path.is_file() {
            return Err(poison("unknown-style", format!("no style {name:?}: {} does not exist", path.display())));
        }
        let m = crate::model::load::load_path(&path, &self.config.models.network, Some(&self.desc)).map_err(|e| poison("unknown-style", e.to_string()))?;
        let w = m.weights;
        models.insert(name.to_string(), w.clone());
        Ok(w)
    }
}

fn poison(code: &'static str, reason: String) -> Outcome {
    Outcome::Poison { code, reason }
}

/// Storage errors: refused credentials hold the request, passing trouble (the store or the
/// local disk) retries it later, anything else poisons it.
fn store_outcome(code: &'static str, e: StoreError) -> Outcome {
    if e.is_auth_failure() {
        Outcome::Held { reason: e.to_string() }
    } else if let StoreError::Local { .. } = e {
        transient(Cause::Disk, e.to_string())
    } else if e.is_transient() {
        transient(Cause::Store, e.to_string())
    } else {
        poison(code, e.to_string())
    }
}

/// Media errors: a failure to write local files (a full disk) is passing; anything else is
/// the input's fault.
fn media_outcome(input: &str, e: &crate::media::MediaError, dir: &Path) -> Outcome {
    let text = format!("{input}: {}", strip_local(&e.to_string(), dir));
    match e {
        crate::media::MediaError::Write { .. } => transient(Cause::Disk, text),
        crate::media::MediaError::ContainerNotAllowed { .. } => poison("unsupported-input", text),
        e if e.is_over_limit() => poison("oversized-input", text),
        _ => poison("corrupt-input", text),
    }
}

/// A request checked and staged, ready to run.
struct Staged {
    id: String,
    request: JobRequest,
    input_key: String,
    input_meta: Meta,
    output_key: ObjectKey,
    weights: Arc<Weights>,
    dir: super::staging::StagingDir,
    local_out: PathBuf,
    settings: BTreeMap<String, String>,
    log: FrameLog,
    download_secs: f64,
}

/// Runs one job to its end: returns how it ended. `stop` cancels it or times it out (the engine
/// then publishes nothing); its progress goes to the job board.
pub fn run(ctx: &Ctx, engine: &Engine, id: String, request: JobRequest, stop: StopToken) -> Outcome {
    if ctx.credentials_refused.load(std::sync::atomic::Ordering::SeqCst) {
        ctx.reopen_stores();
    }
    let mut outcome = run_staged(ctx, engine, id, request, stop);
    // A refusal of one object is that object's problem; only a store that refuses everything
    // holds the job.
    if let Outcome::Held { reason } = &outcome {
        if ctx.store_accepts_credentials() {
            outcome = poison("access-denied", reason.clone());
        }
    }
    ctx.note_troubles(std::slice::from_ref(&outcome));
    outcome
}

/// The outcome of a job stopped by `why`.
fn stopped(why: StopReason) -> Outcome {
    match why {
        StopReason::Interrupted => Outcome::Interrupted,
        StopReason::Cancelled => poison("cancelled", "cancelled while it ran: nothing was published".into()),
        StopReason::TimedOut => poison("timed-out", "ran longer than service.job_timeout_secs: nothing was published".into()),
    }
}

fn run_staged(ctx: &Ctx, engine: &Engine, id: String, request: JobRequest, stop: StopToken) -> Outcome {
    if let Output::Frames(out) = &request.output {
        let out = out.clone();
        return run_frames(ctx, engine, id, request, &out, stop);
    }
    // `_taken` frees the output key when the job ends, however it ends.
    let (staged, mut job, _taken) = match stage(ctx, id, request) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if let Some(why) = stop.reason() {
        return stopped(why);
    }
    job.stop = stop;
    let started = Instant::now();
    let result = engine.submit(job).wait();
    let style_secs = started.elapsed().as_secs_f64();
    finish(ctx, staged, result, style_secs)
}

/// Frees an output key when its job ends, however it ends.
struct Taken<'a>(&'a Ctx, String);

impl<'a> Taken<'a> {
    /// Takes output `key` for this job; a second job for it is handed back to wait for the
    /// first (then it finds the output done).
    fn claim(ctx: &'a Ctx, key: &str) -> Result<Self, Outcome> {
        let fresh = ctx.taken.lock().map(|mut t| t.insert(key.to_string())).unwrap_or(false);
        if !fresh {
            return Err(transient(Cause::Other, format!("{key} is being made by another job")));
        }
        Ok(Taken(ctx, key.to_string()))
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.taken.lock() {
            t.remove(&self.1);
        }
    }
}

/// Checks a request, skips it when done, downloads its input and opens its ends.
fn stage<'a>(ctx: &'a Ctx, id: String, request: JobRequest) -> Result<(Staged, Job, Taken<'a>), Outcome> {
    let weights = ctx.model(&request.style)?;
    let key = |k: &str| ObjectKey::parse(k).map_err(|e| poison("invalid-key", e.to_string()));
    let dir = staging::create(&ctx.work_dir).map_err(|e| transient(Cause::Disk, format!("staging directory in {}: {e}", ctx.work_dir.display())))?;
    let t0 = Instant::now();
    let (input_key, input_meta, local_in, fps, ext, stem) = match &request.input {
        Input::Object(k) => {
            let k = key(k)?;
            let meta = ctx.media.head(&k).map_err(|e| store_outcome("missing-input", e))?;
            let Some(meta) = meta else {
                return Err(poison("missing-input", format!("{} does not exist", ctx.media.store().url_of(&k))));
            };
            if meta.size > ctx.config.service.max_input_bytes {
                return Err(poison("oversized-input", format!("{} is {} bytes, over the limit of {}", k, meta.size, ctx.config.service.max_input_bytes)));
            }
            staging::check_room(&ctx.work_dir, meta.size, ctx.config.service.staging_factor, ctx.config.service.staging_margin_bytes).map_err(|r| match r {
                staging::NoRoom::Never(why) => poison("oversized-input", format!("{k}: {why}")),
                staging::NoRoom::Now(why) => transient(Cause::Disk, format!("{k}: {why}")),
            })?;
            // The container: a known one from the key's extension, else mp4. Never event text.
            let ext = Path::new(k.name()).extension().and_then(|e| event::map_format(&e.to_string_lossy()).ok()).unwrap_or_else(|| "mp4".into());
            let stem = Path::new(k.name()).file_stem().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            (k.to_string(), meta, None, None, ext, stem)
        }
        Input::Prefix(p) => {
            let (meta, frames_dir, fps) = stage_prefix(ctx, p, &request, dir.path())?;
            let stem = p.trim_end_matches('/').rsplit('/').next().unwrap_or("frames").to_string();
            (p.clone(), meta, Some(frames_dir), fps, "mp4".to_string(), stem)
        }
    };
    // `format` was mapped from a fixed set by the event parser; map again, never trust.
    let ext = match request.format.as_deref() {
        Some(f) => event::map_format(f).map_err(|e| poison("invalid-event", e.to_string()))?,
        None => ext,
    };
    let output_key = match &request.output {
        Output::Object(o) => key(o)?,
        Output::Prefix(p) => key(&format!("{p}{stem}.{}.{}", request.style, ext.trim_start_matches('.')))?,
        Output::Frames(_) => return Err(poison("invalid-event", "frames output reached the video path".into())),
    };
    // A duplicate waits for the job making the same output, then finds it done.
    let taken = Taken::claim(ctx, output_key.as_str())?;
    let etag = input_meta.etag.clone().unwrap_or_default();
    let encode = encode_of(ctx, &request);
    let mut settings = encode.manifest_settings();
    settings.insert("precision".into(), ctx.opts.gpu.precision.name().into());
    match ctx.media.is_done(&output_key, &etag, &weights.sha256, &settings) {
        Ok(true) => return Err(Outcome::AlreadyDone { output: output_key.to_string() }),
        Ok(false) => {}
        Err(e) => return Err(store_outcome("invalid-key", e)),
    }
    remove_stale_partials(ctx, &output_key);
    let local_in = match local_in {
        Some(frames) => frames,
        None => {
            let ik = key(&input_key)?;
            // Local names are the service's own, never event text.
            let local = dir.path().join("input.media");
            ctx.media.download(&ik, &local).map_err(|e| store_outcome("missing-input", e))?;
            local
        }
    };
    let download_secs = t0.elapsed().as_secs_f64();
    ctx.metrics.observe("stylestream_stage_seconds", &[("stage", "download")], download_secs);
    let out_ext = Path::new(output_key.name()).extension().and_then(|e| event::map_format(&e.to_string_lossy()).ok());
    let Some(out_ext) = out_ext else {
        return Err(poison("invalid-event", format!("{output_key}: the output must end in .{}", event::FORMATS.join(", ."))));
    };
    let local_out = dir.path().join(format!("output.{out_ext}"));
    // Stored media are hostile: only the supported containers, only this file, within limits.
    let policy = InputPolicy::Restricted(ctx.config.service.media_limits.clone());
    let (source, sink) = open_job_with(&local_in.display().to_string(), &local_out, fps, &encode, &policy).map_err(|e| match e {
        OpenError::Media(m) => media_outcome(&input_key, &m, dir.path()),
        e => poison("corrupt-input", format!("{input_key}: {}", strip_local(&e.to_string(), dir.path()))),
    })?;
    let log: FrameLog = Default::default();
    let total = source.info().frames;
    ctx.board.set_total_frames(&id, total);
    let (board, job_id) = (ctx.board.clone(), id.clone());
    let progress = Progress::new(ProgressMode::None, total)
        .with_frame_log(log.clone())
        .with_observer(Arc::new(move |done| board.progress(&job_id, done)));
    let job = Job::new(Some((source, sink, progress)), ctx.desc.clone(), weights.clone());
    tracing::info!(job = %id, input = %input_key, style = %request.style, output = %output_key, "job started");
    Ok((Staged { id, request, input_key, input_meta, output_key, weights, dir, local_out, settings, log, download_secs }, job, taken))
}

/// The encoder settings a request asks for (the service's defaults where it is silent): what the
/// manifest records and the done check compares.
fn encode_of(ctx: &Ctx, request: &JobRequest) -> EncodeSettings {
    EncodeSettings {
        codec: ctx.config.service.codec.clone(),
        crf: request.crf.unwrap_or(ctx.config.service.crf),
        preset: request.preset.clone().unwrap_or_else(|| ctx.config.service.preset.clone()),
    }
}

/// Messages name objects, never the local staging files.
fn strip_local(text: &str, dir: &Path) -> String {
    text.replace(&format!("{}/", dir.display()), "")
}

/// Downloads the image frames under prefix `p` (and its fps.txt) into `dir/frames/`.
fn stage_prefix(ctx: &Ctx, p: &str, request: &JobRequest, dir: &Path) -> Result<(Meta, PathBuf, Option<crate::frame::Rate>), Outcome> {
    let keys = ctx.media.list(p).map_err(|e| store_outcome("missing-input", e))?;
    let is_frame = |k: &&ObjectKey| {
        let n = k.name().to_ascii_lowercase();
        !k.is_partial() && (n.ends_with(".png") || n.ends_with(".jpg") || n.ends_with(".jpeg"))
    };
    let mut frames: Vec<&ObjectKey> = keys.iter().filter(is_frame).filter(|k| k.parent().map(|d| format!("{d}/")) == Some(p.to_string())).collect();
    frames.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    if frames.is_empty() {
        return Err(poison("missing-input", format!("no PNG/JPEG frames under {}", ctx.media.store().url_of(&ObjectKey::parse(p.trim_end_matches('/')).map_err(|e| poison("invalid-key", e.to_string()))?))));
    }
    if frames.len() > ctx.config.service.max_prefix_frames {
        return Err(poison("oversized-input", format!("{p} holds {} frames, over the limit of {}", frames.len(), ctx.config.service.max_prefix_frames)));
    }
    let local = dir.join("frames");
    std::fs::create_dir_all(&local).map_err(|e| transient(Cause::Disk, e.to_string()))?;
    staging::check_room(dir, 0, 1.0, ctx.config.service.staging_margin_bytes).map_err(|r| match r {
        staging::NoRoom::Never(why) | staging::NoRoom::Now(why) => transient(Cause::Disk, format!("{p}: {why}")),
    })?;
    // The prefix's identity for the manifest: every frame's key and etag.
    let mut hasher = Sha256::new();
    let mut size = 0;
    for k in &frames {
        let meta = ctx.media.download(k, &local.join(k.name())).map_err(|e| store_outcome("missing-input", e))?;
        hasher.update(k.as_str().as_bytes());
        hasher.update(meta.etag.clone().unwrap_or_default().as_bytes());
        size += meta.size;
    }
    let fps = match request.fps {
        Some(f) => crate::frame::Rate::parse(&f.to_string()),
        None => {
            let fps_key = ObjectKey::parse(&format!("{p}fps.txt")).map_err(|e| poison("invalid-key", e.to_string()))?;
            match ctx.media.get_bytes(&fps_key, 64) {
                Ok(b) => crate::frame::Rate::parse(String::from_utf8_lossy(&b).trim()),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(store_outcome("missing-input", e)),
            }
        }
    };
    if fps.is_none() {
        return Err(poison("invalid-event", format!("frames under {p} need a frame rate: an fps in the event or route, or {p}fps.txt")));
    }
    let meta = Meta { size, etag: Some(format!("frames-{:x}", hasher.finalize())), last_modified: chrono::Utc::now() };
    Ok((meta, local, fps))
}

/// Upload temporaries of this output that no live instance owns: a killed run's. Those of a
/// live instance (another replica uploading the same output) are left alone; temporaries
/// without an owner (older builds) go once they are an hour old.
fn remove_stale_partials(ctx: &Ctx, output: &ObjectKey) {
    let prefix = output.parent().map(|p| format!("{p}/")).unwrap_or_default();
    let Ok(found) = ctx.media.list_partials(&prefix) else { return };
    let mine = format!(".{}.", output.name());
    for (k, meta) in found.iter().filter(|(k, _)| k.name().starts_with(&mine)) {
        let stale = match owner::partial_owner(k.name()) {
            Some(id) if id == ctx.instance_id => false,
            Some(id) => !owner::is_alive(&ctx.system, id, ctx.heartbeat),
            None => chrono::Utc::now().signed_duration_since(meta.last_modified) > chrono::Duration::hours(1),
        };
        if stale && ctx.media.delete(k).is_ok() {
            tracing::info!(object = %k, "removed a partial upload left by a stopped run");
        }
    }
}

/// After the dataflow: commit the output and its manifest, write the logs, say how it ended.
fn finish(ctx: &Ctx, s: Staged, result: Result<u64, PipelineError>, style_secs: f64) -> Outcome {
    let frames = match result {
        Ok(n) => n,
        Err(PipelineError::Stopped(why)) => {
            let outcome = stopped(why);
            write_logs(ctx, &s, 0, style_secs, 0.0, &outcome);
            return outcome;
        }
        Err(e) => {
            let outcome = match &e {
                PipelineError::Media(m) => media_outcome(&s.input_key, m, s.dir.path()),
                PipelineError::Reorder(_) => poison("corrupt-input", format!("{}: {e}", s.input_key)),
                _ => transient(Cause::Other, e.to_string()),
            };
            write_logs(ctx, &s, 0, style_secs, 0.0, &outcome);
            return outcome;
        }
    };
    ctx.metrics.observe("stylestream_stage_seconds", &[("stage", "style")], style_secs);
    let t0 = Instant::now();
    let committed = ctx.media.upload_atomic(&s.local_out, &s.output_key).and_then(|out_meta| {
        let input_key = ObjectKey::parse(s.input_key.trim_end_matches('/')).map_err(|e| StoreError::InvalidKey { key: s.input_key.clone(), reason: e.to_string() })?;
        let manifest = Manifest::new(&input_key, &s.input_meta, &s.weights.sha256, &ctx.config.models.network, frames, &s.output_key, &out_meta)
            .with_settings(s.settings.clone());
        ctx.media.write_manifest(&manifest).map(|_| ())
    });
    let upload_secs = t0.elapsed().as_secs_f64();
    let outcome = match committed {
        Ok(()) => {
            ctx.metrics.observe("stylestream_stage_seconds", &[("stage", "upload")], upload_secs);
            ctx.metrics.inc("stylestream_frames_total", &[], frames as f64);
            let gpu: f64 = s.log.lock().map(|l| l.iter().map(|r| r.gpu_ms as f64 / 1e3).sum()).unwrap_or(0.0);
            ctx.metrics.inc("stylestream_gpu_busy_seconds_total", &[], gpu);
            Outcome::Done { output: s.output_key.to_string(), frames }
        }
        Err(e) => store_outcome("output-rejected", e),
    };
    write_logs(ctx, &s, frames, style_secs, upload_secs, &outcome);
    outcome
}

/// `logs/<job id>.json` (summary) and `logs/<job id>.frames.jsonl` (one line per frame) in the
/// system store. A failure to write logs is logged, never fatal.
fn write_logs(ctx: &Ctx, s: &Staged, frames: u64, style_secs: f64, upload_secs: f64, outcome: &Outcome) {
    let records = s.log.lock().map(|l| l.clone()).unwrap_or_default();
    let workers: std::collections::BTreeSet<u32> = records.iter().map(|r| r.worker).collect();
    let (kind, error) = log_kind(outcome);
    let summary = serde_json::json!({
        "job": s.id,
        "input": s.input_key,
        "input_etag": s.input_meta.etag,
        "style": s.request.style,
        "model_sha256": s.weights.sha256,
        "network": ctx.config.models.network,
        "output": s.output_key.as_str(),
        "frames": frames,
        "seconds": { "download": s.download_secs, "style": style_secs, "upload": upload_secs },
        "fps": if style_secs > 0.0 { frames as f64 / style_secs } else { 0.0 },
        "workers": ctx.opts.workers,
        "workers_used": workers,
        "outcome": kind,
        "error": error,
    });
    let mut lines = Vec::new();
    for r in &records {
        if let Ok(line) = serde_json::to_vec(r) {
            lines.extend(line);
            lines.push(b'\n');
        }
    }
    put_logs(ctx, &s.id, serde_json::to_vec_pretty(&summary).unwrap_or_default(), lines);
}

/// A frame prefix styled back to a frame prefix (`output_frames_prefix`), incrementally: only
/// new and changed frames are styled (see `job::frames`); nothing is staged on local disk.
fn run_frames(ctx: &Ctx, engine: &Engine, id: String, request: JobRequest, out: &str, stop: StopToken) -> Outcome {
    let Input::Prefix(input) = &request.input else {
        return poison("invalid-event", "`output_frames_prefix` needs an `input_prefix` of frames".into());
    };
    let weights = match ctx.model(&request.style) {
        Ok(w) => w,
        Err(o) => return o,
    };
    for (what, p) in [("input_prefix", input.as_str()), ("output_frames_prefix", out)] {
        if let Err(e) = ObjectKey::parse(p.trim_end_matches('/')) {
            return poison("invalid-key", format!("{what}: {e}"));
        }
    }
    // One job at a time per output prefix: a duplicate waits, then finds the frames done.
    let _taken = match Taken::claim(ctx, out) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let jpeg_quality = request.jpeg_quality.unwrap_or(ctx.config.service.jpeg_quality);
    let settings = BTreeMap::from([
        ("network".to_string(), ctx.config.models.network.clone()),
        ("jpeg_quality".to_string(), jpeg_quality.to_string()),
        ("precision".to_string(), ctx.opts.gpu.precision.name().to_string()),
    ]);
    let store = ctx.media.store();
    let spec = crate::job::frames::Spec {
        input: store.clone(),
        input_prefix: input.clone(),
        output: store,
        output_prefix: out.to_string(),
        desc: ctx.desc.clone(),
        weights: weights.clone(),
        settings,
        jpeg_quality,
        limits: Some(ctx.config.service.media_limits.clone()),
        max_frames: ctx.config.service.max_prefix_frames,
        retry_backoff: std::time::Duration::from_millis(500),
    };
    let log: FrameLog = Default::default();
    let (board, job_id) = (ctx.board.clone(), id.clone());
    let progress = Progress::new(ProgressMode::None, None)
        .with_frame_log(log.clone())
        .with_observer(Arc::new(move |done| board.progress(&job_id, done)));
    tracing::info!(job = %id, input = %input, style = %request.style, output = %out, "frames job started");
    let started = Instant::now();
    let result = crate::job::frames::run(engine, &spec, progress, &stop);
    let secs = started.elapsed().as_secs_f64();
    let (outcome, entries) = match result {
        Ok(report) => {
            let styled = report.count(crate::job::frames::Action::Styled) as u64;
            let outcome = if report.gpu_work || report.count(crate::job::frames::Action::Removed) > 0 {
                ctx.metrics.inc("stylestream_frames_total", &[], styled as f64);
                ctx.metrics.observe("stylestream_stage_seconds", &[("stage", "style")], secs);
                Outcome::Done { output: out.to_string(), frames: styled }
            } else {
                Outcome::AlreadyDone { output: out.to_string() }
            };
            (outcome, report.entries)
        }
        Err(e) => (frames_outcome(input, e), Vec::new()),
    };
    write_frames_log(ctx, &id, &request, input, out, &weights, secs, &outcome, &entries, &log);
    outcome
}

/// How a failed sequence job ends.
fn frames_outcome(input: &str, e: crate::job::frames::FramesError) -> Outcome {
    use crate::job::frames::FramesError as F;
    match e {
        F::Store(e) => store_outcome("missing-input", e),
        F::Media(m) => {
            let text = format!("{input}: {m}");
            if m.is_over_limit() {
                poison("oversized-input", text)
            } else {
                poison("corrupt-input", text)
            }
        }
        F::NoFrames(_) => poison("missing-input", e.to_string()),
        F::TooMany { .. } => poison("oversized-input", e.to_string()),
        F::SameAsInput(_) => poison("invalid-event", e.to_string()),
        F::Pipeline(PipelineError::Stopped(why)) => stopped(why),
        F::Pipeline(PipelineError::Media(m)) => poison("corrupt-input", format!("{input}: {m}")),
        F::Pipeline(p) => transient(Cause::Other, p.to_string()),
        F::Encode(_) => transient(Cause::Other, e.to_string()),
    }
}

/// `logs/<job id>.json` for a sequence job: the summary and every frame, styled, skipped or
/// removed; `logs/<job id>.frames.jsonl`: one line per styled frame (worker, GPU time).
#[allow(clippy::too_many_arguments)]
fn write_frames_log(
    ctx: &Ctx,
    id: &str,
    request: &JobRequest,
    input: &str,
    out: &str,
    weights: &Weights,
    secs: f64,
    outcome: &Outcome,
    entries: &[crate::job::frames::FrameEntry],
    log: &FrameLog,
) {
    use crate::job::frames::Action;
    let (kind, error) = log_kind(outcome);
    let count = |a: Action| entries.iter().filter(|e| e.action == a).count();
    let summary = serde_json::json!({
        "job": id,
        "input": input,
        "style": request.style,
        "model_sha256": weights.sha256,
        "network": ctx.config.models.network,
        "output": out,
        "styled": count(Action::Styled),
        "skipped": count(Action::Skipped),
        "removed": count(Action::Removed),
        "frames": entries,
        "seconds": secs,
        "outcome": kind,
        "error": error,
    });
    let records = log.lock().map(|l| l.clone()).unwrap_or_default();
    let mut lines = Vec::new();
    for r in &records {
        if let Ok(line) = serde_json::to_vec(r) {
            lines.extend(line);
            lines.push(b'\n');
        }
    }
    put_logs(ctx, id, serde_json::to_vec_pretty(&summary).unwrap_or_default(), lines);
}

/// The job log's name for an outcome, and its error text.
fn log_kind(outcome: &Outcome) -> (&'static str, Option<String>) {
    match outcome {
        Outcome::Done { .. } => ("succeeded", None),
        Outcome::AlreadyDone { .. } => ("already-done", None),
        Outcome::Poison { reason, .. } => ("failed", Some(reason.clone())),
        Outcome::Transient { reason, .. } | Outcome::Held { reason } => ("handed-back", Some(reason.clone())),
        Outcome::Interrupted => ("interrupted", None),
    }
}

/// Writes a job's summary and per-frame lines to the system store; a failure is logged only.
fn put_logs(ctx: &Ctx, id: &str, summary: Vec<u8>, lines: Vec<u8>) {
    let safe_id: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect();
    for (name, bytes) in [(format!("logs/{safe_id}.json"), summary), (format!("logs/{safe_id}.frames.jsonl"), lines)] {
        let written = ObjectKey::parse(&name).and_then(|k| ctx.system.put_bytes_atomic(&k, bytes));
        if let Err(e) = written {
            tracing::warn!(job = %id, error = %e, "could not write the job log");
        }
    }
}
