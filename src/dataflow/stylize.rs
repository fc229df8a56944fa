//! `Stylize`: frames are spread over the workers in batches of `frames_per_batch` consecutive
//! frames, and each worker styles its share on its own GPU device (a plan is built on its first
//! frame). A frame whose styling fails is retried on another worker — batch `b`'s attempt `a`
//! goes to worker `(b + a) mod workers` — up to `retries` times; after that the job fails
//! with the frame named, and nothing is published.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

use super::ErrorSlot;
use crate::frame::{Frame, RgbFrame};
use crate::model::gpu::{GpuContext, GpuError, GpuOptions, NetworkPlan};
use crate::model::{NetworkDescription, Weights};
use crate::pipeline::PipelineError;

/// A frame on its way through the GPU stages.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Work {
    Styled(Frame),
    /// Not styled yet: `attempts` failed so far, the last with `reason`.
    Failed { frame: Frame, attempts: u32, reason: String },
}

/// What the Stylize stages need to know; the same on every worker.
#[derive(Clone)]
pub struct StylizeSpec {
    pub desc: Arc<NetworkDescription>,
    pub weights: Arc<Weights>,
    pub gpu: GpuOptions,
    pub frames_per_batch: u64,
    pub retries: u32,
    /// Test hook: frame `.0` fails its first `.1` attempts (0: every attempt).
    pub fail_frame: Option<(u64, u32)>,
}

/// The worker's device and one plan per frame size (several videos may share a worker),
/// shared by the worker's Stylize stages of every job.
pub struct WorkerGpu {
    worker: usize,
    gpu: GpuOptions,
    ctx: Option<GpuContext>,
    plans: std::collections::HashMap<(u32, u32), NetworkPlan>,
}

impl WorkerGpu {
    /// A device for worker `index`: adapter `gpus[index mod len]` when a list is given, else
    /// (first + index) mod adapters; opened on first use.
    pub fn new(gpu: &GpuOptions, gpus: Option<&[usize]>, index: usize) -> Rc<RefCell<Self>> {
        let mut gpu = gpu.clone();
        gpu.adapter = Some(match gpus.filter(|g| !g.is_empty()) {
            Some(list) => list[index % list.len()],
            None => gpu.adapter.unwrap_or(0) + index,
        });
        Rc::new(RefCell::new(Self { worker: index, gpu, ctx: None, plans: Default::default() }))
    }

    fn run(&mut self, spec: &StylizeSpec, img: &RgbFrame) -> Result<RgbFrame, GpuError> {
        if self.ctx.is_none() {
            // More workers than adapters: wrap around.
            let count = GpuContext::adapters().len().max(1);
            let mut opts = self.gpu.clone();
            opts.adapter = Some(opts.adapter.unwrap_or(0) % count);
            let ctx = GpuContext::new(&opts)?;
            tracing::info!(worker = self.worker, adapter = %ctx.adapter(), "worker GPU ready");
            self.ctx = Some(ctx);
        }
        let Some(ctx) = self.ctx.as_ref() else { unreachable!("set above") };
        let size = (img.width, img.height);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.plans.entry(size) {
            slot.insert(NetworkPlan::new(ctx, &spec.desc, &spec.weights, img.width, img.height)?);
        }
        let Some(plan) = self.plans.get(&size) else { unreachable!("inserted above") };
        let out = plan.run(&img.data)?;
        Ok(RgbFrame::new(img.width, img.height, out.rgb))
    }
}

/// One attempt at styling `frame`, which has failed `attempts` times before.
fn attempt(gpu: &RefCell<WorkerGpu>, spec: &StylizeSpec, frame: Frame, attempts: u32) -> Work {
    let injected = spec.fail_frame.is_some_and(|(k, n)| frame.index == k && (n == 0 || attempts < n));
    let result = if injected {
        Err("injected failure".to_string())
    } else {
        gpu.borrow_mut().run(spec, &frame.image).map_err(|e| e.to_string())
    };
    match result {
        Ok(image) => Work::Styled(Frame { image, ..frame }),
        Err(reason) => {
            tracing::warn!(frame = frame.index, attempt = attempts + 1, error = %reason, "styling failed");
            Work::Failed { frame, attempts: attempts + 1, reason }
        }
    }
}

/// The GPU stages of the dataflow.
pub trait Stylize<'scope> {
    /// Styles every frame, retries failures on other workers, and passes on styled frames;
    /// a frame still failing after `spec.retries` retries is reported to `errors`.
    fn stylize(self, spec: StylizeSpec, gpu: Rc<RefCell<WorkerGpu>>, errors: ErrorSlot) -> Stream<'scope, u64, Vec<Frame>>;
}

impl<'scope> Stylize<'scope> for Stream<'scope, u64, Vec<Frame>> {
    fn stylize(self, spec: StylizeSpec, gpu: Rc<RefCell<WorkerGpu>>, errors: ErrorSlot) -> Stream<'scope, u64, Vec<Frame>> {
        let batch = spec.frames_per_batch.max(1);
        let (first_spec, first_gpu) = (spec.clone(), gpu.clone());
        let mut work = self.unary(Exchange::new(move |f: &Frame| f.index / batch), "Stylize", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, frames| {
                    let mut session = output.session(&cap);
                    for f in frames.drain(..) {
                        session.give(attempt(&first_gpu, &first_spec, f, 0));
                    }
                });
            }
        });
        for round in 1..=spec.retries {
            let (spec, gpu) = (spec.clone(), gpu.clone());
            // Styled frames all travel to worker 0 (where they are headed anyway); failed ones
            // to the next worker of their batch.
            let route = move |w: &Work| match w {
                Work::Styled(_) => 0,
                Work::Failed { frame, attempts, .. } => frame.index / batch + *attempts as u64,
            };
            work = work.unary(Exchange::new(route), &format!("StylizeRetry{round}"), move |_cap, _info| {
                move |input, output| {
                    input.for_each(|cap, items| {
                        let mut session = output.session(&cap);
                        for w in items.drain(..) {
                            match w {
                                Work::Failed { frame, attempts, .. } => session.give(attempt(&gpu, &spec, frame, attempts)),
                                styled => session.give(styled),
                            }
                        }
                    });
                }
            });
        }
        work.unary(Exchange::new(|_w: &Work| 0), "StylizeSettle", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, items| {
                    let mut session = output.session(&cap);
                    for w in items.drain(..) {
                        match w {
                            Work::Styled(f) => session.give(f),
                            Work::Failed { frame, attempts, reason } => errors.set(PipelineError::FrameFailed {
                                index: frame.index,
                                pts: frame.pts,
                                attempts,
                                reason,
                            }),
                        }
                    }
                });
            }
        })
    }
}
