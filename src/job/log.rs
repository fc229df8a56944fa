//! Job logs in the system store: `logs/<job id>.json`, a summary of the job, and
//! `logs/<job id>.frames.jsonl`, one line per frame written (index, pts, worker, GPU ms,
//! attempts, written at). The one writer of both, for every kind of job.

use super::frames::{count, Action};
use super::outcome::Outcome;
use super::run::Report;
use crate::storage::{BlockingStore, ObjectKey};

/// The summary of a job: what it read and wrote, with what, how long each stage took, how it
/// ended. Frames sinks list every input frame (`frames`) with what happened to it.
pub fn summary(report: &Report, workers: usize) -> serde_json::Value {
    let workers_used: std::collections::BTreeSet<u32> = report.records.iter().map(|r| r.worker).collect();
    let style_secs = report.secs.style;
    let mut s = serde_json::json!({
        "job": report.id,
        "input": report.input,
        "input_etag": report.input_etag,
        "style": report.style,
        "model_sha256": report.model_sha256,
        "network": report.network,
        "output": report.output,
        "frames": report.frames,
        "seconds": report.secs,
        "fps": if style_secs > 0.0 { report.frames as f64 / style_secs } else { 0.0 },
        "workers": workers,
        "workers_used": workers_used,
        "outcome": report.outcome.kind().log_word(),
        "error": report.outcome.error(),
    });
    if let Some(obj) = s.as_object_mut() {
        if let Some(note) = &report.note {
            obj.insert("note".into(), note.clone().into());
        }
        if let Some(segments) = &report.segments {
            obj.insert("segments".into(), segments.clone());
        }
        if let Outcome::Planned { segments, .. } = &report.outcome {
            obj.insert("segments".into(), serde_json::json!({ "count": segments, "planned": true }));
        }
    }
    if let (Some(entries), Some(obj)) = (&report.entries, s.as_object_mut()) {
        obj.insert("styled".into(), count(entries, Action::Styled).into());
        obj.insert("skipped".into(), count(entries, Action::Skipped).into());
        obj.insert("removed".into(), count(entries, Action::Removed).into());
        obj.insert("frames".into(), serde_json::to_value(entries).unwrap_or_default());
    }
    s
}

/// One JSON line per frame written.
pub fn frame_lines(report: &Report) -> Vec<u8> {
    let mut lines = Vec::new();
    for r in &report.records {
        if let Ok(line) = serde_json::to_vec(r) {
            lines.extend(line);
            lines.push(b'\n');
        }
    }
    lines
}

/// Writes a job's summary and per-frame lines to `system`; a failure is logged, never fatal.
pub fn write(system: &BlockingStore, report: &Report, workers: usize) {
    let id = &report.id;
    let safe_id: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    let summary = serde_json::to_vec_pretty(&summary(report, workers)).unwrap_or_default();
    for (name, bytes) in
        [(format!("logs/{safe_id}.json"), summary), (format!("logs/{safe_id}.frames.jsonl"), frame_lines(report))]
    {
        let written = ObjectKey::parse(&name).and_then(|k| system.put_bytes_atomic(&k, bytes));
        if let Err(e) = written {
            tracing::warn!(job = %id, error = %e, "could not write the job log");
        }
    }
}
