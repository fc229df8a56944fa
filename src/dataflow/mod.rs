//! The timely dataflow: frames as records across worker threads, each worker with its own GPU
//! device. The only module that imports timely.
//!
//! ```text
//! worker 0: decode --input--> exchange (index mod workers) --> Stylize (every worker, own GPU)
//!           --> exchange (to worker 0) --> ReorderFrames (frontier-driven) --> encode sink
//! ```
//! Timestamps are frame indices. Worker 0 feeds at most `max_frames_in_flight` frames ahead of
//! the probe after the sink (back-pressure through the probe, not unbounded queues), so memory
//! stays flat whatever the number of workers. The stages are the ones the direct pipeline
//! uses; this module only wires them.

mod reorder_frames;
mod stylize;

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
pub use stylize::Stylize;

/// How the dataflow runs.
#[derive(Debug, Clone)]
pub struct DataflowOptions {
    /// Worker threads in this process; worker i uses adapter (first + i) mod adapters.
    pub workers: usize,
    /// Frames between the decoder and the sink, whatever the number of workers.
    pub max_frames_in_flight: usize,
    pub gpu: GpuOptions,
}

/// The first error any worker met (later ones are consequences), shared by all workers.
#[derive(Clone, Default)]
pub struct ErrorSlot(Arc<Mutex<Option<PipelineError>>>);

impl ErrorSlot {
    /// Records `e` unless an error is already recorded; logs it once.
    pub fn set(&self, e: PipelineError) {
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                tracing::error!(error = %e, "job failed");
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

/// Runs one video through the dataflow; returns the frames written. The source and sink are
/// used by worker 0; every worker builds its own GPU device and plan.
pub fn run(
    source: Source,
    sink: Sink,
    desc: Arc<NetworkDescription>,
    weights: Arc<Weights>,
    opts: DataflowOptions,
    progress: Progress,
) -> Result<u64, PipelineError> {
    let ends = Arc::new(Mutex::new(Some((source, sink, progress))));
    let errors = ErrorSlot::default();
    let written = Arc::new(Mutex::new(0u64));
    let config = timely::Config::process(opts.workers.max(1));
    let (errors_w, written_w) = (errors.clone(), written.clone());
    let guards = timely::execute(config, move |worker| {
        let index = worker.index();
        let mut gpu = opts.gpu.clone();
        gpu.adapter = Some(gpu.adapter.unwrap_or(0) + index);
        let mine = if index == 0 { ends.lock().ok().and_then(|mut e| e.take()) } else { None };
        let (source, sink, progress) = match mine {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        };
        let sink = std::rc::Rc::new(std::cell::RefCell::new(sink.map(|s| (s, progress, Reorder::<()>::new()))));
        let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Frame>>> = InputHandle::new();
        let probe = ProbeHandle::new();
        let sink_op = sink.clone();
        let errors_op = errors_w.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .container::<Vec<Frame>>()
                .stylize(desc.clone(), weights.clone(), gpu.clone(), errors_op.clone())
                .reorder_frames()
                .probe_with(&probe)
                .sink(timely::dataflow::channels::pact::Pipeline, "EncodeSink", move |(input, _frontier)| {
                    input.for_each(|_cap, frames| {
                        let mut guard = sink_op.borrow_mut();
                        let Some((sink, progress, order)) = guard.as_mut() else { return };
                        for f in frames.drain(..) {
                            if errors_op.is_set() {
                                continue;
                            }
                            // The frontier released it: it must be the next frame.
                            if let Err(e) = order.push(f.index, ()) {
                                errors_op.set(e.into());
                                continue;
                            }
                            match sink.write(&f) {
                                Ok(()) => {
                                    if let Some(p) = progress.as_mut() {
                                        p.inc();
                                    }
                                }
                                Err(e) => errors_op.set(e.into()),
                            }
                        }
                    });
                });
        });
        // Worker 0 decodes and feeds; the others only run their share of the operators.
        if let Some(mut source) = source {
            let mut sent = 0u64;
            let cap = opts.max_frames_in_flight.max(1) as u64;
            loop {
                if errors_w.is_set() || crate::pipeline::interrupted() {
                    break;
                }
                // Back-pressure: wait while more than `cap` frames are between the input and the
                // sink, as the probe after the reorder stage sees it.
                while sent >= cap && probe.less_than(&(sent - cap)) && !errors_w.is_set() {
                    worker.step();
                }
                match source.next_frame() {
                    Ok(Some(f)) => {
                        input.send(f);
                        sent += 1;
                        input.advance_to(sent);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        errors_w.set(e.into());
                        break;
                    }
                }
            }
            drop(input);
            while worker.step_or_park(None) {}
            // Everything has flowed: publish the output only if the job is whole.
            if let Some((sink, mut progress, order)) = sink.borrow_mut().take() {
                if crate::pipeline::interrupted() {
                    errors_w.set(PipelineError::Interrupted);
                }
                if !errors_w.is_set() {
                    match order.finish(Some(sent)) {
                        Ok(n) => {
                            if let Some(p) = progress.as_mut() {
                                p.finish();
                            }
                            match sink.finish() {
                                Ok(()) => {
                                    if let Ok(mut w) = written_w.lock() {
                                        *w = n;
                                    }
                                }
                                Err(e) => errors_w.set(e.into()),
                            }
                        }
                        Err(e) => errors_w.set(e.into()),
                    }
                }
            }
        } else {
            drop(input);
            while worker.step_or_park(None) {}
        }
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
