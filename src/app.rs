//! Wiring: loads what a command needs, runs the stages, reports. Knows no stage internals.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::{BatchArgs, BenchArgs, ClusterArgs, ModelArgs, RunArgs, StylizeArgs};
use crate::job::open::{input_kind, is_dir_output, open_job, InputKind};
use crate::frame::RgbFrame;
use crate::media::{self, MediaError};
use crate::dataflow::PipelineError;
use crate::stop::StopToken;
use crate::telemetry::progress::{Progress, ProgressMode};
use crate::model::gpu::{GpuContext, GpuError, GpuOptions, NetworkPlan};
use crate::model::{ModelError, NetworkDescription, Weights};

/// Everything that can end a command, each with the thing that is wrong named.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    #[error(transparent)]
    Zoo(#[from] crate::zoo::ZooError),
    #[error(transparent)]
    Open(#[from] crate::job::OpenError),
    #[error(transparent)]
    Batch(#[from] crate::batch::BatchError),
    #[error(transparent)]
    Frames(#[from] crate::job::frames::FramesError),
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    #[error("{0}")]
    Usage(String),
}

/// The description and checked weights named on the command line (a path, or a name in
/// `$STYLESTREAM_MODELS_DIR`). An `.onnx` model carries its own description (its graph);
/// `--network` is then ignored.
pub fn load_model(args: &ModelArgs) -> Result<(std::sync::Arc<NetworkDescription>, std::sync::Arc<Weights>), AppError> {
    let m = crate::model::load::load(&args.model, crate::model::load::env_dir().as_deref(), &args.network, None)?;
    Ok((m.desc, m.weights))
}

/// `batch`: the command line's options, then the batch run.
pub fn batch(args: &BatchArgs, shutdown: &StopToken) -> Result<crate::batch::Summary, AppError> {
    let options = crate::batch::BatchOptions {
        inputs: args.inputs.clone(),
        output: args.output.clone(),
        styles: args.styles.clone(),
        network: args.network.clone(),
        format: args.format.clone(),
        jobs: args.jobs,
        watch: args.watch,
        encode: args.encode.settings(),
        progress: args.run.progress,
        quiet: args.run.quiet,
        dataflow: dataflow_options(&args.run, None, args.adapter)?,
    };
    Ok(crate::batch::run(&options, shutdown)?)
}

/// `stylize`: an image, a video or a frame sequence. `shutdown` (Ctrl-C) stops it; nothing is
/// published then.
pub fn stylize(args: &StylizeArgs, shutdown: &StopToken) -> Result<(), AppError> {
    // Read once, here: a bad configuration is refused whatever the input is.
    let opts = dataflow_options(&args.run, Some(&args.cluster), args.model.adapter)?;
    if is_store_url(&args.input) || is_store_url(&args.output.to_string_lossy()) {
        return stylize_stored(args, opts, shutdown);
    }
    let path = Path::new(&args.input);
    if !path.exists() && !media::sequence::is_pattern(&args.input) {
        return Err(MediaError::Read { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() }.into());
    }
    refuse_overwriting_inputs(args)?;
    match input_kind(&args.input) {
        InputKind::Image if !is_dir_output(&args.output) => stylize_image(args, &opts.gpu),
        _ => stylize_stream(args, opts, shutdown),
    }
}

/// Refuses, before anything is written, an output that is one of the inputs (the same file by
/// device and inode: hard and symbolic links count): writing it would replace the input.
fn refuse_overwriting_inputs(args: &StylizeArgs) -> Result<(), AppError> {
    let mut inputs = vec![PathBuf::from(&args.input)];
    let mut outputs = vec![args.output.clone()];
    for (i, o) in extra_jobs(args)? {
        inputs.push(PathBuf::from(i));
        outputs.push(o);
    }
    match media::policy::outputs_overwriting_inputs(&inputs, &outputs) {
        Some((input, output)) => Err(MediaError::SameFile { input: input.to_path_buf(), output: output.to_path_buf() }.into()),
        None => Ok(()),
    }
}

/// Tells the user an output is complete: `wrote PATH`, with the frame count when several
/// videos ran together. Nothing with --quiet, or with JSON progress (stderr is JSON only).
fn report_written(args: &StylizeArgs, output: &Path, frames: Option<u64>) {
    if args.run.quiet || args.run.progress == ProgressMode::Json {
        return;
    }
    match frames {
        Some(n) => eprintln!("wrote {} ({n} frames)", output.display()),
        None => eprintln!("wrote {}", output.display()),
    }
}

fn stylize_image(args: &StylizeArgs, gpu: &GpuOptions) -> Result<(), AppError> {
    // Cheap checks first: a bad output name must not cost a GPU run.
    media::image::output_format(&args.output)?;
    let (desc, weights) = load_model(&args.model)?;
    let frame = media::image::read_rgb(Path::new(&args.input))?;
    let ctx = GpuContext::new(gpu)?;
    let started = Instant::now();
    let plan = NetworkPlan::new(&ctx, &desc, &weights, frame.width, frame.height)?;
    let out = plan.run(&frame.data)?;
    tracing::info!(ms = started.elapsed().as_secs_f64() * 1e3, "frame styled");
    media::image::write_rgb(&args.output, &RgbFrame::new(frame.width, frame.height, out.rgb))?;
    report_written(args, &args.output, None);
    Ok(())
}

/// How the dataflow runs: the command line over the config file over the defaults.
pub(crate) fn dataflow_options(
    run: &RunArgs,
    cluster: Option<&ClusterArgs>,
    adapter: Option<usize>,
) -> Result<crate::dataflow::DataflowOptions, AppError> {
    let file = match &run.config {
        Some(p) => crate::config::RunConfig::load(p)?,
        None => crate::config::RunConfig::default(),
    };
    let usage = |m: String| AppError::Usage(m);
    // Cluster: --processes with --hostfile, else the config's [cluster].
    let none = ClusterArgs { processes: None, process: None, hostfile: None };
    let args = cluster.unwrap_or(&none);
    let hosts: Option<Vec<String>> = match (&args.hostfile, &file.cluster) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| MediaError::Read { path: path.clone(), source: e })?;
            Some(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
        }
        (None, Some(c)) => Some(c.hosts.clone()),
        (None, None) => None,
    };
    let processes = args.processes.unwrap_or_else(|| hosts.as_ref().map_or(1, Vec::len));
    let cluster = if processes <= 1 {
        None
    } else {
        let hosts = hosts.ok_or_else(|| usage("--processes needs --hostfile (one host:port per line) or a config with [cluster]".into()))?;
        if hosts.len() < processes {
            return Err(usage(format!("{} addresses for {processes} processes", hosts.len())));
        }
        let process = args.process.or(file.cluster.as_ref().and_then(|c| c.process)).unwrap_or(0);
        if process >= processes {
            return Err(usage(format!("--process {process} is not below --processes {processes}")));
        }
        Some(crate::dataflow::Cluster { process, addresses: hosts[..processes].to_vec() })
    };
    let overrides = crate::config::RunOverrides {
        workers: run.workers,
        max_frames_in_flight: run.max_frames_in_flight,
        frames_per_batch: run.frames_per_batch,
        retries: run.retries,
        precision: run.precision,
        kernels: run.kernels,
        fail_frame: run.fail_frame,
        adapter,
    };
    Ok(file.resolve(&overrides, cluster))
}

/// `--and IN=OUT` jobs, parsed.
fn extra_jobs(args: &StylizeArgs) -> Result<Vec<(String, PathBuf)>, AppError> {
    args.and
        .iter()
        .map(|j| {
            j.split_once('=')
                .map(|(i, o)| (i.to_string(), PathBuf::from(o)))
                .ok_or_else(|| AppError::Usage(format!("--and {j}: expected INPUT=OUTPUT")))
        })
        .collect()
}

/// Several videos in one dataflow, each with its own sink: all are attempted; the first error
/// is returned after every job has ended (the others' outputs are published).
fn stylize_many(args: &StylizeArgs, opts: crate::dataflow::DataflowOptions, shutdown: &StopToken) -> Result<(), AppError> {
    let helper = opts.cluster.as_ref().is_some_and(|c| c.process != 0);
    let (desc, weights) = load_model(&args.model)?;
        let mut jobs = vec![(args.input.clone(), args.output.clone())];
    jobs.extend(extra_jobs(args)?);
    let mode = if args.run.quiet { ProgressMode::None } else { args.run.progress };
    let mut ends = Vec::new();
    for (input, output) in &jobs {
        let job = |ends| crate::dataflow::Job::new(ends, desc.clone(), weights.clone());
        if helper {
            ends.push(job(None));
            continue;
        }
        let (source, sink) = open_job(input, output, args.fps, &args.encode.settings())?;
        let progress = Progress::new(if jobs.len() > 1 { ProgressMode::None } else { mode }, source.info().frames);
        ends.push(job(Some((source, sink, progress))));
    }
    let results = crate::dataflow::run_jobs(ends, opts, shutdown);
    let mut first_error = None;
    for ((_, output), r) in jobs.iter().zip(results) {
        match r {
            Ok(frames) if !helper => report_written(args, output, (jobs.len() > 1).then_some(frames)),
            Ok(_) => {}
            Err(e) => {
                if jobs.len() > 1 {
                    eprintln!("error: {}: {e}", output.display());
                }
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// A video or an image sequence, to a video or a directory of frames.
fn stylize_stream(args: &StylizeArgs, opts: crate::dataflow::DataflowOptions, shutdown: &StopToken) -> Result<(), AppError> {
    if !args.and.is_empty() || opts.cluster.as_ref().is_some_and(|c| c.process != 0) {
        return stylize_many(args, opts, shutdown);
    }
    let (desc, weights) = load_model(&args.model)?;
    let (source, sink) = open_job(&args.input, &args.output, args.fps, &args.encode.settings())?;
    let info = source.info().clone();
    let mode = if args.run.quiet { ProgressMode::None } else { args.run.progress };
    let workers = opts.workers;
    let progress = Progress::new(mode, info.frames);
    let started = Instant::now();
    let job = crate::dataflow::Job::new(Some((source, sink, progress)), desc, weights);
    let frames = crate::dataflow::run(job, opts, shutdown)?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(frames, workers, secs, fps = frames as f64 / secs.max(1e-9), "done");
    report_written(args, &args.output, None);
    Ok(())
}

/// Whether `s` names a store (`file://`, `az://`, `azure://`, `s3://`) rather than a local path.
fn is_store_url(s: &str) -> bool {
    ["file://", "az://", "azure://", "s3://"].iter().any(|p| s.starts_with(p))
}

/// Stored frames to stored frames: the store URLs' frames, styled incrementally (`job::frames`).
fn stylize_stored(args: &StylizeArgs, opts: crate::dataflow::DataflowOptions, shutdown: &StopToken) -> Result<(), AppError> {
    use crate::job::frames::{self, Action};
    if !args.and.is_empty() || opts.cluster.is_some() {
        return Err(AppError::Usage("stored frames run in one process, without --and".into()));
    }
    let options = crate::storage::StoreOptions::default();
    let open = |url: &str| crate::storage::Store::open(url, &options);
    let (input, output) = (open(&args.input)?, open(&args.output.to_string_lossy())?);
    let (desc, weights) = load_model(&args.model)?;
    let settings = std::collections::BTreeMap::from([
        ("network".to_string(), args.model.network.clone()),
        ("jpeg_quality".to_string(), args.jpeg_quality.to_string()),
        ("precision".to_string(), opts.gpu.precision.name().to_string()),
    ]);
    let spec = frames::Spec {
        input,
        input_prefix: String::new(),
        output,
        output_prefix: String::new(),
        desc,
        weights,
        settings,
        jpeg_quality: args.jpeg_quality,
        limits: None,
        max_frames: usize::MAX,
        retry_backoff: std::time::Duration::from_millis(500),
    };
    let mode = if args.run.quiet { ProgressMode::None } else { args.run.progress };
    let engine = crate::dataflow::Engine::start(opts, shutdown.clone())?;
    let report = frames::run(&engine, &spec, Progress::new(mode, None), shutdown);
    engine.shutdown();
    let report = report?;
    if !args.run.quiet && args.run.progress != ProgressMode::Json {
        for e in &report.entries {
            eprintln!("{:<8} {} ({})", format!("{:?}", e.action).to_lowercase(), e.name, e.why);
        }
        eprintln!(
            "wrote {}: {} styled, {} skipped, {} removed",
            args.output.display(),
            report.count(Action::Styled),
            report.count(Action::Skipped),
            report.count(Action::Removed)
        );
    }
    Ok(())
}

/// A deterministic test card: smooth gradients with some edges, so no layer sees constants.
pub fn synthetic_frame(width: u32, height: u32) -> RgbFrame {
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let checker = if (x / 16 + y / 16) % 2 == 0 { 40 } else { 0 };
            data.push(((x * 255 / width.max(1)) as u8).saturating_add(checker));
            data.push((y * 255 / height.max(1)) as u8);
            data.push((((x + y) * 7) % 256) as u8);
        }
    }
    RgbFrame::new(width, height, data)
}

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
    let (desc, weights) = load_model(&args.model)?;
    let (width, height) = args.size;
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
    let frame = synthetic_frame(width, height);
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
    // One more frame, with timestamps, for the per-kernel breakdown (not in the timing above).
    plan.run_profiled(&frame.data)?;
    let kernels = plan.kernel_times()?.unwrap_or_default();
    let pipelines = ctx.pipeline_count();
    let second_plan = match args.second_plan {
        None => None,
        Some((w2, h2)) => {
            let frame2 = synthetic_frame(w2, h2);
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

/// Human-readable bench report.
pub fn print_bench(r: &BenchReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "adapter      {}{}", r.adapter, if r.subgroups { ", subgroup kernels" } else { ", plain kernels" })?;
    writeln!(out, "frame        {}x{}, {} frames timed, precision {}, kernels {} ({})", r.width, r.height, r.frames, r.precision, r.variant, r.variant_source)?;
    writeln!(out, "plan build   {:.0} ms, first frame (kernel compile) {:.0} ms", r.plan_ms, r.warmup_ms)?;
    writeln!(out, "per frame    {:.1} ms  ({:.2} fps)", r.ms_per_frame, r.fps)?;
    writeln!(out, "throughput   {:.1} GFLOP/s effective", r.gflops)?;
    if let Some(ms) = r.batched_ms_per_frame {
        writeln!(out, "batches of {:<2} {:.1} ms per frame ({:.2}x one frame per submission)", r.batch, ms, r.ms_per_frame / ms)?;
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


/// `stylestream models ...`.
pub fn models(cmd: &crate::cli::ModelsCommand) -> Result<(), AppError> {
    use crate::cli::ModelsCommand;
    use crate::zoo;
    match cmd {
        ModelsCommand::List { dir, json } => {
            let dir = zoo::models_dir(dir.as_deref())?;
            let items = zoo::list(&dir)?;
            let mut stdout = std::io::stdout();
            if *json {
                for m in &items {
                    println!("{}", serde_json::to_string(m).unwrap_or_default());
                }
            } else {
                let _ = zoo::print_list(&dir, &items, &mut stdout);
            }
            Ok(())
        }
        ModelsCommand::Fetch { name, dir, url, sha256, quiet } => {
            let dir = zoo::models_dir(dir.as_deref())?;
            let (url, pin) = match (url, zoo::zoo_model(name)) {
                (Some(u), _) => (u.clone(), None),
                (None, Some(m)) => (m.url.to_string(), m.sha256),
                (None, None) => {
                    return Err(zoo::ZooError::UnknownModel { name: name.clone(), known: zoo::ZOO.map(|m| m.name).join(", ") }.into())
                }
            };
            let sha = match (sha256, pin) {
                (Some(h), _) => zoo::fetch::parse_sha256(h)?,
                (None, Some(p)) => p.to_string(),
                (None, None) => return Err(zoo::ZooError::NoPin { name: name.clone() }.into()),
            };
            let file = name.strip_suffix(".onnx").unwrap_or(name);
            let dest = zoo::fetch::destination(&dir, file);
            let progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let bytes = zoo::fetch::download(&url, &sha, &dest, progress)?;
            if !quiet {
                eprintln!("fetched {} ({bytes} bytes, sha256 {sha})", dest.display());
            }
            Ok(())
        }
        ModelsCommand::Convert { input, output, description } => {
            let toml = description.clone().unwrap_or_else(|| output.with_extension("toml"));
            let desc = zoo::convert::convert(input, output, &toml)?;
            eprintln!(
                "wrote {} and {} ({} layers); use: stylestream stylize IN -o OUT --model {} --network {}",
                output.display(),
                toml.display(),
                desc.layers.len(),
                output.display(),
                toml.display()
            );
            Ok(())
        }
    }
}

/// `serve`: the service until SIGTERM.
pub fn serve(args: &crate::cli::ServeArgs, shutdown: &StopToken) -> Result<(), AppError> {
    Ok(crate::service::serve(&args.config, args.metrics_addr.clone(), shutdown)?)
}

/// `stylestream cancel`: publishes a control message that every running instance reads.
pub fn cancel(args: &crate::cli::CancelArgs) -> Result<(), AppError> {
    let config = match &args.config {
        Some(p) => crate::service::config::ServiceConfig::load(p)?.broker,
        None => toml::from_str::<crate::ingress::broker::BrokerConfig>("").map_err(|e| AppError::Usage(e.to_string()))?,
    };
    crate::ingress::event::check_id(&args.id).map_err(|e| AppError::Usage(e.to_string()))?;
    let url = std::env::var(&config.url_env).unwrap_or_else(|_| config.url.clone());
    let body = serde_json::to_vec(&serde_json::json!({ "schema": crate::ingress::event::CONTROL_SCHEMA, "cancel": args.id })).map_err(|e| AppError::Usage(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| AppError::Usage(e.to_string()))?;
    rt.block_on(crate::ingress::broker::send_control(&url, &config, &body)).map_err(crate::service::ServiceError::from)?;
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}

/// `stylestream submit`: publishes one job event with publisher confirms.
pub fn submit(args: &crate::cli::SubmitArgs) -> Result<(), AppError> {
    let config = match &args.config {
        Some(p) => crate::service::config::ServiceConfig::load(p)?.broker,
        None => toml::from_str::<crate::ingress::broker::BrokerConfig>("").map_err(|e| AppError::Usage(e.to_string()))?,
    };
    let url = std::env::var(&config.url_env).unwrap_or_else(|_| config.url.clone());
    let mut event = serde_json::json!({ "schema": crate::ingress::event::SCHEMA, "style": args.style });
    let obj = event.as_object_mut().ok_or_else(|| AppError::Usage("internal: event".into()))?;
    match (&args.input, &args.input_prefix) {
        (Some(i), None) => obj.insert("input".into(), i.clone().into()),
        (None, Some(p)) => obj.insert("input_prefix".into(), p.clone().into()),
        _ => return Err(AppError::Usage("give --input KEY or --input-prefix PREFIX".into())),
    };
    match (&args.output, &args.output_prefix, &args.output_frames_prefix) {
        (Some(o), None, None) => obj.insert("output".into(), o.clone().into()),
        (None, Some(p), None) => obj.insert("output_prefix".into(), p.clone().into()),
        (None, None, Some(p)) => obj.insert("output_frames_prefix".into(), p.clone().into()),
        _ => return Err(AppError::Usage("give --output KEY, --output-prefix PREFIX or --output-frames-prefix PREFIX".into())),
    };
    if let Some(q) = args.jpeg_quality {
        obj.insert("jpeg_quality".into(), q.into());
    }
    if let Some(id) = &args.id {
        obj.insert("id".into(), id.clone().into());
    }
    if let Some(fps) = args.fps {
        obj.insert("fps".into(), fps.into());
    }
    let body = serde_json::to_vec(&event).map_err(|e| AppError::Usage(e.to_string()))?;
    // Checked as the service will check it.
    crate::ingress::event::parse(&body, config.max_message_bytes, &[], &crate::ingress::event::Source::default()).map_err(|e| AppError::Usage(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| AppError::Usage(e.to_string()))?;
    rt.block_on(crate::ingress::broker::submit(&url, &config, &body)).map_err(crate::service::ServiceError::from)?;
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
