//! `stylestream bench`: the network's speed on one adapter. It times a plan directly (upload,
//! GPU, readback of a synthetic frame), not through the engine: what it measures is the
//! device, not the pipeline around it.

use std::time::Instant;

use super::{load_model, AppError};
use crate::cli::BenchArgs;
use crate::frame::RgbFrame;
use crate::model::gpu::{GpuContext, GpuOptions, NetworkPlan};

#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    pub adapter: String,
    /// Whether the subgroup conv kernels ran.
    pub subgroups: bool,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub ms_per_frame: f64,
    pub fps: f64,
    pub gflops: f64,
    pub plan_ms: f64,
    pub warmup_ms: f64,
    /// GPU time per kernel of one extra frame run with timestamp queries.
    pub kernels: Vec<crate::model::gpu::KernelTime>,
    /// With `--batch N` (N > 1): N, and the time per frame in batches of N.
    pub batch: u32,
    pub batched_ms_per_frame: Option<f64>,
    /// Shaders compiled with naga's runtime checks (`--checked-shaders`) rather than trusted.
    pub checked_shaders: bool,
    /// Instance norm with its own statistics and apply passes (`--unfused-norm`).
    pub unfused_norm: bool,
    /// Precision the plan runs in, `auto` resolved: "f32" or "f16" (f16 convolution weights).
    pub precision: String,
    /// The kernel set the plan runs (`--kernels` resolved): subgroup, subgroup-unfused, plain,
    /// plain-unfused; and how it was chosen: forced, default, timed, cached.
    pub variant: String,
    pub variant_source: String,
    /// Pipelines compiled on the device by the first plan.
    pub pipelines: usize,
    /// With `--second-plan`: plan build + first frame of the second plan on the same device
    /// (pipelines from the device's cache), and on a fresh device (device creation not
    /// counted), in ms; and the pipelines the second plan added on the same device.
    pub second_plan: Option<SecondPlan>,
}

/// Cost of building a second plan, with and without the device's pipeline cache.
#[derive(Debug, serde::Serialize)]
pub struct SecondPlan {
    pub width: u32,
    pub height: u32,
    pub same_device_plan_ms: f64,
    pub same_device_first_frame_ms: f64,
    pub new_pipelines: usize,
    pub fresh_device_plan_ms: f64,
    pub fresh_device_first_frame_ms: f64,
}

