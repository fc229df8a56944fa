//! The one path of every job: stage → engine → commit, and the report of how it went.

use std::sync::Arc;
use std::time::Instant;

use super::error::JobError;
use super::frames::FrameEntry;
use super::outcome::Outcome;
use super::stage::{self, Staged};
use super::{commit, frames, segments, Env, Job, Sink, Source};
use crate::dataflow;
use crate::job::open::open_ends;
use crate::stop::StopToken;
use crate::telemetry::progress::{FrameLog, FrameObserver, FrameRecord, Progress, ProgressMode};

/// How a job that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Styled and committed: `frames` frames styled.
    Done { output: String, frames: u64 },
    /// Its output was complete already: nothing was styled.
    AlreadyDone { output: String },
    /// Cut into segment jobs (their messages are in the report's `publish`).
    Planned { output: String, segments: usize },
}

/// Who watches a job: the terminal (a bar, JSON lines), a status page.
#[derive(Clone)]
pub struct Observe {
    pub mode: ProgressMode,
    /// Told the number of frames to come once the input is open.
    pub on_total: Option<Arc<dyn Fn(Option<u64>) + Send + Sync>>,
    /// Told the frames written so far after each frame.
    pub on_frames: Option<FrameObserver>,
}

impl Observe {
    /// Nobody: no bar, no callbacks.
    pub fn none() -> Self {
        Self { mode: ProgressMode::None, on_total: None, on_frames: None }
    }

    /// A terminal in `mode` (a bar, JSON lines, nothing).
    pub fn terminal(mode: ProgressMode) -> Self {
        Self { mode, ..Self::none() }
    }

    pub(crate) fn progress(&self, total: Option<u64>, log: &FrameLog) -> Progress {
        if let Some(f) = &self.on_total {
            f(total);
        }
        let p = Progress::new(self.mode, total).with_frame_log(log.clone());
        match &self.on_frames {
            Some(o) => p.with_observer(o.clone()),
            None => p,
        }
    }
}

/// Seconds a job spent in each of its stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Secs {
    /// Checks, the done check, downloads and listings.
    #[serde(rename = "download")]
    pub stage: f64,
    /// From submission to the engine to its last frame written.
    pub style: f64,
    /// Uploads, moves and manifests.
    #[serde(rename = "upload")]
    pub commit: f64,
}

/// What a job did: the facts its log, the metrics and the command line report.
pub struct Report {
    pub id: String,
    pub input: String,
    pub output: String,
    pub style: String,
    pub model_sha256: String,
    pub network: String,
    /// The input version styled (a stored object's ETag, a hash of a frame prefix).
    pub input_etag: Option<String>,
    /// Frames styled.
    pub frames: u64,
    pub secs: Secs,
    /// One record per frame written (worker, GPU time, attempts).
    pub records: Vec<FrameRecord>,
    /// Frames sinks: every input frame, styled, skipped or removed.
    pub entries: Option<Vec<FrameEntry>>,
    pub result: Result<Finished, JobError>,
    /// What `result` means for a queue (see `JobError::outcome`).
    pub outcome: Outcome,
    /// Messages to publish (with confirms) before the job's own message is settled: a plan's
    /// segment jobs, a stitch that is due.
    pub publish: Vec<Vec<u8>>,
    /// Why a long video was styled whole rather than cut into segments.
    pub note: Option<String>,
    /// A stitched video: each segment, where and how it was styled.
    pub segments: Option<serde_json::Value>,
}

impl Report {
    /// The report of a job that ended with `error` before anything was known of it.
    pub fn failed(id: &str, output: &str, error: JobError) -> Self {
        Report {
            id: id.to_string(),
            input: String::new(),
            output: output.to_string(),
            style: String::new(),
            model_sha256: String::new(),
            network: String::new(),
            input_etag: None,
            frames: 0,
            secs: Secs::default(),
            records: Vec::new(),
            entries: None,
            outcome: error.outcome("", None),
            result: Err(error),
            publish: Vec::new(),
            note: None,
            segments: None,
        }
    }
}

