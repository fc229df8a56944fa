//! `Stylize`: frames are spread over the workers by index, and each worker styles its share
//! on its own GPU device, with a plan built on its first frame.

use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

use super::ErrorSlot;
use crate::frame::{Frame, RgbFrame};
use crate::model::gpu::{GpuContext, GpuError, GpuOptions, NetworkPlan};
use crate::model::{NetworkDescription, Weights};

/// Styles every frame of a stream, on the GPU of the worker it is routed to.
pub trait Stylize<'scope> {
    /// Frames go to worker `index mod workers`; a frame that cannot be styled is reported to
    /// `errors` and dropped (the sink then refuses to finish the video).
    fn stylize(self, desc: Arc<NetworkDescription>, weights: Arc<Weights>, gpu: GpuOptions, errors: ErrorSlot) -> Self;
}

/// The worker's device, and a plan for the current frame size.
struct WorkerGpu {
    ctx: Option<GpuContext>,
    plan: Option<NetworkPlan>,
}

impl WorkerGpu {
    fn run(&mut self, desc: &NetworkDescription, weights: &Weights, gpu: &GpuOptions, img: &RgbFrame) -> Result<RgbFrame, GpuError> {
        if self.ctx.is_none() {
            // More workers than adapters: wrap around.
            let count = GpuContext::adapters().len().max(1);
            let mut opts = gpu.clone();
            opts.adapter = Some(opts.adapter.unwrap_or(0) % count);
            let ctx = GpuContext::new(&opts)?;
            tracing::info!(adapter = %ctx.adapter(), "worker GPU ready");
            self.ctx = Some(ctx);
        }
        let Some(ctx) = self.ctx.as_ref() else { unreachable!("set above") };
        if self.plan.as_ref().is_none_or(|p| p.frame_size() != (img.width, img.height)) {
            self.plan = Some(NetworkPlan::new(ctx, desc, weights, img.width, img.height)?);
        }
        let Some(plan) = self.plan.as_ref() else { unreachable!("set above") };
        let out = plan.run(&img.data)?;
        Ok(RgbFrame::new(img.width, img.height, out.rgb))
    }
}

impl<'scope> Stylize<'scope> for Stream<'scope, u64, Vec<Frame>> {
    fn stylize(self, desc: Arc<NetworkDescription>, weights: Arc<Weights>, gpu: GpuOptions, errors: ErrorSlot) -> Self {
        let mut device = WorkerGpu { ctx: None, plan: None };
        self.unary(Exchange::new(|f: &Frame| f.index), "Stylize", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, frames| {
                    let mut session = output.session(&cap);
                    for f in frames.drain(..) {
                        if errors.is_set() {
                            continue;
                        }
                        match device.run(&desc, &weights, &gpu, &f.image) {
                            Ok(image) => session.give(Frame { image, ..f }),
                            Err(e) => errors.set(e.into()),
                        }
                    }
                });
            }
        })
    }
}
