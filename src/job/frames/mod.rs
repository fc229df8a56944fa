//! Stored frame sequences: the PNG/JPEG frames directly under a prefix of one store, styled
//! back as frames with the same names and formats under a prefix of another (or the same)
//! store, incrementally and as a stream.
//!
//! ```text
//! list inputs, outputs, records ─> plan: (frames × style) − done   (differential, dataflow::Planner)
//!   ─> each frame to look at, in name order: download ─ hash ─ still wanted? ─ decode
//!   ─> engine (styled on the GPU workers) ─> sink: encode like the input ─ upload ─ record
//! then: remove the outputs of deleted inputs, write the sequence manifest
//! ```
//!
//! A frame is identified by its name and the SHA-256 of its bytes (hashed as it is read; an
//! ETag equal to the one recorded only spares the download), the style by its weights' hash and
//! the settings that change the output. Bookkeeping lives under `<output prefix>.stylestream/`:
//! a record per frame (`frames/<name>.json`), written right after the frame itself, and the
//! sequence manifest (`sequence.json`) last — so a run killed at any point loses at most the
//! frames in flight, and a trigger on a complete sequence costs three listings and one read.
//! Nothing is staged on local disk: memory holds the frames in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::run::{Finished, Observe, Report as RunReport};
use super::stage::{self, folder};
use super::{Env, Job, JobError, OutputKind, PoisonCode, Sink, Source};
use crate::dataflow::{self, PipelineError, Planner};
use crate::frame::{Frame, Rate, RgbFrame, SourceInfo};
use crate::media::image::{decode_still, encode_still, StillForm};
use crate::media::policy::MediaLimits;
use crate::media::{self, FrameSink, FrameSource, MediaError};
use crate::stop::StopToken;
use crate::storage::{Meta, ObjectKey, Store, StoreError};
use crate::telemetry::progress::FrameLog;

mod plan;
mod transfer;

use plan::{prefix_url, record_key, style_key, Plan, Todo};
use transfer::{prefetch, ChannelSource, Feed, Io, Reader, StoreSink};

/// Folder of the bookkeeping objects, under the output prefix.
pub const BOOKKEEPING: &str = ".stylestream/";
const RECORDS: &str = ".stylestream/frames/";
const MANIFEST: &str = ".stylestream/sequence.json";
pub const FRAME_SCHEMA: &str = "stylestream.frame/1";
pub const SEQUENCE_SCHEMA: &str = "stylestream.sequence/1";
/// Largest frame object read.
pub const MAX_FRAME_BYTES: u64 = 512 << 20;
const MAX_RECORD_BYTES: u64 = 64 << 10;
const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// Tries of one frame's store request on passing trouble (on top of the store's own retries).
const ATTEMPTS: u32 = 5;
/// Frames downloaded ahead of the GPU, and frames being uploaded at once: a store's latency
/// (tens of ms a request) is hidden behind this many requests in flight.
const IN_FLIGHT: usize = 8;

/// What happened to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Styled,
    Skipped,
    /// Its input is gone: the styled frame and its record were deleted.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FrameEntry {
    pub name: String,
    pub action: Action,
    pub why: &'static str,
}

/// How many of `entries` had `action`.
pub fn count(entries: &[FrameEntry], action: Action) -> usize {
    entries.iter().filter(|e| e.action == action).count()
}

/// The record of one finished frame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FrameRecord {
    schema: String,
    name: String,
    input_sha256: String,
    input_etag: Option<String>,
    input_size: u64,
    /// Hash of the model's weights and the settings.
    style_key: String,
    output_sha256: String,
    output_size: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SequenceManifest {
    schema: String,
    style_key: String,
    model_sha256: String,
    settings: BTreeMap<String, String>,
    frames: Vec<FrameRecord>,
    finished_at: chrono::DateTime<chrono::Utc>,
}

/// One input frame as listed.
#[derive(Debug, Clone)]
struct Listed {
    name: String,
    key: ObjectKey,
    meta: Meta,
}

/// A frame on its way through the engine: what its sink needs besides the pixels.
struct Pending {
    name: String,
    sha256: String,
    meta: Meta,
    form: StillForm,
}

