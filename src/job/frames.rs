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
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Store requests of one frames job: on its runtime, retried on passing trouble.
#[derive(Clone)]
struct Io {
    rt: Arc<tokio::runtime::Runtime>,
    /// Pause before the first retry of a request (doubles, up to 8 s).
    backoff: Duration,
    stop: StopToken,
}

impl Io {
    /// Runs the request `f` makes until it succeeds, fails for good, or has failed `ATTEMPTS`
    /// times in passing ways.
    async fn retrying<T, F: std::future::Future<Output = Result<T, StoreError>>>(
        &self,
        what: &str,
        mut f: impl FnMut() -> F,
    ) -> Result<T, StoreError> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS && self.stop.reason().is_none() => {
                    tracing::warn!(what, attempt, error = %e, "store request failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// One store request made from a plain thread: retried as [`Io::retrying`] says.
    fn blocking<T, F: std::future::Future<Output = Result<T, StoreError>>>(
        &self,
        what: &str,
        f: impl FnMut() -> F,
    ) -> Result<T, StoreError> {
        self.rt.block_on(self.retrying(what, f))
    }
}

/// Downloads the candidates in order, `IN_FLIGHT` at a time, ahead of the reader (memory: at
/// most `2 × IN_FLIGHT` frames' bytes waiting).
fn prefetch(
    rt: &tokio::runtime::Runtime,
    store: Store,
    todo: Vec<Listed>,
    io: Io,
) -> tokio::sync::mpsc::Receiver<(Listed, Result<Vec<u8>, StoreError>)> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    rt.spawn(async move {
        let mut downloads = futures::stream::iter(todo)
            .map(|f| {
                let (store, io) = (store.clone(), io.clone());
                async move {
                    let got = io.retrying("read frame", || store.get_bytes(&f.key, MAX_FRAME_BYTES)).await;
                    (f, got)
                }
            })
            .buffered(IN_FLIGHT);
        while let Some(item) = downloads.next().await {
            if tx.send(item).await.is_err() {
                break; // the reader is gone
            }
        }
    });
    rx
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

/// What is there, and what is left to do.
struct Plan {
    /// The input frames, in name order.
    frames: Vec<Listed>,
    /// `None`: the sequence is complete.
    todo: Option<Todo>,
}

struct Todo {
    planner: Planner,
    /// Frames whose content is known without a download (their ETag is the recorded one).
    known: BTreeSet<String>,
    /// The records of earlier runs, by frame name.
    records: BTreeMap<String, FrameRecord>,
    /// Frames to download and look at, in name order.
    candidates: Vec<Listed>,
    shared: Arc<Mutex<Shared>>,
}

impl Plan {
    /// Lists the input frames, the output frames, their records and the manifest; plans
    /// (frames × style) − done.
    fn make(
        io: &Io,
        input: &Store,
        in_prefix: &str,
        output: &Store,
        out_prefix: &str,
        style_key: &str,
        max_frames: usize,
    ) -> Result<Plan, JobError> {
        let listed = io.blocking("list input", || input.list_with_meta(in_prefix)).map_err(JobError::read)?;
        let frames: Vec<Listed> = stage::frames_under(listed, in_prefix)
            .into_iter()
            .map(|(key, meta)| Listed { name: key.name().to_string(), key, meta })
            .collect();
        if frames.is_empty() {
            return Err(JobError::refused(
                PoisonCode::MissingInput,
                format!("no PNG/JPEG frames under {}", prefix_url(input, in_prefix)),
            ));
        }
        if frames.len() > max_frames {
            let reason = format!(
                "{} holds {} frames, over the limit of {max_frames}",
                prefix_url(input, in_prefix),
                frames.len()
            );
            return Err(JobError::refused(PoisonCode::OversizedInput, reason));
        }
        let listed_out = io.blocking("list output", || output.list_with_meta(out_prefix)).map_err(JobError::read)?;
        let records_prefix = format!("{out_prefix}{RECORDS}");
        let manifest_key = ObjectKey::parse(&format!("{out_prefix}{MANIFEST}")).map_err(JobError::write)?;
        let mut outputs: BTreeMap<String, Meta> = BTreeMap::new();
        let mut record_names = BTreeSet::new();
        let mut manifest_listed = false;
        for (k, meta) in listed_out {
            if k == manifest_key {
                manifest_listed = true;
            } else if let Some(name) = k.as_str().strip_prefix(&records_prefix).and_then(|n| n.strip_suffix(".json")) {
                record_names.insert(name.to_string());
            } else if k.parent().map(|p| format!("{p}/")).unwrap_or_default() == out_prefix {
                outputs.insert(k.name().to_string(), meta);
            }
        }

        // A complete sequence: the manifest says so, and the listings agree.
        if manifest_listed {
            let manifest = io
                .blocking("read manifest", || output.get_bytes(&manifest_key, MAX_MANIFEST_BYTES))
                .map_err(JobError::read)?;
            if let Ok(m) = serde_json::from_slice::<SequenceManifest>(&manifest) {
                if is_complete(&m, style_key, &frames, &outputs)
                    && record_names.iter().all(|n| frames.iter().any(|f| &f.name == n))
                {
                    return Ok(Plan { frames, todo: None });
                }
            }
        }

        // The records of earlier runs, `IN_FLIGHT` reads at a time (an unreadable one counts as
        // absent: its frame is made again).
        let mut records: BTreeMap<String, FrameRecord> = BTreeMap::new();
        let keys = record_names
            .iter()
            .map(|n| record_key(out_prefix, n).map(|k| (n.clone(), k)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(JobError::read)?;
        let read = io.rt.block_on(async {
            use futures::StreamExt;
            futures::stream::iter(keys)
                .map(|(name, key)| {
                    let (store, io) = (output.clone(), io.clone());
                    async move {
                        let got = io.retrying("read record", || store.get_bytes(&key, MAX_RECORD_BYTES)).await;
                        (name, key, got)
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        });
        for (name, key, bytes) in read {
            match bytes.map(|b| serde_json::from_slice::<FrameRecord>(&b)) {
                Ok(Ok(r)) if r.name == name => {
                    records.insert(name, r);
                }
                Ok(_) => tracing::warn!(record = %output.url_of(&key), "ignoring an unreadable frame record"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(JobError::read(e)),
            }
        }

        // The plan: frames × style − done. Done = a record made with this style whose output
        // is there, of the size recorded.
        let mut planner = Planner::new();
        planner.style("style", style_key);
        for (name, r) in &records {
            if r.style_key == style_key && outputs.get(name).is_some_and(|m| m.size == r.output_size) {
                planner.done(&identity(name, &r.input_sha256), style_key);
            }
        }
        // Frames whose ETag and size are the recorded ones: content known without a download.
        let mut known = BTreeSet::new();
        for f in &frames {
            if let Some(r) = records.get(&f.name) {
                if r.input_etag.is_some() && r.input_etag == f.meta.etag && r.input_size == f.meta.size {
                    planner.video(&f.name, &identity(&f.name, &r.input_sha256));
                    known.insert(f.name.clone());
                }
            }
        }
        let work: BTreeSet<String> = planner.plan().into_iter().map(|w| w.video).collect();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut candidates = Vec::new();
        for f in &frames {
            if known.contains(&f.name) && !work.contains(&f.name) {
                push_entry(&shared, &f.name, Action::Skipped, "unchanged");
            } else {
                candidates.push(f.clone());
            }
        }
        Ok(Plan { frames, todo: Some(Todo { planner, known, records, candidates, shared }) })
    }
}

fn prefix_url(store: &Store, prefix: &str) -> String {
    match ObjectKey::parse(prefix.trim_end_matches('/')) {
        Ok(k) => format!("{}/", store.url_of(&k)),
        Err(_) => store.url().to_string(),
    }
}

fn record_key(out_prefix: &str, name: &str) -> Result<ObjectKey, StoreError> {
    ObjectKey::parse(&format!("{out_prefix}{RECORDS}{name}.json"))
}

fn style_key(model_sha256: &str, settings: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(model_sha256.as_bytes());
    for (k, v) in settings {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    format!("{:x}", h.finalize())
}

/// Whether `m` describes exactly these inputs (by ETag and size), made with this style, with
/// every output there at its recorded size.
fn is_complete(m: &SequenceManifest, style_key: &str, frames: &[Listed], outputs: &BTreeMap<String, Meta>) -> bool {
    m.schema == SEQUENCE_SCHEMA
        && m.style_key == style_key
        && m.frames.len() == frames.len()
        && m.frames.iter().zip(frames).all(|(r, f)| {
            r.name == f.name
                && r.input_etag.is_some()
                && r.input_etag == f.meta.etag
                && r.input_size == f.meta.size
                && outputs.get(&r.name).is_some_and(|o| o.size == r.output_size)
        })
}

fn push_entry(shared: &Mutex<Shared>, name: &str, action: Action, why: &'static str) {
    if let Ok(mut s) = shared.lock() {
        s.entries.push(FrameEntry { name: name.to_string(), action, why });
    }
}

/// Downloads candidates in order and hands on those still wanted, numbered 0, 1, 2, ...
struct Reader {
    downloads: tokio::sync::mpsc::Receiver<(Listed, Result<Vec<u8>, StoreError>)>,
    io: Io,
    output: Store,
    out_prefix: String,
    planner: Planner,
    known: BTreeSet<String>,
    records: Arc<BTreeMap<String, FrameRecord>>,
    /// Stored frames are hostile: their headers are checked against these before decoding.
    limits: MediaLimits,
    shared: Arc<Mutex<Shared>>,
    next_index: u64,
}

impl Reader {
    fn next(&mut self) -> Result<Option<Frame>, JobError> {
        while let Some((f, got)) = self.downloads.blocking_recv() {
            if let Some(why) = self.io.stop.reason() {
                return Err(PipelineError::Stopped(why).into());
            }
            let bytes = got.map_err(JobError::read)?;
            let sha = sha256_hex(&bytes);
            if !self.known.contains(&f.name) {
                // Content now known: is this (frame, style) pair still work?
                self.planner.video(&f.name, &identity(&f.name, &sha));
                let wanted = self.planner.plan().iter().any(|w| w.video == f.name);
                if !wanted {
                    // Same bytes under a new ETag: keep the output, remember the ETag.
                    if let Some(r) = self.records.get(&f.name) {
                        let fresh =
                            FrameRecord { input_etag: f.meta.etag.clone(), input_size: f.meta.size, ..r.clone() };
                        self.write_record(&fresh)?;
                        if let Ok(mut s) = self.shared.lock() {
                            s.made.insert(f.name.clone(), fresh);
                        }
                    }
                    push_entry(&self.shared, &f.name, Action::Skipped, "same content");
                    continue;
                }
            }
            let still = decode_still(&bytes, Path::new(&f.name), Some(&self.limits))?;
            let index = self.next_index;
            self.next_index += 1;
            if let Ok(mut s) = self.shared.lock() {
                s.pending.insert(
                    index,
                    Pending { name: f.name.clone(), sha256: sha, meta: f.meta.clone(), form: still.form },
                );
            }
            return Ok(Some(Frame {
                index,
                pts: index as i64,
                duration: 1,
                image: still.rgb,
                timing: Default::default(),
            }));
        }
        Ok(None)
    }

    fn write_record(&self, r: &FrameRecord) -> Result<(), JobError> {
        let key = record_key(&self.out_prefix, &r.name).map_err(JobError::write)?;
        let bytes = serde_json::to_vec(r).map_err(|e| JobError::Other(e.to_string()))?;
        self.io
            .blocking("write record", || self.output.put_bytes_atomic(&key, bytes.clone()))
            .map_err(JobError::write)?;
        Ok(())
    }
}

enum Feed {
    Frame(Frame),
    End,
    Failed(String),
}

/// The engine's view of the reader: frames from a channel.
struct ChannelSource {
    info: SourceInfo,
    rx: Receiver<Feed>,
    first: Option<Frame>,
}

impl FrameSource for ChannelSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        if let Some(f) = self.first.take() {
            return Ok(Some(f));
        }
        let failed = |reason: String| MediaError::Decode { path: "stored frames".into(), reason };
        match self.rx.recv() {
            Ok(Feed::Frame(f)) => Ok(Some(f)),
            Ok(Feed::End) => Ok(None),
            Ok(Feed::Failed(reason)) => Err(failed(reason)),
            Err(_) => Err(failed("the frame reader stopped".into())),
        }
    }
}

/// Writes each styled frame like its input, then its record: encoded on the engine's encoder
/// thread, uploaded by tasks on the job's runtime, `IN_FLIGHT` frames at a time (the frame's
/// record is written by the same task, right after the frame).
struct StoreSink {
    io: Io,
    store: Store,
    uploads: Vec<tokio::task::JoinHandle<()>>,
    /// Uploads in flight: a frame waits for a slot before its upload starts.
    slots: Arc<tokio::sync::Semaphore>,
    out_prefix: String,
    style_key: String,
    jpeg_quality: u8,
    shared: Arc<Mutex<Shared>>,
}

impl StoreSink {
    /// The first upload failure, if any (it fails the job).
    fn failed(&self) -> Option<String> {
        self.shared.lock().ok().and_then(|s| s.failure.as_ref().map(|e| e.to_string()))
    }

    fn commit(&mut self, frame: &Frame) -> Result<(), JobError> {
        let pending = self.shared.lock().ok().and_then(|mut s| s.pending.remove(&frame.index));
        let Some(p) = pending else {
            return Err(JobError::Other(format!("styled frame {} has no input on record", frame.index)));
        };
        let styled = RgbFrame::new(frame.image.width, frame.image.height, frame.image.data.clone());
        let bytes = encode_still(&styled, &p.form, self.jpeg_quality)
            .map_err(|e| JobError::Other(format!("{}: {e}", p.name)))?;
        let key = ObjectKey::parse(&format!("{}{}", self.out_prefix, p.name)).map_err(JobError::write)?;
        let rk = record_key(&self.out_prefix, &p.name).map_err(JobError::write)?;
        let record = FrameRecord {
            schema: FRAME_SCHEMA.into(),
            name: p.name.clone(),
            input_sha256: p.sha256,
            input_etag: p.meta.etag,
            input_size: p.meta.size,
            style_key: self.style_key.clone(),
            output_sha256: sha256_hex(&bytes),
            output_size: bytes.len() as u64,
        };
        let json = serde_json::to_vec(&record).map_err(|e| JobError::Other(e.to_string()))?;
        // Bounded: wait (on this thread, outside the runtime) for a free upload slot.
        let permit =
            self.io.rt.block_on(self.slots.clone().acquire_owned()).map_err(|e| JobError::Other(e.to_string()))?;
        let (store, shared, io) = (self.store.clone(), self.shared.clone(), self.io.clone());
        self.uploads.retain(|h| !h.is_finished());
        self.uploads.push(self.io.rt.spawn(async move {
            let _permit = permit;
            let put = |k: ObjectKey, b: Vec<u8>| {
                let store = store.clone();
                async move { store.put_bytes_atomic(&k, b).await }
            };
            let mut done = io.retrying("write frame", || put(key.clone(), bytes.clone())).await;
            if done.is_ok() {
                done = io.retrying("write record", || put(rk.clone(), json.clone())).await;
            }
            if let Ok(mut s) = shared.lock() {
                match done {
                    Ok(()) => {
                        s.entries.push(FrameEntry {
                            name: p.name.clone(),
                            action: Action::Styled,
                            why: "new or changed",
                        });
                        s.made.insert(p.name, record);
                    }
                    Err(e) => {
                        s.failure.get_or_insert(JobError::write(e));
                    }
                }
            }
        }));
        Ok(())
    }
}

impl FrameSink for StoreSink {
    fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let write_err = |reason: String| MediaError::Write { path: "stored frames".into(), reason };
        if let Some(text) = self.failed() {
            return Err(write_err(text));
        }
        self.commit(frame).map_err(|e| {
            let text = e.to_string();
            if let Ok(mut s) = self.shared.lock() {
                s.failure.get_or_insert(e);
            }
            write_err(text)
        })
    }

    /// Waits for the uploads still in flight; fails if any failed.
    fn finish(mut self: Box<Self>) -> Result<(), MediaError> {
        let uploads = std::mem::take(&mut self.uploads);
        self.io.rt.block_on(async {
            for h in uploads {
                let _ = h.await;
            }
        });
        match self.failed() {
            Some(text) => Err(MediaError::Write { path: "stored frames".into(), reason: text }),
            None => Ok(()),
        }
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
