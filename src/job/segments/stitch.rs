//! The stitch of a segmented video: once every segment is committed, their runs are joined in
//! order into one container with one header (decode timestamps set across the whole stream),
//! the source's audio handled once for the whole video as a single instance does, and the
//! output committed with the video's manifest and job log; only then are the segments, their
//! inputs and the plan removed. Any number of stitch messages give one output: the manifest
//! decides, and a stitch that finds the output done only cleans up.

use std::time::Instant;

use super::plan::{file_sha256, SegmentPlan};
use super::segment::check_stopped;
use super::{committed, read_segment, remove_plan, Keys, SegmentManifest};
use crate::job::run::{Finished, Report};
use crate::job::stage::Claim;
use crate::job::staging;
use crate::job::{Env, Job, JobError, OutputKind, PoisonCode, Source};
use crate::media::packets;
use crate::media::policy::InputPolicy;
use crate::media::video_out::Companion;
use crate::storage::{BlockingStore, Manifest, Meta, ObjectKey};

/// Stitches the plan of the job's source into its output.
pub fn run(job: &Job, env: &Env, report: &mut Report) -> Result<Finished, JobError> {
    let Source::Segments { plan, media } = &job.source else {
        return Err(JobError::Usage("a stitch reads the segments of a plan".into()));
    };
    let opts = env.segments.as_ref().ok_or_else(|| JobError::Usage("segments are off on this instance".into()))?;
    let system = &opts.system;
    let t0 = Instant::now();
    check_stopped(system, plan)?;
    let output = ObjectKey::parse(&plan.output).map_err(JobError::write)?;
    let etag = plan.input_etag.clone().unwrap_or_default();
    let identity = plan.settings().identity(OutputKind::Video);
    if media.is_done(&output, &etag, &plan.model_sha256, &identity).map_err(JobError::read)? {
        remove_plan(system, &plan.id).map_err(JobError::write)?;
        return Ok(Finished::AlreadyDone { output: plan.output.clone() });
    }
    let done = committed(system, plan).map_err(JobError::read)?;
    if done.len() < plan.segments.len() {
        // Early or duplicate: the last segment to commit asks again.
        tracing::info!(plan = %plan.id, committed = done.len(), segments = plan.segments.len(), "stitch not due yet");
        return Ok(Finished::AlreadyDone {
            output: format!(
                "{} (stitch not due: {} of {} segments committed)",
                plan.output,
                done.len(),
                plan.segments.len()
            ),
        });
    }
    let _claim = Claim::take(env, output.as_str())?;
    if let Some(owner) = &env.owner {
        crate::job::stage::remove_stale_partials(media, owner, &output);
    }
    let dir = staging::create(&env.work_dir)
        .map_err(|e| JobError::Disk(format!("staging directory in {}: {e}", env.work_dir.display())))?;
    let keys = Keys::new(&plan.id);
    // The segments' runs, each checked against its manifest.
    let mut runs = Vec::with_capacity(plan.segments.len());
    let mut manifests = Vec::with_capacity(plan.segments.len());
    for s in &plan.segments {
        let m = read_segment(system, &plan.id, s.index).map_err(JobError::read)?;
        let Some(m) = m else {
            return Err(JobError::Busy(format!(
                "segment {} of {} is gone: another stitch may have finished",
                s.index, plan.id
            )));
        };
        let blob = dir.path().join(format!("{}.run", s.index));
        system.download(&keys.output_run(s.index).map_err(JobError::read)?, &blob).map_err(JobError::read)?;
        let sha = file_sha256(&blob).map_err(|e| JobError::Disk(e.to_string()))?;
        if sha != m.run_sha256 || m.frames != s.frames {
            return Err(JobError::refused(
                PoisonCode::CorruptInput,
                format!("segment {} of {}: its run does not match its manifest", s.index, plan.id),
            ));
        }
        runs.push((blob, m.run.clone()));
        manifests.push(m);
    }
    // The audio, once for the whole video, from the source itself (a video input).
    let companion = if plan.frames_input {
        Companion::default()
    } else {
        let input = ObjectKey::parse(&plan.input).map_err(JobError::read)?;
        let local = dir.path().join("input.media");
        let meta = media.download(&input, &local).map_err(JobError::read)?;
        if meta.etag != plan.input_etag {
            let reason = format!("{} changed while its segments were styled", plan.input);
            return Err(JobError::refused(PoisonCode::CorruptInput, reason));
        }
        Companion { path: Some(local), policy: InputPolicy::Restricted(env.limits.media.clone()) }
    };
    report.secs.stage = t0.elapsed().as_secs_f64();
    let t = Instant::now();
    let ext = plan.output.rsplit('.').next().unwrap_or("mp4").to_ascii_lowercase();
    let local_out = dir.path().join(format!("output.{ext}"));
    let info = plan.stream.info(Some(plan.frames));
    let frames = packets::join(&local_out, &runs, &info, &plan.settings().encode, &companion)?;
    report.secs.style = t.elapsed().as_secs_f64();
    // Commit as a single instance does: the output, then the video's manifest.
    let t = Instant::now();
    let out_meta = media.upload_atomic(&local_out, &output).map_err(JobError::write)?;
    let input_key = ObjectKey::parse(plan.input.trim_end_matches('/')).map_err(JobError::write)?;
    let in_meta = Meta { size: plan.input_size, etag: plan.input_etag.clone(), last_modified: chrono::Utc::now() };
    let manifest = Manifest::new(&input_key, &in_meta, &plan.model_sha256, &plan.network, frames, &output, &out_meta)
        .with_settings(identity);
    media.write_manifest(&manifest).map_err(JobError::write)?;
    report.secs.commit = t.elapsed().as_secs_f64();
    // The video's job log: under the parent job's id, in place of its plan's.
    report.id = plan.id.clone();
    report.frames = frames;
    report.input_etag = plan.input_etag.clone();
    report.segments = Some(segment_log(plan, &manifests));
    // Only now: the segments, their inputs and the plan go.
    if let Err(e) = remove_plan(system, &plan.id) {
        tracing::warn!(plan = %plan.id, error = %e, "could not remove the plan's objects (the next stitch message removes them)");
    }
    Ok(Finished::Done { output: plan.output.clone(), frames })
}

/// Each segment of the video in its job log: which instance styled it, its frames, its timings.
fn segment_log(plan: &SegmentPlan, manifests: &[SegmentManifest]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = manifests
        .iter()
        .map(|m| {
            serde_json::json!({
                "index": m.index,
                "instance": m.instance,
                "frames": m.frames,
                "pts": [m.start_pts, m.end_pts],
                "seconds": m.seconds,
                "committed_at": m.committed_at,
            })
        })
        .collect();
    serde_json::json!({ "plan": plan.id, "count": plan.segments.len(), "planning_secs": plan.planning_secs, "segments": list })
}

/// Whether `system` holds a plan's objects for `id` (for clean-up checks in tests and logs).
pub fn leftovers(system: &BlockingStore, id: &str) -> usize {
    system.list(Keys::new(id).prefix()).map(|l| l.len()).unwrap_or(0)
}
