//! `stylestream stylize`: a still, a video or a frame sequence (and more with `--and`), or the
//! frames under a store URL styled back as frames — each a job through the one engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{dataflow_options, load_style, AppError};
use crate::cli::StylizeArgs;
use crate::dataflow::{DataflowOptions, Engine};
use crate::job::frames::{count, Action};
use crate::job::open::{input_kind, is_dir_output, InputKind};
use crate::job::{self, Env, Finished, Job, Limits, Observe, Report, Settings, Sink, Source, Style};
use crate::media::{self, MediaError};
use crate::stop::StopToken;
use crate::storage::{BlockingStore, StoreOptions};
use crate::telemetry::progress::ProgressMode;

/// `stylize`: `shutdown` (Ctrl-C) stops it; nothing is published then.
pub fn stylize(args: &StylizeArgs, shutdown: &StopToken) -> Result<(), AppError> {
    // Read once, here: a bad configuration is refused whatever the input is.
    let opts = dataflow_options(&args.run, Some(&args.cluster), args.model.adapter)?;
    if opts.cluster.as_ref().is_some_and(|c| c.process != 0) {
        return help_cluster(args, opts, shutdown);
    }
    let stored = is_store_url(&args.input) || is_store_url(&args.output.to_string_lossy());
    let pairs = pairs(args)?;
    if stored {
        if pairs.len() > 1 || opts.cluster.is_some() {
            return Err(AppError::Usage("stored frames run in one process, without --and".into()));
        }
    } else {
        // Cheap checks first: a missing input or an output over an input costs no model load.
        for (input, _) in &pairs {
            let path = Path::new(input);
            if !path.exists() && !media::sequence::is_pattern(input) {
                return Err(
                    MediaError::Read { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() }.into()
                );
            }
        }
        let inputs: Vec<PathBuf> = pairs.iter().map(|(i, _)| PathBuf::from(i)).collect();
        let outputs: Vec<PathBuf> = pairs.iter().map(|(_, o)| o.clone()).collect();
        if let Some((input, output)) = media::policy::outputs_overwriting_inputs(&inputs, &outputs) {
            return Err(MediaError::SameFile { input: input.to_path_buf(), output: output.to_path_buf() }.into());
        }
    }
    let style = load_style(&args.model)?;
    let settings = Settings {
        encode: args.encode.settings(),
        jpeg_quality: args.jpeg_quality,
        precision: opts.gpu.precision,
        network: args.model.network.clone(),
    };
    let jobs = if stored {
        let options = StoreOptions::default();
        let open = |url: &str| BlockingStore::open(url, &options).map(Arc::new);
        let (input, output) = (open(&args.input)?, open(&args.output.to_string_lossy())?);
        let source = Source::StoredFrames { store: input, prefix: String::new(), fps: args.fps };
        let sink = Sink::StoredFrames { store: output, prefix: String::new() };
        vec![Job { id: "stylize".into(), source, sink, style, settings }]
    } else {
        pairs
            .into_iter()
            .enumerate()
            .map(|(i, (path, output))| Job {
                id: format!("stylize-{i}"),
                source: Source::Local { path, fps: args.fps, sha256: None },
                sink: Sink::Local { path: output, manifest: false },
                style: style.clone(),
                settings: settings.clone(),
            })
            .collect()
    };
    let mode = if args.run.quiet { ProgressMode::None } else { args.run.progress };
    let engine = Arc::new(Engine::start(opts, shutdown.clone())?);
    let env = Env::new(engine.clone(), Limits::default(), std::env::temp_dir(), None);
    // One bar for one video; none for several, or for a still (one frame).
    let still = !stored && input_kind(&args.input) == InputKind::Image && !is_dir_output(&args.output);
    let observe = Observe::terminal(if jobs.len() > 1 || still { ProgressMode::None } else { mode });
    let reports = run_all(&jobs, &env, &observe, shutdown);
    for r in &reports {
        let fps = if r.secs.style > 0.0 { r.frames as f64 / r.secs.style } else { 0.0 };
        tracing::info!(output = %r.output, frames = r.frames, secs = r.secs.style, fps, "done");
    }
    drop(env);
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.shutdown();
    }
    let many = reports.len() > 1;
    let mut first_error = None;
    for r in reports {
        match r.result {
            Ok(finished) => report_written(args, mode, &r.output, &finished, r.entries.as_deref(), many),
            Err(e) => {
                if many {
                    eprintln!("error: {}: {e}", r.output);
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

/// Runs every job at once, each on a thread of its own, in the engine; their reports in order.
pub fn run_all(jobs: &[Job], env: &Env, observe: &Observe, stop: &StopToken) -> Vec<Report> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.iter().map(|j| s.spawn(move || job::run(j, env, observe, stop))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Report::failed("", "", job::JobError::Other("internal error: the job's thread panicked".into()))
                })
            })
            .collect()
    })
}

/// A process other than 0 of a cluster: it styles its share of every job's frames; process 0
/// reads the inputs and writes the outputs.
fn help_cluster(args: &StylizeArgs, opts: DataflowOptions, shutdown: &StopToken) -> Result<(), AppError> {
    let style: Style = load_style(&args.model)?;
    let count = 1 + args.and.len();
    let jobs = (0..count).map(|_| crate::dataflow::Job::new(None, style.desc.clone(), style.weights.clone())).collect();
    for r in crate::dataflow::run_jobs(jobs, opts, shutdown) {
        r?;
    }
    Ok(())
}

/// The main INPUT=OUTPUT pair and those of `--and`.
fn pairs(args: &StylizeArgs) -> Result<Vec<(String, PathBuf)>, AppError> {
    let mut pairs = vec![(args.input.clone(), args.output.clone())];
    for j in &args.and {
        let (i, o) = j.split_once('=').ok_or_else(|| AppError::Usage(format!("--and {j}: expected INPUT=OUTPUT")))?;
        pairs.push((i.to_string(), PathBuf::from(o)));
    }
    Ok(pairs)
}

/// Whether `s` names a store (`file://`, `az://`, `azure://`, `s3://`) rather than a local path.
fn is_store_url(s: &str) -> bool {
    ["file://", "az://", "azure://", "s3://"].iter().any(|p| s.starts_with(p))
}

/// Tells the user an output is complete: `wrote PATH`, with the frame count when several
/// videos ran together; stored frames list every frame. Nothing with --quiet, or with JSON
/// progress (stderr is JSON only).
fn report_written(
    args: &StylizeArgs,
    mode: ProgressMode,
    output: &str,
    finished: &Finished,
    entries: Option<&[job::frames::FrameEntry]>,
    many: bool,
) {
    if args.run.quiet || mode == ProgressMode::Json {
        return;
    }
    if let Some(entries) = entries {
        for e in entries {
            eprintln!("{:<8} {} ({})", format!("{:?}", e.action).to_lowercase(), e.name, e.why);
        }
        let (styled, skipped, removed) =
            (count(entries, Action::Styled), count(entries, Action::Skipped), count(entries, Action::Removed));
        eprintln!("wrote {}: {styled} styled, {skipped} skipped, {removed} removed", args.output.display());
        return;
    }
    match finished {
        Finished::Done { frames, .. } if many => eprintln!("wrote {output} ({frames} frames)"),
        _ => eprintln!("wrote {output}"),
    }
}
