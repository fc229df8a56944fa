//! `Stylize`: frames are spread over the workers in batches of `frames_per_batch` consecutive
//! frames, and each worker styles a batch on its own GPU device with one submission (a plan is
//! built on the first frame of each size). Each worker keeps up to three batches on the GPU at
//! once (`NetworkPlan::submit`, collected in order), so the upload of the next batch and the
//! readback of the previous one overlap with the styling of the current one instead of
//! blocking the worker while the GPU runs. A batch whose styling fails is retried on another
//! worker — batch `b`'s attempt `a` goes to worker `(b + a) mod workers` — up to `retries`
//! times; after that the job fails with the frame range named, and nothing is published.

use crate::telemetry::stages::{timed, Step};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use std::collections::{BTreeMap, VecDeque};
use timely::dataflow::channels::pact::Exchange;

use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

use super::ErrorSlot;
use super::PipelineError;
use crate::frame::{Frame, RgbFrame};
use crate::model::gpu::{GpuContext, GpuError, GpuOptions, InFlight, NetworkPlan};
use crate::model::{NetworkDescription, Weights};

/// A frame on its way through the GPU stages.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Work {
    Styled(Frame),
    /// Not styled yet: `attempts` failed so far, the last with `reason`; `batch` is the
    /// first and last frame index of the batch it failed in.
    Failed {
        frame: Frame,
        attempts: u32,
        batch: (u64, u64),
        reason: String,
    },
}

/// What the Stylize stages need to know; the same on every worker.
#[derive(Clone)]
pub struct StylizeSpec {
    /// The network; `None`: frames are copied on the CPU instead.
    pub network: Option<(Arc<NetworkDescription>, Arc<Weights>)>,
    /// Where GPU time is counted, when measured.
    pub clock: crate::telemetry::stages::Clock,
    pub gpu: GpuOptions,
    pub frames_per_batch: u64,
    pub retries: u32,
    /// Test hook: frame `.0` fails its first `.1` attempts (0: every attempt).
    pub fail_frame: Option<(u64, u32)>,
    /// The job's own precision and kernel choice (a segment's plan), else the device's.
    pub choice: Option<(crate::model::gpu::Precision, crate::model::gpu::KernelChoice)>,
}

/// The worker's device and one plan per frame size (several videos may share a worker),
/// shared by the worker's Stylize stages of every job.
pub struct WorkerGpu {
    worker: usize,
    gpu: GpuOptions,
    ctx: Option<GpuContext>,
    /// Plans by (model, width, height, own choice), each with the tick it was last used at.
    plans: std::collections::HashMap<PlanKey, (NetworkPlan, u64)>,
    tick: u64,
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
        Rc::new(RefCell::new(Self { worker: index, gpu, ctx: None, plans: Default::default(), tick: 0 }))
    }

    /// Starts styling a batch of frames of one size with one GPU submission (see
    /// `NetworkPlan::submit`); without a network the frames are copied on the CPU at once.
    fn submit(&mut self, spec: &StylizeSpec, images: &[&RgbFrame]) -> Result<Submitted, GpuError> {
        let Some(first) = images.first() else { return Ok(Submitted::Done(Vec::new())) };
        let Some((desc, weights)) = &spec.network else {
            // No network: a copy on the CPU in its place (no device is opened).
            return Ok(Submitted::Done(timed(&spec.clock, Step::Gpu, || {
                images.iter().map(|i| (*i).clone()).collect()
            })));
        };
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
        let key = (weights.sha256.clone(), first.width, first.height, spec.choice);
        self.tick += 1;
        if !self.plans.contains_key(&key) {
            // Plans are cached per (model, size) across jobs; the least recently used goes
            // when the cache is full (each plan holds one frame size's activations on the GPU).
            if self.plans.len() >= MAX_PLANS {
                let oldest = self.plans.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.plans.remove(&k);
                }
            }
            tracing::debug!(worker = self.worker, width = first.width, height = first.height, "building a plan");
            let plan = match spec.choice {
                Some(choice) => NetworkPlan::new_as(ctx, desc, weights, first.width, first.height, choice)?,
                None => NetworkPlan::new(ctx, desc, weights, first.width, first.height)?,
            };
            self.plans.insert(key.clone(), (plan, self.tick));
        }
        let Some((plan, used)) = self.plans.get_mut(&key) else { unreachable!("inserted above") };
        *used = self.tick;
        let data: Vec<&[u8]> = images.iter().map(|i| i.data.as_slice()).collect();
        let flight = plan.submit(&data)?;
        if let Some(clock) = &spec.clock {
            clock.add(Step::Upload, flight.upload);
            clock.add(Step::Gpu, flight.submit);
        }
        Ok(Submitted::Flying { flight, width: first.width, height: first.height })
    }
}