/// State shared by the reader (the engine's decode thread) and the sink (its encoder thread).
#[derive(Default)]
struct Shared {
    pending: HashMap<u64, Pending>,
    made: BTreeMap<String, FrameRecord>,
    entries: Vec<FrameEntry>,
    /// The reader's or the sink's own error (the engine only sees a media error).
    failure: Option<JobError>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A frame's identity for the planner: its name and its content.
fn identity(name: &str, sha: &str) -> String {
    format!("{sha}:{name}")
}

/// Runs a job whose sink is stored frames: styles what is new or changed, skips what is done,
/// removes what lost its input, then writes the manifest. `stop` stops it (frames already
/// written stay, with their records: a rerun continues from there).
pub fn run(
    job: &Job,
    env: &Env,
    observe: &Observe,
    log: &FrameLog,
    stop: &StopToken,
    report: &mut RunReport,
) -> Result<Finished, JobError> {
    let (
        Source::StoredFrames { store: input, prefix: in_prefix, .. },
        Sink::StoredFrames { store: output, prefix: out_prefix },
    ) = (&job.source, &job.sink)
    else {
        return Err(JobError::Usage(format!(
            "{} cannot be written as frames to {}",
            job.source.name(),
            job.sink.name()
        )));
    };
    let (input, output) = (input.store(), output.store());
    let (in_prefix, out_prefix) = (folder(in_prefix), folder(out_prefix));
    if input.url() == output.url() && in_prefix == out_prefix {
        let reason = format!(
            "the output {} is the input: refusing to write styled frames over their originals",
            prefix_url(&output, &out_prefix)
        );
        return Err(JobError::refused(PoisonCode::InvalidEvent, reason));
    }
    let t0 = Instant::now();
    // Every store request of the job (listings, records, downloads ahead, uploads behind) runs
    // on a runtime of the job's own.
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("frames-io")
            .enable_all()
            .build()
            .map_err(|e| JobError::Other(format!("starting the frame transfers: {e}")))?,
    );
    let io = Io { rt: rt.clone(), backoff: env.retry_backoff, stop: stop.clone() };
    let style_key = style_key(&job.style.weights.sha256, &job.settings.identity(OutputKind::Frames));
    let plan = Plan::make(&io, &input, &in_prefix, &output, &out_prefix, &style_key, env.limits.max_prefix_frames)?;
    let frames = plan.frames;
    let Some(todo) = plan.todo else {
        let entries = frames
            .iter()
            .map(|f| FrameEntry { name: f.name.clone(), action: Action::Skipped, why: "sequence complete" })
            .collect();
        report.entries = Some(entries);
        report.secs.stage = t0.elapsed().as_secs_f64();
        return Ok(Finished::AlreadyDone { output: job.sink.name() });
    };
    let Todo { planner, known, records, candidates, shared } = todo;
    report.secs.stage = t0.elapsed().as_secs_f64();

