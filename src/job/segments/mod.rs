//! One video across the fleet: a long video job is cut into segment jobs that any replica can
//! take, and their outputs are stitched exactly once.
//!
//! ```text
//! parent job (the instance that took the message):
//!   done? -> download -> scan packets (no decoding) -> cut at keyframes (or frame ranges)
//!   -> segments/<plan>/in/<i>.run + .json (each segment's packets, exact timestamps)
//!   -> segments/<plan>/plan.json -> one segment message per segment (confirmed) -> ack
//! segment job i (any instance): plan -> cancelled or timed out? -> committed already?
//!   -> download in/<i> -> decode, style its own frames (by pts), encode a closed-GOP run
//!   -> out/<i>.run, then out/<i>.json (the commit) -> every segment committed and no output?
//!   -> publish a stitch message
//! stitch (any instance, any number of times): every segment committed? output done?
//!   -> join the runs (dts set across the stream) with the source's audio -> output, manifest,
//!   job log -> remove segments/<plan>/
//! ```
//! Duplicate, late and redelivered messages are harmless: the manifests decide. A cancel or a
//! timeout leaves `segments/<plan>/stopped` (kept when the rest is removed), which every
//! segment job reads before it starts and while it runs.
//!
//! Runs are stored in our own format (`media::packets`): the packets' bytes plus an index with
//! every packet's pts and dts in the input's own time base. Matroska (1 ms) and MPEG-TS
//! (90 kHz) would round timestamps, and MP4 adds edit lists for the encoder's delay; an index
//! of our own is exact, and no demuxer ever reads a segment.

pub mod plan;
pub mod segment;
pub mod stitch;

use std::sync::Arc;

use super::PoisonCode;
use crate::media::packets::RunIndex;
use crate::storage::{BlockingStore, ObjectKey, StoreError};

pub use plan::{plan_video, Planned, SegmentPlan};

/// Schema of `plan.json`.
pub const PLAN_SCHEMA: &str = "stylestream.segments/1";
/// Schema of a committed segment's `out/<i>.json`.
pub const SEGMENT_MANIFEST_SCHEMA: &str = "stylestream.segment-output/1";
/// Largest plan or segment manifest read.
const MAX_JSON_BYTES: u64 = 64 << 20;

/// Where a plan's objects live in the system store.
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(plan: &str) -> Self {
        Self { prefix: format!("segments/{plan}/") }
    }

    fn key(&self, rest: &str) -> Result<ObjectKey, StoreError> {
        ObjectKey::parse(&format!("{}{rest}", self.prefix))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn plan(&self) -> Result<ObjectKey, StoreError> {
        self.key("plan.json")
    }

    /// Present once the video was cancelled or timed out (its reason inside).
    pub fn stopped(&self) -> Result<ObjectKey, StoreError> {
        self.key("stopped")
    }

    pub fn input_run(&self, i: u32) -> Result<ObjectKey, StoreError> {
        self.key(&format!("in/{i}.run"))
    }

    pub fn input_index(&self, i: u32) -> Result<ObjectKey, StoreError> {
        self.key(&format!("in/{i}.json"))
    }

    pub fn output_run(&self, i: u32) -> Result<ObjectKey, StoreError> {
        self.key(&format!("out/{i}.run"))
    }

    pub fn output_manifest(&self, i: u32) -> Result<ObjectKey, StoreError> {
        self.key(&format!("out/{i}.json"))
    }

    /// The prefix of the committed segments' manifests and runs.
    pub fn outputs(&self) -> String {
        format!("{}out/", self.prefix)
    }
}

/// Why a video stopped: the content of `segments/<plan>/stopped`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stopped {
    /// `cancelled` or `timed-out`.
    pub reason: String,
}

impl Stopped {
    pub fn code(&self) -> PoisonCode {
        if self.reason == PoisonCode::TimedOut.as_str() {
            PoisonCode::TimedOut
        } else {
            PoisonCode::Cancelled
        }
    }
}

