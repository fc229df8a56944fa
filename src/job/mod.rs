//! A job: one source × one sink × settings, styled with one model — and the one path every job
//! takes, whichever command asked for it (`stylize`, `batch`, `serve`):
//!
//! ```text
//! stage: check the request, done? (manifest) ──yes──> AlreadyDone, no GPU work
//!        download or list the input into a staging directory of its own
//!   ──> open its ends (trusted: local files; restricted: stored objects) ──> engine
//!   ──> commit: the output (local rename, or upload to a temporary key and move), then its
//!       manifest ──> Report: frames, timings, per-frame records; its Outcome
//! ```
//! Videos and frame sequences differ only in their source and sink. The frame-name rule
//! (`media::sequence::is_frame_name`), the limits and the done identity (`Settings::identity`)
//! exist once; so does the mapping from every error to an outcome (`JobError::outcome`).

pub mod commit;
pub mod error;
pub mod frames;
pub mod log;
pub mod open;
pub mod outcome;
pub mod run;
pub mod segments;
pub mod settings;
pub mod stage;
pub mod staging;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dataflow::Engine;
use crate::frame::Rate;
use crate::media::policy::{InputPolicy, MediaLimits};
use crate::model::{NetworkDescription, Weights};
use crate::storage::{BlockingStore, ObjectKey};

pub use error::JobError;
pub use open::{open_ends, OpenError};
pub use outcome::{Cause, Outcome, OutcomeKind, PoisonCode};
pub use run::{run, Finished, Observe, Report};
pub use settings::{OutputKind, Settings};

/// What a job reads.
pub enum Source {
    /// A file, a directory of frames or a printf pattern the user named: trusted, opened as
    /// ffmpeg would (files it refers to are read too).
    Local {
        path: String,
        fps: Option<Rate>,
        /// Its content's SHA-256 when the caller knows it: a manifest records it as the ETag.
        sha256: Option<String>,
    },
    /// A video object: restricted (self-contained containers only, within the limits),
    /// downloaded into the job's staging directory first.
    StoredVideo { store: Arc<BlockingStore>, key: ObjectKey },
    /// The PNG/JPEG frames directly under a prefix (name order): restricted.
    StoredFrames { store: Arc<BlockingStore>, prefix: String, fps: Option<Rate> },
    /// Segment `index` of a video's plan (its input run, or its frames in `media`).
    Segment { plan: Arc<segments::SegmentPlan>, index: u32, media: Arc<BlockingStore> },
    /// Every committed segment of a plan, to be stitched (the source's audio in `media`).
    Segments { plan: Arc<segments::SegmentPlan>, media: Arc<BlockingStore> },
}

impl Source {
    /// Whether the input is the user's own (trusted) or someone else's (restricted).
    pub fn is_trusted(&self) -> bool {
        matches!(self, Source::Local { .. })
    }

    /// How its media are opened: as ffmpeg would, or restricted to `limits`.
    pub fn policy(&self, limits: &MediaLimits) -> InputPolicy {
        if self.is_trusted() {
            InputPolicy::Trusted
        } else {
            InputPolicy::Restricted(limits.clone())
        }
    }

    /// How messages and logs name it.
    pub fn name(&self) -> String {
        match self {
            Source::Local { path, .. } => path.clone(),
            Source::StoredVideo { key, .. } => key.to_string(),
            Source::StoredFrames { prefix, .. } => prefix.clone(),
            Source::Segment { plan, .. } | Source::Segments { plan, .. } => plan.input.clone(),
        }
    }
}

/// Where a job writes.
pub enum Sink {
    /// A local file (a video, or one image) or a directory of frames, by its name; published by
    /// a rename when complete. With `manifest`, `<path>.manifest.json` is written after it.
    Local { path: PathBuf, manifest: bool },
    /// A video object, uploaded to a temporary key and moved, then its manifest.
    StoredVideo { store: Arc<BlockingStore>, key: ObjectKey },
    /// The styled frames, named like the input frames, under a prefix: each committed as it is
    /// done, incrementally (see `frames`).
    StoredFrames { store: Arc<BlockingStore>, prefix: String },
    /// A segment's output run and manifest, in the system store (see `segments`).
    Segment { plan: String, index: u32 },
}

impl Sink {
    /// Which settings shape the output.
    pub fn kind(&self) -> OutputKind {
        match self {
            Sink::StoredFrames { .. } => OutputKind::Frames,
            _ => OutputKind::Video,
        }
    }

    /// How messages and logs name it.
    pub fn name(&self) -> String {
        match self {
            Sink::Local { path, .. } => path.display().to_string(),
            Sink::StoredVideo { key, .. } => key.to_string(),
            Sink::StoredFrames { prefix, .. } => prefix.clone(),
            Sink::Segment { plan, index } => format!("segment {index} of {plan}"),
        }
    }
}

/// The model a job styles with.
#[derive(Clone)]
pub struct Style {
    /// As the request named it (a style name or a path).
    pub name: String,
    pub desc: Arc<NetworkDescription>,
    pub weights: Arc<Weights>,
}

/// One job.
pub struct Job {
    /// Names its logs and its entry on the status page.
    pub id: String,
    pub source: Source,
    pub sink: Sink,
    pub style: Style,
    pub settings: Settings,
}

/// Limits on restricted inputs and on the local disk a job may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// What stored media may hold (frame size, frame count, duration).
    pub media: MediaLimits,
    /// Largest stored input, bytes.
    pub max_input_bytes: u64,
    /// Most frames under a stored prefix.
    pub max_prefix_frames: usize,
    /// Local disk a download needs, as a multiple of the input's size (input, output, room).
    pub staging_factor: f64,
    /// Free disk kept beyond that.
    pub staging_margin_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            media: MediaLimits::default(),
            max_input_bytes: u64::MAX,
            max_prefix_frames: usize::MAX,
            staging_factor: 3.0,
            staging_margin_bytes: 0,
        }
    }
}

/// Who owns the upload temporaries in the stores: this instance, and the heartbeats of the
/// others (so a temporary of a live instance is never removed).
pub struct Owner {
    pub instance_id: String,
    pub system: Arc<BlockingStore>,
    pub heartbeat: Duration,
}

/// What every job of a command shares: the engine, the limits, where staging happens.
pub struct Env {
    pub engine: Arc<Engine>,
    pub limits: Limits,
    /// Staging directories of stored inputs and outputs are made here.
    pub work_dir: PathBuf,
    /// `None` outside the service: temporaries have no owner.
    pub owner: Option<Owner>,
    /// Pause before the first retry of one frame's store request (frames jobs).
    pub retry_backoff: Duration,
    /// Cutting long videos into segment jobs (`None`: styled whole, as outside the service).
    pub segments: Option<segments::SegmentOptions>,
    /// Outputs being made by this process: a second job for one of them waits for the first.
    claims: Mutex<std::collections::BTreeSet<String>>,
}

impl Env {
    pub fn new(engine: Arc<Engine>, limits: Limits, work_dir: PathBuf, owner: Option<Owner>) -> Self {
        Self {
            engine,
            limits,
            work_dir,
            owner,
            retry_backoff: Duration::from_millis(500),
            segments: None,
            claims: Default::default(),
        }
    }
}