    // Frames that may need styling (those whose content turns out unchanged are skipped).
    let started = Instant::now();
    let total = candidates.len() as u64;
    let downloads = prefetch(&rt, input.clone(), candidates, io.clone());
    let records = Arc::new(records);
    let mut reader = Reader {
        downloads,
        io: io.clone(),
        output: output.clone(),
        out_prefix: out_prefix.clone(),
        planner,
        known,
        records: records.clone(),
        limits: env.limits.media.clone(),
        shared: shared.clone(),
        next_index: 0,
    };
    let mut gpu_work = false;
    let mut styled = 0;
    // The reader stays on this thread (its planner is a dataflow of its own) and feeds the
    // engine through a channel; the first frame tells the frames' size.
    if let Some(first) = reader.next()? {
        gpu_work = true;
        let info = SourceInfo {
            width: first.image.width,
            height: first.image.height,
            time_base: Rate::new(1, 1),
            frame_rate: Rate::new(0, 1),
            frames: Some(total),
            frames_exact: false,
        };
        let (tx, rx) = sync_channel::<Feed>(2);
        let source = ChannelSource { info, rx, first: Some(first) };
        let sink = StoreSink {
            io: io.clone(),
            store: output.clone(),
            uploads: Vec::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            out_prefix: out_prefix.clone(),
            style_key: style_key.clone(),
            jpeg_quality: job.settings.jpeg_quality,
            shared: shared.clone(),
        };
        let progress = observe.progress(Some(total), log);
        let mut work = dataflow::Job::new(
            Some((media::Source::Other(Box::new(source)), media::Sink::Other(Box::new(sink)), progress)),
            job.style.desc.clone(),
            job.style.weights.clone(),
        );
        work.stop = stop.clone();
        let handle = env.engine.submit(work);
        let mut read_error = None;
        loop {
            match reader.next() {
                Ok(Some(frame)) => {
                    if tx.send(Feed::Frame(frame)).is_err() {
                        break; // the job ended (stopped or failed): its result says why
                    }
                }
                Ok(None) => {
                    let _ = tx.send(Feed::End);
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Feed::Failed(e.to_string()));
                    read_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let result = handle.wait();
        if let Some(e) = read_error {
            return Err(e);
        }
        // The sink's own error says more than the engine's view of it.
        if let Some(e) = shared.lock().ok().and_then(|mut s| s.failure.take()) {
            return Err(e);
        }
        styled = result?;
    }
    report.secs.style = started.elapsed().as_secs_f64();

    // The output mirrors the input: styled frames whose input is gone go, with their records.
    let t = Instant::now();
    let names: BTreeSet<&str> = frames.iter().map(|f| f.name.as_str()).collect();
    let mut removed = 0;
    for name in records.keys().filter(|n| !names.contains(n.as_str())) {
        let out = ObjectKey::parse(&format!("{out_prefix}{name}")).map_err(JobError::write)?;
        io.blocking("delete output", || output.delete(&out)).map_err(JobError::write)?;
        let rk = record_key(&out_prefix, name).map_err(JobError::write)?;
        io.blocking("delete record", || output.delete(&rk)).map_err(JobError::write)?;
        push_entry(&shared, name, Action::Removed, "input deleted");
        removed += 1;
    }

    // The manifest, last: every frame's record as it is now.
    let (mut entries, made) = match shared.lock() {
        Ok(mut s) => (std::mem::take(&mut s.entries), std::mem::take(&mut s.made)),
        Err(_) => return Err(JobError::Other("the sequence's shared state is unusable".into())),
    };
    let mut all = Vec::with_capacity(frames.len());
    for f in &frames {
        match made.get(&f.name).or_else(|| records.get(&f.name)) {
            Some(r) => all.push(r.clone()),
            None => return Err(JobError::Other(format!("{}: no record after the run", f.name))),
        }
    }
    let manifest = SequenceManifest {
        schema: SEQUENCE_SCHEMA.into(),
        style_key,
        model_sha256: job.style.weights.sha256.clone(),
        settings: job.settings.identity(OutputKind::Frames),
        frames: all,
        finished_at: chrono::Utc::now(),
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| JobError::Other(e.to_string()))?;
    let manifest_key = ObjectKey::parse(&format!("{out_prefix}{MANIFEST}")).map_err(JobError::write)?;
    io.blocking("write manifest", || output.put_bytes_atomic(&manifest_key, bytes.clone())).map_err(JobError::write)?;
    report.secs.commit = t.elapsed().as_secs_f64();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    report.entries = Some(entries);
    if gpu_work || removed > 0 {
        Ok(Finished::Done { output: job.sink.name(), frames: styled })
    } else {
        Ok(Finished::AlreadyDone { output: job.sink.name() })
    }
}

fn push_entry(shared: &Mutex<Shared>, name: &str, action: Action, why: &'static str) {
    if let Ok(mut s) = shared.lock() {
        s.entries.push(FrameEntry { name: name.to_string(), action, why });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_keys_change_with_the_model_and_every_setting() {
        let s = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let a = style_key("m1", &s("jpeg_quality", "90"));
        assert_eq!(a, style_key("m1", &s("jpeg_quality", "90")));
        assert_ne!(a, style_key("m2", &s("jpeg_quality", "90")));
        assert_ne!(a, style_key("m1", &s("jpeg_quality", "91")));
        // No ambiguity between keys and values.
        assert_ne!(style_key("m", &s("ab", "c")), style_key("m", &s("a", "bc")));
    }

    #[test]
    fn frames_are_png_or_jpeg_and_not_hidden() {
        use crate::media::sequence::is_frame_name;
        assert!(is_frame_name("0001.png") && is_frame_name("a.JPG") && is_frame_name("b.jpeg"));
        assert!(!is_frame_name("fps.txt") && !is_frame_name(".0001.png") && !is_frame_name("_READY"));
        assert_eq!(folder(""), "");
        assert_eq!(folder("a/b"), "a/b/");
        assert_eq!(folder("/a/b/"), "a/b/");
    }
}
