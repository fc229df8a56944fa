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

/// Runs one video through the dataflow; returns the frames written (0 on processes other
/// than 0). `ends` — the source, sink and progress — belong to process 0, whose worker 0
/// decodes and writes; every worker builds its own GPU device and plan.
pub fn run(
    ends: Option<(Source, Sink, Progress)>,
    desc: Arc<NetworkDescription>,
    weights: Arc<Weights>,
    opts: DataflowOptions,
) -> Result<u64, PipelineError> {
    let ends = Arc::new(Mutex::new(ends));
    let errors = ErrorSlot::default();
    let written = Arc::new(Mutex::new(0u64));
    let config = opts.timely_config();
    let (errors_w, written_w) = (errors.clone(), written.clone());
    let guards = timely::execute(config, move |worker| {
        let index = worker.index();
        let device = WorkerGpu::new(&opts.gpu, opts.gpus.as_deref(), index);
        let spec = StylizeSpec {
            desc: desc.clone(),
            weights: weights.clone(),
            gpu: opts.gpu.clone(),
            frames_per_batch: opts.frames_per_batch,
            retries: opts.retries,
            fail_frame: opts.fail_frame,
        };
        let cap = opts.max_frames_in_flight.max(1);
        // Worker 0 hands styled frames to its encoder thread through this queue.
        let (to_encoder, from_sink) = sync_channel::<Frame>(cap);
        let to_encoder = Rc::new(RefCell::new(Some(to_encoder)));
        let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Frame>>> = InputHandle::new();
        let probe = ProbeHandle::new();
        let (sink_queue, errors_op) = (to_encoder.clone(), errors_w.clone());
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
        let mine = if index == 0 { ends.lock().ok().and_then(|mut e| e.take()) } else { None };
        let Some((mut source, mut sink, mut progress)) = mine else {
            // Other workers run their share of the operators until the input closes.
            drop(input);
            while worker.step_or_park(None) {}
            return;
        };
        std::thread::scope(|threads| {
            // Decode ahead on a thread of its own, at most `cap` frames.
            let (to_feed, decoded) = sync_channel::<Frame>(cap);
            let decoder = threads.spawn(move || -> Result<(), PipelineError> {
                while let Some(f) = source.next_frame()? {
                    if to_feed.send(f).is_err() {
                        break;
                    }
                }
                Ok(())
            });
            // Encode on a thread of its own, checking the order once more.
            let errors_enc = errors_w.clone();
            let encoder = threads.spawn(move || {
                let mut order = Reorder::<()>::new();
                for f in from_sink.iter() {
                    if errors_enc.is_set() {
                        break;
                    }
                    let written = order.push(f.index, ()).map_err(PipelineError::from).and_then(|_| sink.write(&f).map_err(PipelineError::from));
                    match written {
                        Ok(()) => progress.inc(),
                        Err(e) => {
                            errors_enc.set(e);
                            break;
                        }
                    }
                }
                (sink, order, progress)
            });
            // Feed the dataflow.
            let mut sent = 0u64;
            for f in decoded.iter() {
                if errors_w.is_set() || crate::pipeline::interrupted() {
                    break;
                }
                // Back-pressure: wait while more than `cap` frames are between the input and
                // the sink, as the probe after the reorder stage sees it.
                while sent >= cap as u64 && probe.less_than(&(sent - cap as u64)) && !errors_w.is_set() {
                    worker.step();
                }
                input.send(f);
                sent += 1;
                input.advance_to(sent);
            }
            drop(decoded);
            drop(input);
            while worker.step_or_park(None) {}
            to_encoder.borrow_mut().take();
            match decoder.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors_w.set(e),
                Err(_) => errors_w.set(PipelineError::Dataflow("the decoder thread panicked".into())),
            }
            let Ok((sink, order, mut progress)) = encoder.join() else {
                errors_w.set(PipelineError::Dataflow("the encoder thread panicked".into()));
                return;
            };
            if crate::pipeline::interrupted() {
                errors_w.set(PipelineError::Interrupted);
            }
            if errors_w.is_set() {
                return; // `sink` is dropped unfinished: nothing is published.
            }
            // Everything has flowed: publish the output only if the job is whole.
            let published = order.finish(Some(sent)).map_err(PipelineError::from).and_then(|n| {
                progress.finish();
                sink.finish().map(|()| n).map_err(PipelineError::from)
            });
            match published {
                Ok(n) => {
                    if let Ok(mut w) = written_w.lock() {
                        *w = n;
                    }
                }
                Err(e) => errors_w.set(e),
            }
        });
    })
    .map_err(|e| PipelineError::Dataflow(e.to_string()))?;
    for r in guards.join() {
        r.map_err(|e| PipelineError::Dataflow(e.to_string()))?;
    }
    if let Some(e) = errors.take() {
        return Err(e);
    }
    let n = *written.lock().map_err(|_| PipelineError::Dataflow("a worker panicked".into()))?;
    Ok(n)
}