/// A committed segment: its output run's index, the frames it holds, how it was made.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentManifest {
    pub schema: String,
    pub plan: String,
    pub index: u32,
    pub frames: u64,
    pub start_pts: i64,
    pub end_pts: i64,
    /// The encoder and its settings.
    pub codec: String,
    pub crf: u32,
    pub preset: String,
    /// SHA-256 of the output run's bytes.
    pub run_sha256: String,
    pub run: RunIndex,
    /// Which instance styled it, and how long its stages took (seconds).
    pub instance: String,
    pub seconds: super::run::Secs,
    pub committed_at: String,
}

/// The plan `id`, read from the system store: `Ok(None)` when there is none.
pub fn read_plan(system: &BlockingStore, id: &str) -> Result<Option<SegmentPlan>, StoreError> {
    read_json(system, &Keys::new(id).plan()?)
}

/// Whether the video `id` was stopped (cancelled or timed out), and why.
pub fn read_stopped(system: &BlockingStore, id: &str) -> Result<Option<Stopped>, StoreError> {
    read_json(system, &Keys::new(id).stopped()?)
}

/// Marks the video `id` stopped (for every replica, including those that start later), then
/// removes its plan, inputs and committed segments: only the mark stays.
pub fn write_stopped(system: &BlockingStore, id: &str, code: PoisonCode) -> Result<(), StoreError> {
    let body = serde_json::to_vec(&Stopped { reason: code.as_str().to_string() }).unwrap_or_default();
    system.put_bytes_atomic(&Keys::new(id).stopped()?, body)?;
    remove_plan(system, id)
}

/// Segment `i`'s manifest, when it is committed.
pub fn read_segment(system: &BlockingStore, plan: &str, i: u32) -> Result<Option<SegmentManifest>, StoreError> {
    read_json(system, &Keys::new(plan).output_manifest(i)?)
}

/// A JSON object of the system store; `None` when it is missing, an error when unreadable.
fn read_json<T: serde::de::DeserializeOwned>(system: &BlockingStore, key: &ObjectKey) -> Result<Option<T>, StoreError> {
    match system.get_bytes(key, MAX_JSON_BYTES) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Manifest { url: system.store().url_of(key), reason: e.to_string() }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Which segments of `plan` are committed (their manifests exist), by index.
pub fn committed(system: &BlockingStore, plan: &SegmentPlan) -> Result<Vec<u32>, StoreError> {
    let keys = Keys::new(&plan.id);
    let listed = system.list(&keys.outputs())?;
    let mut done: Vec<u32> = listed
        .iter()
        .filter_map(|k| k.name().strip_suffix(".json").and_then(|n| n.parse::<u32>().ok()))
        .filter(|i| (*i as usize) < plan.segments.len())
        .collect();
    done.sort_unstable();
    done.dedup();
    Ok(done)
}

pub use crate::ingress::event::{segment_message, stitch_message};

/// Removes every object of `plan` but its `stopped` mark, partial uploads included.
pub fn remove_plan(system: &BlockingStore, plan: &str) -> Result<(), StoreError> {
    let keys = Keys::new(plan);
    let stopped = keys.stopped()?;
    let mut all: Vec<ObjectKey> = system.list(keys.prefix())?;
    all.extend(system.list_partials(keys.prefix())?.into_iter().map(|(k, _)| k));
    for k in all.into_iter().filter(|k| *k != stopped) {
        system.delete(&k)?;
    }
    Ok(())
}

/// What the segment jobs of a service share.
#[derive(Clone)]
pub struct SegmentOptions {
    /// Videos longer than this are cut (0: never).
    pub segment_secs: f64,
    /// Where plans, segment runs and stop marks live.
    pub system: Arc<BlockingStore>,
    /// This instance (named in the segment manifests it commits).
    pub instance: String,
    /// The whole video's time limit, from its planning (0: none).
    pub timeout_secs: f64,
    /// The precision and kernel set a video's frames run with on this instance's GPU
    /// (resolved once, at planning, so that every replica styles the same way).
    pub resolve: Resolve,
}

/// Resolves (`style`, frame width, height) to the precision and forced kernel set to run.
pub type Resolve = Arc<
    dyn Fn(
            &crate::job::Style,
            u32,
            u32,
        ) -> Result<(crate::model::gpu::Precision, crate::model::gpu::KernelChoice), String>
        + Send
        + Sync,
>;

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
