//! The timely dataflow: frames as records across worker threads, each worker with its own GPU
//! device. The only module that imports timely.
//!
//! ```text
//! worker 0: decode thread --input--> exchange (index mod workers) --> Stylize (every worker,
//!           own GPU) --> exchange (to worker 0) --> ReorderFrames (frontier-driven)
//!           --> EncodeSink --> encoder thread
//! ```
//! Timestamps are frame indices. Worker 0 feeds at most `max_frames_in_flight` frames ahead of
//! the probe after the sink (back-pressure through the probe, not unbounded queues), so memory
//! stays flat whatever the number of workers. The stages are the ones the direct pipeline
//! uses; this module only wires them.

mod engine;
mod error;
pub mod frame_order;
mod plan;
mod reorder_frames;
mod stylize;

use std::sync::{Arc, Mutex};

use crate::media::{Sink, Source};
use crate::model::gpu::GpuOptions;
use crate::model::{NetworkDescription, Weights};
use crate::stop::StopToken;
use crate::telemetry::progress::Progress;

pub use engine::{Engine, JobHandle};
pub use error::PipelineError;
pub use plan::{Planner, WorkItem};
pub use reorder_frames::ReorderFrames;
pub use stylize::{Stylize, StylizeSpec, Work, WorkerGpu};

/// Several processes (possibly on several hosts) running the same job together.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// This process's index, 0-based; process 0 decodes and writes the output.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
}

/// How the dataflow runs.
#[derive(Debug, Clone)]
pub struct DataflowOptions {
    /// Worker threads per process; worker i (counted over all processes) uses adapter
    /// (first + i) mod adapters of its machine.
    pub workers: usize,
    /// `None`: one process.
    pub cluster: Option<Cluster>,
    /// Frames between the decoder and the sink, whatever the number of workers.
    pub max_frames_in_flight: usize,
    pub gpu: GpuOptions,
    /// Consecutive frames that go to the same worker (the reference's "images per job").
    pub frames_per_batch: u64,
    /// How often a frame that failed is retried, each time on another worker.
    pub retries: u32,
    /// Test hook: frame `.0` fails its first `.1` attempts (0: all).
    pub fail_frame: Option<(u64, u32)>,
    /// Adapter indices for the workers of each process (worker i: gpus[i mod len]).
    pub gpus: Option<Vec<usize>>,
}

/// The first error any worker met (later ones are consequences), shared by all workers.
#[derive(Clone, Default)]
pub struct ErrorSlot(Arc<Mutex<Option<PipelineError>>>);

impl ErrorSlot {
    /// Records `e` unless an error is already recorded; logs it once.
    pub fn set(&self, e: PipelineError) {
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                // Reported once, by whoever ends the job (the CLI prints it as its error line).
                tracing::debug!(error = %e, "job failed");
                *slot = Some(e);
            }
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    fn take(&self) -> Option<PipelineError> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

impl DataflowOptions {
    fn timely_config(&self) -> timely::Config {
        let threads = self.workers.max(1);
        match &self.cluster {
            None => timely::Config::process(threads),
            Some(c) => timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads,
                    process: c.process,
                    addresses: c.addresses.clone(),
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            },
        }
    }
}

/// One video's work: its ends (on process 0 only) and the model that styles it.
pub struct Job {
    /// The source, sink and progress; `None` on processes other than 0.
    pub ends: Option<(Source, Sink, Progress)>,
    /// The network that styles the frames; `None`: a copy on the CPU in its place (what the
    /// pipeline around the network can carry: `bench --video --model none`).
    pub network: Option<(Arc<NetworkDescription>, Arc<Weights>)>,
    /// Stops this job alone (cancel, timeout); nothing is published then.
    pub stop: StopToken,
    /// The precision and kernel set this job's frames are styled with, when they must not be
    /// the engine's own choice (a segment styles as its video's plan says).
    pub gpu: Option<(crate::model::gpu::Precision, crate::model::gpu::KernelChoice)>,
    /// Where the job's stages count their time, when it is measured.
    pub clock: crate::telemetry::stages::Clock,
}

impl Job {
    pub fn new(ends: Option<(Source, Sink, Progress)>, desc: Arc<NetworkDescription>, weights: Arc<Weights>) -> Self {
        Self { ends, network: Some((desc, weights)), stop: StopToken::new(), gpu: None, clock: None }
    }

    /// A job whose frames are copied on the CPU instead of styled (no GPU involved).
    pub fn copying(ends: Option<(Source, Sink, Progress)>) -> Self {
        Self { ends, network: None, stop: StopToken::new(), gpu: None, clock: None }
    }
}

/// Runs one video through a dataflow engine of its own; returns the frames written (0 on
/// processes other than 0). `shutdown` stops it (Ctrl-C).
pub fn run(job: Job, opts: DataflowOptions, shutdown: &StopToken) -> Result<u64, PipelineError> {
    run_jobs(vec![job], opts, shutdown).pop().unwrap_or(Ok(0))
}

/// Runs several videos at once through one engine, each in a dataflow of its own, and returns
/// each job's result in order. Every process of a cluster must be given the same jobs; only
/// process 0 has their ends.
pub fn run_jobs(jobs: Vec<Job>, opts: DataflowOptions, shutdown: &StopToken) -> Vec<Result<u64, PipelineError>> {
    let count = jobs.len();
    let engine = match Engine::start(opts, shutdown.clone()) {
        Ok(e) => e,
        Err(e) => {
            let text = e.to_string();
            return (0..count).map(|_| Err(PipelineError::Dataflow(text.clone()))).collect();
        }
    };
    let handles: Vec<JobHandle> = jobs.into_iter().map(|j| engine.submit(j)).collect();
    let results = handles.into_iter().map(JobHandle::wait).collect();
    engine.shutdown();
    results
}