pub fn bench(args: &BenchArgs) -> Result<BenchReport, AppError> {
    if args.model.model == "none" {
        return Err(AppError::Usage("--model none (the network replaced by a copy) needs --video".into()));
    }
    let (desc, weights) = load_model(&args.model)?;
    // The frame: a still of the user's (its size wins), else a synthetic test card.
    let frame = match &args.image {
        Some(path) => crate::media::image::read_rgb(path)?,
        None => RgbFrame::test_card(args.size.0, args.size.1),
    };
    let (width, height) = (frame.width, frame.height);
    let opts = GpuOptions {
        adapter: args.model.adapter,
        timestamps: true,
        no_subgroups: args.no_subgroups,
        checked_shaders: args.checked_shaders,
        unfused_norm: args.unfused_norm,
        precision: args.precision,
        kernels: args.kernels,
        ..Default::default()
    };
    let ctx = GpuContext::new(&opts)?;
    let t0 = Instant::now();
    let plan = NetworkPlan::new(&ctx, &desc, &weights, width, height)?;
    let plan_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    plan.run(&frame.data)?;
    let warmup_ms = t1.elapsed().as_secs_f64() * 1e3;
    let frames = args.frames.max(1);
    let t2 = Instant::now();
    for _ in 0..frames {
        plan.run(&frame.data)?;
    }
    let secs = t2.elapsed().as_secs_f64() / frames as f64;
    let batch = args.batch.max(1);
    let batched_ms_per_frame = if batch > 1 {
        let inputs: Vec<&[u8]> = (0..batch).map(|_| frame.data.as_slice()).collect();
        plan.run_batch(&inputs)?; // allocates the batch's buffers
        let rounds = frames.div_ceil(batch);
        let t3 = Instant::now();
        for _ in 0..rounds {
            plan.run_batch(&inputs)?;
        }
        Some(t3.elapsed().as_secs_f64() * 1e3 / (rounds * batch) as f64)
    } else {
        None
    };
    // One more frame, with timestamps, for the per-kernel breakdown (not in the timing above);
    // it is the frame `--save` writes.
    let profiled = plan.run_profiled(&frame.data)?;
    if let Some(path) = &args.save {
        crate::media::image::write_rgb(path, &RgbFrame::new(width, height, profiled.rgb))?;
    }
    let kernels = plan.kernel_times()?.unwrap_or_default();
    let pipelines = ctx.pipeline_count();
    let second_plan = match args.second_plan {
        None => None,
        Some((w2, h2)) => {
            let frame2 = RgbFrame::test_card(w2, h2);
            // Plan build, then the first frame (where drivers compile pipelines lazily).
            let build = |ctx: &GpuContext| -> Result<(f64, f64), AppError> {
                let t = Instant::now();
                let p = NetworkPlan::new(ctx, &desc, &weights, w2, h2)?;
                let plan_ms = t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                p.run(&frame2.data)?;
                Ok((plan_ms, t.elapsed().as_secs_f64() * 1e3))
            };
            let (same_plan, same_first) = build(&ctx)?;
            let new_pipelines = ctx.pipeline_count() - pipelines;
            let fresh = GpuContext::new(&GpuOptions { timestamps: false, ..opts.clone() })?;
            let (fresh_plan, fresh_first) = build(&fresh)?;
            Some(SecondPlan {
                width: w2,
                height: h2,
                same_device_plan_ms: same_plan,
                same_device_first_frame_ms: same_first,
                new_pipelines,
                fresh_device_plan_ms: fresh_plan,
                fresh_device_first_frame_ms: fresh_first,
            })
        }
    };
    // Effective rate: 2 FLOP per multiply-add of the network at the frame's own size.
    let flop = 2.0 * desc.macs_per_pixel() * width as f64 * height as f64;
    Ok(BenchReport {
        adapter: ctx.adapter().to_string(),
        subgroups: plan.variant().0.subgroups(),
        width,
        height,
        frames,
        ms_per_frame: secs * 1e3,
        fps: 1.0 / secs,
        gflops: flop / secs / 1e9,
        plan_ms,
        warmup_ms,
        kernels,
        batch,
        batched_ms_per_frame,
        checked_shaders: args.checked_shaders,
        unfused_norm: args.unfused_norm,
        precision: plan.precision().name().to_string(),
        variant: plan.variant().0.name().to_string(),
        variant_source: format!("{:?}", plan.variant().1).to_lowercase(),
        pipelines,
        second_plan,
    })
}

/// `stylestream bench` (without `--video`): the report as a table, and as one JSON line under
/// `--json`.
pub fn bench_command(args: &BenchArgs) -> Result<(), AppError> {
    let report = bench(args)?;
    let _ = print_bench(&report, &mut std::io::stdout());
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    }
    Ok(())
}

/// Human-readable bench report.
pub fn print_bench(r: &BenchReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "adapter      {}{}", r.adapter, if r.subgroups { ", subgroup kernels" } else { ", plain kernels" })?;
    writeln!(
        out,
        "frame        {}x{}, {} frames timed, precision {}, kernels {} ({})",
        r.width, r.height, r.frames, r.precision, r.variant, r.variant_source
    )?;
    writeln!(out, "plan build   {:.0} ms, first frame (kernel compile) {:.0} ms", r.plan_ms, r.warmup_ms)?;
    writeln!(out, "per frame    {:.1} ms  ({:.2} fps)", r.ms_per_frame, r.fps)?;
    writeln!(out, "throughput   {:.1} GFLOP/s effective", r.gflops)?;
    if let Some(ms) = r.batched_ms_per_frame {
        writeln!(
            out,
            "batches of {:<2} {:.1} ms per frame ({:.2}x one frame per submission)",
            r.batch,
            ms,
            r.ms_per_frame / ms
        )?;
    }
    if let Some(s) = &r.second_plan {
        writeln!(
            out,
            "second plan  {}x{}: same device {:.0} + {:.0} ms ({} new pipelines), fresh device {:.0} + {:.0} ms (plan + first frame)",
            s.width, s.height, s.same_device_plan_ms, s.same_device_first_frame_ms, s.new_pipelines, s.fresh_device_plan_ms, s.fresh_device_first_frame_ms
        )?;
    }
    if !r.kernels.is_empty() {
        let total: f64 = r.kernels.iter().map(|k| k.ms).sum();
        writeln!(out, "GPU time per kernel (one extra frame, timestamp queries):")?;
        for k in &r.kernels {
            writeln!(out, "  {:<24} {:>9.2} ms  {:>5.1} %", k.kernel, k.ms, 100.0 * k.ms / total.max(1e-9))?;
        }
    }
    Ok(())
}