/// A batch handed to the GPU: finished already (a CPU copy), or in flight.
enum Submitted {
    Done(Vec<RgbFrame>),
    Flying { flight: InFlight, width: u32, height: u32 },
}

impl Submitted {
    /// Whether collecting would not wait (a device error counts as done: collecting reports it).
    fn is_done(&mut self) -> bool {
        match self {
            Submitted::Done(_) => true,
            Submitted::Flying { flight, .. } => flight.is_done().unwrap_or(true),
        }
    }

    /// The styled frames, waiting for the GPU if need be (the wait counts as GPU time, the
    /// copy out and repack as readback).
    fn collect(self, clock: &crate::telemetry::stages::Clock) -> Result<Vec<RgbFrame>, GpuError> {
        match self {
            Submitted::Done(images) => Ok(images),
            Submitted::Flying { mut flight, width, height } => {
                timed(clock, Step::Gpu, || flight.wait())?;
                let out = timed(clock, Step::Readback, || flight.read())?;
                Ok(out.into_iter().map(|rgb| RgbFrame::new(width, height, rgb)).collect())
            }
        }
    }
}

/// A plan's cache key: model hash, frame size, and the job's own precision and kernel choice.
type PlanKey = (String, u32, u32, Option<(crate::model::gpu::Precision, crate::model::gpu::KernelChoice)>);

/// Plans a worker keeps (each holds the activations of one frame size on the GPU).
const MAX_PLANS: usize = 4;

/// One attempt at styling a batch of consecutive frames (in order, all of one size), which has
/// failed `attempts` times before, on its way: submitted, not yet collected. The whole batch
/// succeeds or fails together.
struct Attempt {
    frames: Vec<Frame>,
    attempts: u32,
    started: std::time::Instant,
    result: Result<Submitted, String>,
}

impl Attempt {
    fn is_done(&mut self) -> bool {
        self.result.as_mut().map_or(true, Submitted::is_done)
    }
}

/// Starts an attempt: the batch is submitted (a batch whose frame size changes midway, which
/// is rare, is styled frame by frame at once).
fn begin(gpu: &RefCell<WorkerGpu>, spec: &StylizeSpec, frames: Vec<Frame>, attempts: u32) -> Attempt {
    let started = std::time::Instant::now();
    let injected =
        spec.fail_frame.is_some_and(|(k, n)| frames.iter().any(|f| f.index == k) && (n == 0 || attempts < n));
    let same_size =
        frames.windows(2).all(|w| (w[0].image.width, w[0].image.height) == (w[1].image.width, w[1].image.height));
    let result = if injected {
        Err("injected failure".to_string())
    } else if !same_size {
        frames
            .iter()
            .map(|f| {
                let one = gpu.borrow_mut().submit(spec, &[&f.image])?;
                one.collect(&spec.clock).map(|mut v| v.remove(0))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Submitted::Done)
            .map_err(|e| e.to_string())
    } else {
        let images: Vec<&RgbFrame> = frames.iter().map(|f| &f.image).collect();
        gpu.borrow_mut().submit(spec, &images).map_err(|e| e.to_string())
    };
    Attempt { frames, attempts, started, result }
}

/// Ends an attempt: waits for its frames and passes them on styled, or failed with the reason.
fn finish(gpu: &RefCell<WorkerGpu>, spec: &StylizeSpec, a: Attempt) -> Vec<Work> {
    let Attempt { frames, attempts, started, result } = a;
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else { return Vec::new() };
    let (first, last) = (first.index, last.index);
    let count = frames.len().max(1) as f32;
    match result.and_then(|s| s.collect(&spec.clock).map_err(|e| e.to_string())) {
        Ok(images) => {
            let timing = crate::frame::FrameTiming {
                worker: gpu.borrow().worker as u32,
                gpu_ms: started.elapsed().as_secs_f32() * 1e3 / count,
                attempts: attempts + 1,
            };
            frames.into_iter().zip(images).map(|(f, image)| Work::Styled(Frame { image, timing, ..f })).collect()
        }
        Err(reason) => {
            tracing::warn!(first, last, attempt = attempts + 1, error = %reason, "styling failed");
            frames
                .into_iter()
                .map(|frame| Work::Failed {
                    frame,
                    attempts: attempts + 1,
                    batch: (first, last),
                    reason: reason.clone(),
                })
                .collect()
        }
    }
}

/// Batches a worker keeps on the GPU at once: while one is styled, the next is uploaded and the
/// one before is read back and repacked.
const IN_FLIGHT_BATCHES: usize = 3;

/// How soon a worker with batches in flight looks at them again when nothing else wakes it.
const IN_FLIGHT_POLL: std::time::Duration = std::time::Duration::from_micros(500);

/// The GPU stages of the dataflow.
pub trait Stylize<'scope> {
    /// Styles every frame, retries failures on other workers, and passes on styled frames;
    /// a frame still failing after `spec.retries` retries is reported to `errors`.
    fn stylize(
        self,
        spec: StylizeSpec,
        gpu: Rc<RefCell<WorkerGpu>>,
        errors: ErrorSlot,
    ) -> Stream<'scope, u64, Vec<Frame>>;
}