/// Runs `job` to its end on `env`'s engine; `stop` cancels it (nothing is published then).
pub fn run(job: &Job, env: &Env, observe: &Observe, stop: &StopToken) -> Report {
    let mut report = Report {
        input: job.source.name(),
        style: job.style.name.clone(),
        model_sha256: job.style.weights.sha256.clone(),
        network: job.settings.network.clone(),
        ..Report::failed(&job.id, &job.sink.name(), JobError::Other("not run".into()))
    };
    let log: FrameLog = Default::default();
    let mut staging = None;
    let result = match (&job.source, &job.sink) {
        (_, Sink::StoredFrames { .. }) => frames::run(job, env, observe, &log, stop, &mut report),
        (_, Sink::Segment { .. }) => segments::segment::run(job, env, observe, &log, stop, &mut report),
        (Source::Segments { .. }, _) => segments::stitch::run(job, env, &mut report),
        _ => run_file(job, env, observe, &log, stop, &mut report, &mut staging),
    };
    report.records = log.lock().map(|l| l.clone()).unwrap_or_default();
    report.outcome = match &result {
        Ok(Finished::Done { output, frames }) => Outcome::Done { output: output.clone(), frames: *frames },
        Ok(Finished::AlreadyDone { output }) => Outcome::AlreadyDone { output: output.clone() },
        Ok(Finished::Planned { output, segments }) => Outcome::Planned { output: output.clone(), segments: *segments },
        Err(e) => e.outcome(&report.input, staging.as_deref()),
    };
    if report.outcome.kind().is_failure() || matches!(report.outcome, Outcome::Transient { .. } | Outcome::Held { .. })
    {
        report.publish.clear();
    }
    if let Ok(Finished::Done { frames, .. }) = &result {
        report.frames = *frames;
    }
    report.result = result;
    report
}

/// A job whose output is one file: a video or a still.
fn run_file(
    job: &Job,
    env: &Env,
    observe: &Observe,
    log: &FrameLog,
    stop: &StopToken,
    report: &mut Report,
    staging: &mut Option<std::path::PathBuf>,
) -> Result<Finished, JobError> {
    let ready = match stage::stage(job, env)? {
        Staged::Done { output } => return Ok(Finished::AlreadyDone { output }),
        Staged::Ready(r) => r,
    };
    *staging = ready.dir.as_ref().map(|d| d.path().to_path_buf());
    report.secs.stage = ready.secs;
    report.input_etag = ready.input_meta.as_ref().and_then(|m| m.etag.clone());
    if let Some(why) = stop.reason() {
        return Err(dataflow::PipelineError::Stopped(why).into());
    }
    // A long stored video (or frame prefix) becomes segment jobs any replica can take.
    if let (Some(opts), Sink::StoredVideo { .. }) = (&env.segments, &job.sink) {
        if opts.segment_secs > 0.0 {
            let planned = match &ready.to_cut {
                Some(c) => segments::plan::plan_frames(job, &ready, &c.frames, c.fps, c.size, opts)?,
                None => segments::plan::plan_video(job, &ready, opts)?,
            };
            match planned {
                segments::Planned::Plan { plan, messages } => {
                    report.secs.stage = ready.secs;
                    report.publish = messages;
                    tracing::info!(job = %job.id, segments = plan.segments.len(), frames = plan.frames, "cut into segments");
                    return Ok(Finished::Planned { output: report.output.clone(), segments: plan.segments.len() });
                }
                segments::Planned::Whole { why } => {
                    tracing::info!(job = %job.id, %why, "styled whole");
                    report.note = Some(format!("styled whole: {why}"));
                }
            }
        }
    }
    let policy = job.source.policy(&env.limits.media);
    let (source, sink) = open_ends(&ready.local_in, &ready.local_out, ready.fps, &job.settings.encode, &policy)?;
    let progress = observe.progress(source.info().frames, log);
    tracing::info!(job = %job.id, input = %report.input, style = %job.style.name, output = %report.output, "job started");
    let started = Instant::now();
    let mut work =
        dataflow::Job::new(Some((source, sink, progress)), job.style.desc.clone(), job.style.weights.clone());
    work.stop = stop.clone();
    let frames = env.engine.submit(work).wait();
    report.secs.style = started.elapsed().as_secs_f64();
    let frames = frames?;
    let t = Instant::now();
    commit::commit(job, &ready, frames)?;
    report.secs.commit = t.elapsed().as_secs_f64();
    Ok(Finished::Done { output: report.output.clone(), frames })
}
