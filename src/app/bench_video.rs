//! `stylestream bench --video`: a video styled end to end through the engine, and what limits
//! it. Three runs on one engine: the video itself (`e2e_fps`, and the wall time of every stage);
//! up to 64 of its frames decoded beforehand, held in memory and styled into nothing, with the
//! same frames in flight (`model_fps`: upload, GPU, readback and repack, pipelined); and the
//! video again with the network replaced by a copy on the CPU (`ceiling_fps`: what the CPU side
//! of the pipeline carries, no GPU involved). Rates count from the first frame written (the
//! first pays for compiling the kernels) to the last.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{load_model, AppError};
use crate::cli::BenchArgs;
use crate::dataflow::{DataflowOptions, Engine, Job};
use crate::frame::{Frame, SourceInfo};
use crate::media::policy::InputPolicy;
use crate::media::video_in::VideoDecoder;
use crate::media::{FrameSink, FrameSource, MediaError, Sink, Source};
use crate::model::gpu::GpuOptions;
use crate::model::{NetworkDescription, Weights};
use crate::telemetry::progress::{Progress, ProgressMode};
use crate::telemetry::stages::{limiting, StageClock, StageTime};

/// Frames the model-only run holds in memory, at most.
const MODEL_FRAMES: usize = 64;

/// What `bench --video` measured.
#[derive(Debug, serde::Serialize)]
pub struct VideoBenchReport {
    pub input: String,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    /// The network, or `none` (a copy on the CPU).
    pub model: String,
    /// Frames per second end to end (decode to mux), from the first frame written.
    pub e2e_fps: f64,
    /// Seconds of the whole end-to-end run, start-up included.
    pub e2e_secs: f64,
    /// Frames per second of the network alone on frames held in memory (pipelined).
    pub model_fps: f64,
    pub model_frames: u64,
    /// Frames per second end to end with the network replaced by a copy on the CPU.
    pub ceiling_fps: f64,
    /// The end-to-end run's stages, and the thread and stage that limit it.
    pub stages: Vec<StageTime>,
    pub limiting_thread: String,
    pub limiting_stage: String,
    /// The ceiling run's stages.
    pub ceiling_stages: Vec<StageTime>,
    pub encoder: Encoder,
    pub frames_in_flight: usize,
    pub workers: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct Encoder {
    pub codec: String,
    pub crf: u32,
    pub preset: String,
}

/// One timed run: its frames, its rate after the first frame, its stages.
#[derive(Clone)]
struct Run {
    frames: u64,
    fps: f64,
    secs: f64,
    stages: Vec<StageTime>,
}

pub fn bench_video(args: &BenchArgs, input: &Path) -> Result<VideoBenchReport, AppError> {
    let network = match args.model.model.as_str() {
        "none" => None,
        _ => Some(load_model(&args.model)?),
    };
    let opts = DataflowOptions {
        workers: args.workers.max(1),
        cluster: None,
        max_frames_in_flight: args.max_frames_in_flight.max(1),
        gpu: GpuOptions {
            adapter: args.model.adapter,
            precision: args.precision,
            kernels: args.kernels,
            checked_shaders: args.checked_shaders,
            ..Default::default()
        },
        frames_per_batch: args.frames_per_batch.max(1),
        retries: 0,
        fail_frame: None,
        gpus: None,
    };
    let encode = args.encode.settings();
    let engine = Engine::start(opts.clone(), crate::stop::StopToken::new())?;
    let scratch =
        tempfile::tempdir().map_err(|e| MediaError::Write { path: std::env::temp_dir(), reason: e.to_string() })?;
    let out = |name: &str| -> PathBuf {
        match &args.output {
            Some(o) if name == "e2e" => o.clone(),
            _ => scratch.path().join(format!("{name}.{}", ext_of(input))),
        }
    };
    let video = |output: &Path| -> Result<(Source, Sink), AppError> {
        crate::job::open_ends(&input.display().to_string(), output, None, &encode, &InputPolicy::Trusted)
            .map_err(|e| AppError::from(crate::job::JobError::from(e)))
    };
    // End to end (with the network, or the copy under --model none).
    let (source, sink) = video(&out("e2e"))?;
    let info = source.info().clone();
    let e2e = run(&engine, source, sink, network.clone())?;
    // The ceiling: the same stages, a copy on the CPU for the network.
    let ceiling = if network.is_some() {
        let (source, sink) = video(&out("ceiling"))?;
        run(&engine, source, sink, None)?
    } else {
        e2e.clone()
    };
    // The network alone: frames decoded beforehand, held in memory, styled into nothing.
    let mut decoder = VideoDecoder::open(input)?;
    let mut held = Vec::new();
    while held.len() < MODEL_FRAMES {
        match decoder.next_frame()? {
            Some(f) => held.push(f),
            None => break,
        }
    }
    let memory = MemorySource {
        info: SourceInfo { frames: Some(held.len() as u64), ..decoder.info().clone() },
        frames: held.into_iter(),
    };
    let model = run(&engine, Source::Other(Box::new(memory)), Sink::Other(Box::new(NullSink)), network.clone())?;
    engine.shutdown();
    let (thread, stage) = limiting(&e2e.stages).map_or(("", ""), |(t, s)| (t, s.name()));
    Ok(VideoBenchReport {
        input: input.display().to_string(),
        width: info.width,
        height: info.height,
        frames: e2e.frames,
        model: if network.is_some() { args.model.model.clone() } else { "none".into() },
        e2e_fps: e2e.fps,
        e2e_secs: e2e.secs,
        model_fps: model.fps,
        model_frames: model.frames,
        ceiling_fps: ceiling.fps,
        stages: e2e.stages,
        limiting_thread: thread.to_string(),
        limiting_stage: stage.to_string(),
        ceiling_stages: ceiling.stages,
        encoder: Encoder { codec: encode.codec, crf: encode.crf, preset: encode.preset },
        frames_in_flight: opts.max_frames_in_flight,
        workers: opts.workers,
    })
}

fn ext_of(input: &Path) -> String {
    match input.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref() {
        Some(e @ ("mp4" | "mov" | "mkv" | "m4v" | "webm" | "avi")) => e.to_string(),
        _ => "mp4".into(),
    }
}

/// Runs one job on `engine`, its stages clocked; its rate counts from the first frame written.
fn run(
    engine: &Engine,
    source: Source,
    sink: Sink,
    network: Option<(Arc<NetworkDescription>, Arc<Weights>)>,
) -> Result<Run, AppError> {
    let first: Arc<Mutex<Option<Instant>>> = Default::default();
    let seen = first.clone();
    let progress = Progress::new(ProgressMode::None, source.info().frames).with_observer(Arc::new(move |_| {
        if let Ok(mut f) = seen.lock() {
            f.get_or_insert_with(Instant::now);
        }
    }));
    let clock = StageClock::new();
    let mut job = match network {
        Some((desc, weights)) => Job::new(Some((source, sink, progress)), desc, weights),
        None => Job::copying(Some((source, sink, progress))),
    };
    job.clock = Some(clock.clone());
    let started = Instant::now();
    let frames = engine.submit(job).wait()?;
    let end = Instant::now();
    let first = first.lock().ok().and_then(|f| *f).unwrap_or(started);
    let steady = end.duration_since(first).as_secs_f64();
    let fps = if frames > 1 && steady > 0.0 { (frames - 1) as f64 / steady } else { 0.0 };
    Ok(Run { frames, fps, secs: end.duration_since(started).as_secs_f64(), stages: clock.report() })
}

/// Frames decoded beforehand, from memory.
struct MemorySource {
    info: SourceInfo,
    frames: std::vec::IntoIter<Frame>,
}

impl FrameSource for MemorySource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        Ok(self.frames.next())
    }
}