impl<'scope> Stylize<'scope> for Stream<'scope, u64, Vec<Frame>> {
    fn stylize(
        self,
        spec: StylizeSpec,
        gpu: Rc<RefCell<WorkerGpu>>,
        errors: ErrorSlot,
    ) -> Stream<'scope, u64, Vec<Frame>> {
        let batch = spec.frames_per_batch.max(1);
        let (first_spec, first_gpu) = (spec.clone(), gpu.clone());
        let scope = self.scope();
        // Frames of batch b (indices b*batch ..) meet on one worker and are styled together
        // once the batch is whole or the frontier says no more of it can come (the video's end).
        // Up to IN_FLIGHT_BATCHES batches are on the GPU at once; each keeps its capability
        // until it is collected.
        let mut work =
            self.unary_frontier(Exchange::new(move |f: &Frame| f.index / batch), "Stylize", move |_cap, info| {
                let activator = scope.activator_for(info.address.clone());
                let mut pending: BTreeMap<u64, (Capability<u64>, Vec<Frame>)> = BTreeMap::new();
                let mut flying: VecDeque<(Capability<u64>, Attempt)> = VecDeque::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, frames| {
                        let Some(cap) = cap.retain_least(output.output_index()) else { return };
                        for f in frames.drain(..) {
                            let entry = pending.entry(f.index / batch).or_insert_with(|| (cap.clone(), Vec::new()));
                            if cap.time() < entry.0.time() {
                                entry.0 = cap.clone();
                            }
                            entry.1.push(f);
                        }
                    });
                    let ready: Vec<u64> = pending
                        .iter()
                        .filter(|(b, (_, frames))| {
                            frames.len() as u64 >= batch || !frontier.frontier().less_equal(&((**b + 1) * batch - 1))
                        })
                        .map(|(b, _)| *b)
                        .collect();
                    for b in ready {
                        let Some((cap, mut frames)) = pending.remove(&b) else { continue };
                        frames.sort_by_key(|f| f.index);
                        // The ring is full: the oldest batch is collected first.
                        while flying.len() >= IN_FLIGHT_BATCHES {
                            let Some((cap, a)) = flying.pop_front() else { break };
                            output.session(&cap).give_iterator(finish(&first_gpu, &first_spec, a).into_iter());
                        }
                        flying.push_back((cap, begin(&first_gpu, &first_spec, frames, 0)));
                    }
                    // Batches the GPU has finished meanwhile, in the order they went in.
                    while flying.front_mut().is_some_and(|(_, a)| a.is_done()) {
                        let Some((cap, a)) = flying.pop_front() else { break };
                        output.session(&cap).give_iterator(finish(&first_gpu, &first_spec, a).into_iter());
                    }
                    if !flying.is_empty() {
                        activator.activate_after(IN_FLIGHT_POLL);
                    }
                }
            });
        for round in 1..=spec.retries {
            let (spec, gpu) = (spec.clone(), gpu.clone());
            // Styled frames all travel to worker 0 (where they are headed anyway); a failed
            // batch to the next worker in its turn.
            let route = move |w: &Work| match w {
                Work::Styled(_) => 0,
                Work::Failed { frame, attempts, .. } => frame.index / batch + *attempts as u64,
            };
            work = work.unary(Exchange::new(route), &format!("StylizeRetry{round}"), move |_cap, _info| {
                move |input, output| {
                    input.for_each(|cap, items| {
                        let mut session = output.session(&cap);
                        // Failed frames of one batch arrive together; retry them as a batch.
                        let mut failed: BTreeMap<(u64, u32), Vec<Frame>> = BTreeMap::new();
                        for w in items.drain(..) {
                            match w {
                                Work::Failed { frame, attempts, batch, .. } => {
                                    failed.entry((batch.0, attempts)).or_default().push(frame)
                                }
                                styled => session.give(styled),
                            }
                        }
                        for ((_, attempts), mut frames) in failed {
                            frames.sort_by_key(|f| f.index);
                            session
                                .give_iterator(finish(&gpu, &spec, begin(&gpu, &spec, frames, attempts)).into_iter());
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
                            Work::Failed { frame, attempts, batch, reason } => {
                                errors.set(PipelineError::FramesFailed {
                                    first: batch.0,
                                    last: batch.1,
                                    pts: frame.pts,
                                    attempts,
                                    reason,
                                })
                            }
                        }
                    }
                });
            }
        })
    }
}
