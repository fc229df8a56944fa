//! A segment job: segment `i` of a plan, styled by whichever replica took its message. It
//! decodes its input run (or downloads its frames), styles only its own frames, encodes them as
//! a closed-GOP run that starts with an IDR frame, and commits the run and then its manifest.
//! A segment already committed does no GPU work; either way, whoever sees every segment
//! committed and no output asks for the stitch.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::plan::{file_sha256, PlannedSegment, SegmentPlan};
use super::{
    committed, now_ms, read_segment, read_stopped, stitch_message, write_stopped, Keys, SegmentManifest,
    SegmentOptions, SEGMENT_MANIFEST_SCHEMA,
};
use crate::dataflow::{self, PipelineError};
use crate::frame::{Frame, SourceInfo};
use crate::job::run::{Finished, Observe, Report};
use crate::job::staging;
use crate::job::{Env, Job, JobError, PoisonCode, Sink, Source};
use crate::media::packets::{RunDecoder, RunIndex, RunWriter};
use crate::media::policy::MediaLimits;
use crate::media::{self, FrameSink, FrameSource, MediaError};
use crate::stop::{StopReason, StopToken};
use crate::storage::{BlockingStore, ObjectKey};
use crate::telemetry::progress::FrameLog;

/// How often a running segment reads its video's stop mark.
const STOP_POLL: Duration = Duration::from_secs(2);

/// Refuses work on a stopped video: cancelled, or past its deadline (then marked stopped for
/// every replica).
pub fn check_stopped(system: &BlockingStore, plan: &SegmentPlan) -> Result<(), JobError> {
    if let Some(s) = read_stopped(system, &plan.id).map_err(JobError::read)? {
        return Err(JobError::refused(s.code(), format!("video {} was {}: nothing is published", plan.id, s.reason)));
    }
    if plan.timed_out(now_ms()) {
        write_stopped(system, &plan.id, PoisonCode::TimedOut).map_err(JobError::write)?;
        return Err(JobError::refused(
            PoisonCode::TimedOut,
            format!("video {} ran longer than service.job_timeout_secs: nothing is published", plan.id),
        ));
    }
    Ok(())
}

/// The stitch message, when every segment is committed and the output is not there yet.
pub fn stitch_due(
    opts: &SegmentOptions,
    media: &BlockingStore,
    plan: &SegmentPlan,
) -> Result<Option<Vec<u8>>, JobError> {
    let done = committed(&opts.system, plan).map_err(JobError::read)?;
    if done.len() < plan.segments.len() {
        return Ok(None);
    }
    let output = ObjectKey::parse(&plan.output).map_err(JobError::read)?;
    let out = media.head(&output).map_err(JobError::read)?;
    let manifest = crate::storage::Manifest::key_for(&output).map_err(JobError::read)?;
    let recorded = media.head(&manifest).map_err(JobError::read)?;
    Ok((out.is_none() || recorded.is_none()).then(|| stitch_message(&plan.id)))
}