/// Styled frames, dropped.
struct NullSink;

impl FrameSink for NullSink {
    fn write(&mut self, _frame: &Frame) -> Result<(), MediaError> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), MediaError> {
        Ok(())
    }
}

/// `stylestream bench --video`: the report as a table, and as one JSON line under `--json`.
pub fn bench_video_command(args: &BenchArgs, input: &Path) -> Result<(), AppError> {
    let report = bench_video(args, input)?;
    let _ = print(&report, &mut std::io::stdout());
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    }
    Ok(())
}

/// The report as a short table.
pub fn print(r: &VideoBenchReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "video        {} ({}x{}, {} frames), model {}", r.input, r.width, r.height, r.frames, r.model)?;
    writeln!(
        out,
        "encoder      {} crf {} preset {}, {} frames in flight, {} worker(s)",
        r.encoder.codec, r.encoder.crf, r.encoder.preset, r.frames_in_flight, r.workers
    )?;
    writeln!(out, "end to end   {:.2} fps ({:.1} s in all)", r.e2e_fps, r.e2e_secs)?;
    writeln!(out, "model only   {:.2} fps ({} frames in memory)", r.model_fps, r.model_frames)?;
    writeln!(out, "ceiling      {:.2} fps (the network replaced by a copy on the CPU)", r.ceiling_fps)?;
    writeln!(out, "stages (end to end; ms per frame, the thread they run on):")?;
    for t in &r.stages {
        let per = if r.frames > 0 { t.secs * 1e3 / r.frames as f64 } else { 0.0 };
        writeln!(out, "  {:<12} {:>9.2} ms  {:<7} {:>8.2} s", t.stage.name(), per, t.thread, t.secs)?;
    }
    writeln!(out, "limits       the {} thread, most of it {}", r.limiting_thread, r.limiting_stage)
}
