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

mod plan;
mod reorder_frames;
mod stylize;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use timely::dataflow::operators::{Input, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::frame::Frame;
use crate::media::{Sink, Source};
use crate::model::gpu::GpuOptions;
use crate::model::{NetworkDescription, Weights};
use crate::pipeline::PipelineError;
use crate::reorder::Reorder;
use crate::telemetry::progress::Progress;

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
    pub desc: Arc<NetworkDescription>,
    pub weights: Arc<Weights>,
}

/// Runs one video through the dataflow; returns the frames written (0 on processes other
/// than 0). `ends` — the source, sink and progress — belong to process 0, whose worker 0
/// decodes and writes; every worker builds its own GPU device and plan.
pub fn run(
    ends: Option<(Source, Sink, Progress)>,
    desc: Arc<NetworkDescription>,
    weights: Arc<Weights>,
    opts: DataflowOptions,
) -> Result<u64, PipelineError> {
    run_jobs(vec![Job { ends, desc, weights }], opts).pop().unwrap_or(Ok(0))
}

/// One job's ends on worker 0, while it runs.
struct Feeding {
    decoded: std::sync::mpsc::Receiver<Frame>,
    input: Option<InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Frame>>>>,
    probe: ProbeHandle<u64>,
    sent: u64,
}

/// Runs several videos in the dataflow at once, each in a dataflow of its own (its own input,
/// frontier, reorder stage and sink) and with its own model, so a slow job never holds back a
/// fast one; the workers and their GPUs are shared (plans cached per model and frame size).
/// Returns each job's result, in order. Every process must be given the same jobs; only
/// process 0 has their ends.
pub fn run_jobs(jobs: Vec<Job>, opts: DataflowOptions) -> Vec<Result<u64, PipelineError>> {
    let count = jobs.len();
    let models: Vec<(Arc<NetworkDescription>, Arc<Weights>)> = jobs.iter().map(|j| (j.desc.clone(), j.weights.clone())).collect();
    let ends = Arc::new(Mutex::new(jobs.into_iter().map(|j| j.ends).collect::<Vec<_>>()));
    let errors: Vec<ErrorSlot> = (0..count).map(|_| ErrorSlot::default()).collect();
    let written = Arc::new(Mutex::new(vec![0u64; count]));
    let config = opts.timely_config();
    let (errors_w, written_w) = (errors.clone(), written.clone());
    let outcome = timely::execute(config, move |worker| {
        let index = worker.index();
        let device = WorkerGpu::new(&opts.gpu, opts.gpus.as_deref(), index);
        // A batch is styled once whole, so at least one batch must fit in flight.
        let cap = opts.max_frames_in_flight.max(opts.frames_per_batch as usize).max(1);
        // One dataflow per job; worker 0 hands each job's styled frames to its encoder thread.
        let mut inputs = Vec::new();
        let mut probes = Vec::new();
        let mut queues = Vec::new();
        let mut receivers = Vec::new();
        for job in 0..count {
            let (to_encoder, from_sink) = sync_channel::<Frame>(cap);
            let to_encoder = Rc::new(RefCell::new(Some(to_encoder)));
            let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Frame>>> = InputHandle::new();
            let probe = ProbeHandle::new();
            let (sink_queue, errors_op) = (to_encoder.clone(), errors_w[job].clone());
            let spec = StylizeSpec {
                desc: models[job].0.clone(),
                weights: models[job].1.clone(),
                gpu: opts.gpu.clone(),
                frames_per_batch: opts.frames_per_batch,
                retries: opts.retries,
                fail_frame: opts.fail_frame,
            };
            let device = device.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .container::<Vec<Frame>>()
                    .stylize(spec, device, errors_op.clone())
                    .reorder_frames()
                    .probe_with(&probe)
                    .sink(timely::dataflow::channels::pact::Pipeline, "EncodeSink", move |(input, _frontier)| {
                        input.for_each(|_cap, frames| {
                            let queue = sink_queue.borrow();
                            for f in frames.drain(..) {
                                // A closed queue means the encoder stopped on an error it recorded.
                                if let Some(q) = queue.as_ref() {
                                    let _ = q.send(f);
                                }
                            }
                        });
                    });
            });
            inputs.push(input);
            probes.push(probe);
            queues.push(to_encoder);
            receivers.push(from_sink);
        }
        let mine: Vec<Option<(Source, Sink, Progress)>> =
            if index == 0 { ends.lock().map(|mut e| e.drain(..).collect()).unwrap_or_default() } else { Vec::new() };
        if mine.len() != count {
            // Other workers run their share of the operators until the inputs close.
            drop(inputs);
            while worker.step_or_park(None) {}
            return;
        }
        std::thread::scope(|threads| {
            let mut feeding = Vec::new();
            let mut decoders = Vec::new();
            let mut encoders = Vec::new();
            for (job, ((end, input), (probe, from_sink))) in mine.into_iter().zip(inputs).zip(probes.into_iter().zip(receivers)).enumerate() {
                let Some((mut source, mut sink, mut progress)) = end else { continue };
                // Decode ahead on a thread of its own, at most `cap` frames.
                let (to_feed, decoded) = sync_channel::<Frame>(cap);
                decoders.push(threads.spawn(move || -> Result<(), PipelineError> {
                    while let Some(f) = source.next_frame()? {
                        if to_feed.send(f).is_err() {
                            break;
                        }
                    }
                    Ok(())
                }));
                // Encode on a thread of its own, checking the order once more.
                let errors_enc = errors_w[job].clone();
                encoders.push(threads.spawn(move || {
                    let mut order = Reorder::<()>::new();
                    for f in from_sink.iter() {
                        if errors_enc.is_set() {
                            break;
                        }
                        let written = order
                            .push(f.index, ())
                            .map_err(PipelineError::from)
                            .and_then(|_| sink.write(&f).map_err(PipelineError::from));
                        match written {
                            Ok(()) => progress.frame(&f),
                            Err(e) => {
                                errors_enc.set(e);
                                break;
                            }
                        }
                    }
                    (sink, order, progress)
                }));
                feeding.push(Feeding { decoded, input: Some(input), probe, sent: 0 });
            }
            // Feed every job, round robin: a job waits only for its own frames in flight.
            loop {
                let mut active = false;
                let mut fed = false;
                for (job, f) in feeding.iter_mut().enumerate() {
                    let Some(input) = f.input.as_mut() else { continue };
                    active = true;
                    let stop = errors_w[job].is_set() || crate::pipeline::interrupted();
                    // Back-pressure: at most `cap` frames between this job's input and its sink.
                    if !stop && f.sent >= cap as u64 && f.probe.less_than(&(f.sent - cap as u64)) {
                        continue;
                    }
                    match if stop { Err(std::sync::mpsc::TryRecvError::Disconnected) } else { f.decoded.try_recv() } {
                        Ok(frame) => {
                            input.send(frame);
                            f.sent += 1;
                            input.advance_to(f.sent);
                            fed = true;
                        }
                        Err(std::sync::mpsc::TryRecvError::Empty) => {}
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => f.input = None,
                    }
                }
                if !active {
                    break;
                }
                if !fed {
                    worker.step_or_park(Some(std::time::Duration::from_millis(1)));
                }
            }
            while worker.step_or_park(None) {}
            for q in &queues {
                q.borrow_mut().take();
            }
            for (job, ((decoder, encoder), f)) in decoders.into_iter().zip(encoders).zip(feeding).enumerate() {
                let errors = &errors_w[job];
                drop(f.decoded);
                match decoder.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.set(e),
                    Err(_) => errors.set(PipelineError::Dataflow("the decoder thread panicked".into())),
                }
                let Ok((sink, order, mut progress)) = encoder.join() else {
                    errors.set(PipelineError::Dataflow("the encoder thread panicked".into()));
                    continue;
                };
                if crate::pipeline::interrupted() {
                    errors.set(PipelineError::Interrupted);
                }
                if errors.is_set() {
                    continue; // `sink` is dropped unfinished: nothing is published.
                }
                // Everything has flowed: publish the output only if the job is whole.
                let published = order.finish(Some(f.sent)).map_err(PipelineError::from).and_then(|n| {
                    progress.finish();
                    sink.finish().map(|()| n).map_err(PipelineError::from)
                });
                match published {
                    Ok(n) => {
                        if let Ok(mut w) = written_w.lock() {
                            w[job] = n;
                        }
                    }
                    Err(e) => errors.set(e),
                }
            }
        });
    });
    let failure = match outcome {
        Err(e) => Some(e),
        Ok(guards) => guards.join().into_iter().find_map(|r| r.err()),
    };
    let written = written.lock().map(|w| w.clone()).unwrap_or_default();
    errors
        .iter()
        .enumerate()
        .map(|(job, slot)| match (slot.take(), &failure) {
            (Some(e), _) => Err(e),
            (None, Some(f)) => Err(PipelineError::Dataflow(f.to_string())),
            (None, None) => Ok(written.get(job).copied().unwrap_or(0)),
        })
        .collect()
}