/// Runs segment `index` of `plan` (the job's source and sink say which).
pub fn run(
    job: &Job,
    env: &Env,
    observe: &Observe,
    log: &FrameLog,
    stop: &StopToken,
    report: &mut Report,
) -> Result<Finished, JobError> {
    let (Source::Segment { plan, index, media }, Sink::Segment { .. }) = (&job.source, &job.sink) else {
        return Err(JobError::Usage("a segment job reads a segment and writes a segment".into()));
    };
    let opts = env.segments.as_ref().ok_or_else(|| JobError::Usage("segments are off on this instance".into()))?;
    let system = &opts.system;
    let segment = plan.segments.get(*index as usize).ok_or_else(|| {
        JobError::refused(PoisonCode::InvalidEvent, format!("plan {} has no segment {index}", plan.id))
    })?;
    let t0 = Instant::now();
    check_stopped(system, plan)?;
    let output = format!("segment {index} of {}", plan.id);
    if read_segment(system, &plan.id, *index).map_err(JobError::read)?.is_some() {
        report.publish.extend(stitch_due(opts, media, plan)?);
        return Ok(Finished::AlreadyDone { output });
    }
    let dir = staging::create(&env.work_dir)
        .map_err(|e| JobError::Disk(format!("staging directory in {}: {e}", env.work_dir.display())))?;
    let source = stage_input(system, media, plan, segment, dir.path(), &env.limits.media)?;
    report.secs.stage = t0.elapsed().as_secs_f64();
    if let Some(why) = stop.reason() {
        return Err(PipelineError::Stopped(why).into());
    }
    // The output run, encoded as the plan says, headers out of band as the container wants.
    let blob = dir.path().join("output.run");
    let info = source.info().clone();
    let writer =
        RunWriter::create(&blob, &info, &plan.settings().encode, plan.stream.colour_tags(), plan.global_header)?;
    let index_slot: Arc<Mutex<Option<RunIndex>>> = Default::default();
    let sink = RunSink { writer: Some(writer), index: index_slot.clone() };
    let progress = observe.progress(Some(segment.frames), log);
    let started = Instant::now();
    let mut work = dataflow::Job::new(
        Some((media::Source::Other(source), media::Sink::Other(Box::new(sink)), progress)),
        job.style.desc.clone(),
        job.style.weights.clone(),
    );
    work.stop = stop.clone();
    work.gpu = Some((plan.precision, plan.kernels));
    let handle = env.engine.submit(work);
    // While it runs: the video's stop mark and deadline, read every few seconds.
    let result = loop {
        if let Some(r) = handle.wait_timeout(STOP_POLL) {
            break r;
        }
        match check_stopped(system, plan) {
            Err(JobError::Refused { code: PoisonCode::TimedOut, .. }) => stop.stop(StopReason::TimedOut),
            Err(JobError::Refused { code: PoisonCode::Cancelled, .. }) => stop.stop(StopReason::Cancelled),
            _ => {}
        }
    };
    report.secs.style = started.elapsed().as_secs_f64();
    let frames = result?;
    if frames != segment.frames {
        let reason = format!("segment {index} of {} gave {frames} frames, its plan says {}", plan.id, segment.frames);
        return Err(JobError::refused(PoisonCode::CorruptInput, reason));
    }
    let run = index_slot
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .ok_or_else(|| JobError::Other("the segment's run has no index".into()))?;
    // Commit: the run, then its manifest (which is what marks the segment done) — unless the
    // video was stopped meanwhile.
    check_stopped(system, plan)?;
    let t = Instant::now();
    let keys = Keys::new(&plan.id);
    let sha = file_sha256(&blob).map_err(|e| JobError::Disk(format!("{}: {e}", blob.display())))?;
    system.upload_atomic(&blob, &keys.output_run(*index).map_err(JobError::write)?).map_err(JobError::write)?;
    let manifest = SegmentManifest {
        schema: SEGMENT_MANIFEST_SCHEMA.into(),
        plan: plan.id.clone(),
        index: *index,
        frames,
        start_pts: segment.start_pts,
        end_pts: segment.end_pts,
        codec: plan.codec.clone(),
        crf: plan.crf,
        preset: plan.preset.clone(),
        run_sha256: sha,
        run,
        instance: opts.instance.clone(),
        seconds: crate::job::run::Secs {
            stage: report.secs.stage,
            style: report.secs.style,
            commit: t.elapsed().as_secs_f64(),
        },
        committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let json = serde_json::to_vec(&manifest).map_err(|e| JobError::Other(e.to_string()))?;
    system.put_bytes_atomic(&keys.output_manifest(*index).map_err(JobError::write)?, json).map_err(JobError::write)?;
    report.secs.commit = t.elapsed().as_secs_f64();
    report.publish.extend(stitch_due(opts, media, plan)?);
    Ok(Finished::Done { output, frames })
}

/// Downloads the segment's input into `dir` and opens it as a frame source that emits only the
/// segment's own frames.
fn stage_input(
    system: &BlockingStore,
    media: &BlockingStore,
    plan: &SegmentPlan,
    segment: &PlannedSegment,
    dir: &Path,
    limits: &MediaLimits,
) -> Result<Box<dyn FrameSource>, JobError> {
    let keys = Keys::new(&plan.id);
    if plan.frames_input {
        let mut files = Vec::with_capacity(segment.frame_keys.len());
        for (i, k) in segment.frame_keys.iter().enumerate() {
            let key = ObjectKey::parse(k).map_err(JobError::read)?;
            let ext =
                Path::new(key.name()).extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            let local = dir.join(format!("{i:08}.{ext}"));
            media.download(&key, &local).map_err(JobError::read)?;
            files.push(local);
        }
        let info = plan.stream.info(Some(segment.frames));
        return Ok(Box::new(FramesSource {
            files,
            next: 0,
            first_pts: segment.start_pts,
            info,
            limits: limits.clone(),
        }));
    }
    let blob = dir.join("input.run");
    let index_bytes = system
        .get_bytes(&keys.input_index(segment.index).map_err(JobError::read)?, 64 << 20)
        .map_err(JobError::read)?;
    let index: RunIndex = serde_json::from_slice(&index_bytes).map_err(|e| {
        JobError::refused(PoisonCode::CorruptInput, format!("segment {} input index: {e}", segment.index))
    })?;
    system.download(&keys.input_run(segment.index).map_err(JobError::read)?, &blob).map_err(JobError::read)?;
    let decoder = RunDecoder::open(&blob, &index, segment.start_pts..segment.end_pts, segment.frames, Some(limits))?;
    Ok(Box::new(RunSource(decoder)))
}

/// The engine's view of a segment's run decoder.
struct RunSource(RunDecoder);

impl FrameSource for RunSource {
    fn info(&self) -> &SourceInfo {
        self.0.info()
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        self.0.next_frame()
    }
}

/// A frame prefix's segment: its downloaded frames, timestamped by their place in the video.
struct FramesSource {
    files: Vec<std::path::PathBuf>,
    next: usize,
    first_pts: i64,
    info: SourceInfo,
    limits: MediaLimits,
}

impl FrameSource for FramesSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        let Some(path) = self.files.get(self.next) else { return Ok(None) };
        let image = media::image::read_rgb_within(path, Some(&self.limits))?;
        if (image.width, image.height) != (self.info.width, self.info.height) {
            let reason =
                format!("is {}x{}, the video is {}x{}", image.width, image.height, self.info.width, self.info.height);
            return Err(MediaError::Decode { path: path.clone(), reason });
        }
        let i = self.next as u64;
        self.next += 1;
        Ok(Some(Frame { index: i, pts: self.first_pts + i as i64, duration: 1, image, timing: Default::default() }))
    }
}

/// The engine's sink of a segment: its frames encoded into the output run; the run's index is
/// left in `index` when it finishes.
struct RunSink {
    writer: Option<RunWriter>,
    index: Arc<Mutex<Option<RunIndex>>>,
}

impl FrameSink for RunSink {
    fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        match self.writer.as_mut() {
            Some(w) => w.write(frame),
            None => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<(), MediaError> {
        if let Some(w) = self.writer.take() {
            let index = w.finish()?;
            if let Ok(mut slot) = self.index.lock() {
                *slot = Some(index);
            }
        }
        Ok(())
    }
}
