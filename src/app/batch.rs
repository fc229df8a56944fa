//! `stylestream batch`: every video × every style, minus what is done. The differential
//! planner (`dataflow::Planner`) keeps the work set; finished pairs are read back from the
//! manifests beside the outputs, so a second run, or a run with one more style or video, styles
//! only what is new. The work streams through one long-lived dataflow engine (kept across
//! `--watch` scans, so devices and plans stay warm): up to `--jobs` videos at a time, each with
//! its own model, the next admitted as soon as one ends. A manifest is written only after its
//! output is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::AppError;
use crate::dataflow::{DataflowOptions, Engine, Planner, WorkItem};
use crate::job::{self, Env, Finished, Job, Limits, Observe, OutputKind, Settings, Sink, Source, Style};
use crate::media::video_out::EncodeSettings;
use crate::media::MediaError;
use crate::model::NetworkDescription;
use crate::stop::{StopReason, StopToken};
use crate::storage::{Manifest, MANIFEST_SCHEMA, MANIFEST_SUFFIX};
use crate::telemetry::progress::ProgressMode;

/// File extensions taken as videos when an input is a directory.
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mkv", "mov", "webm", "avi", "m4v"];

/// `batch`: the command line's options, then the batch run.
pub fn batch(args: &crate::cli::BatchArgs, shutdown: &StopToken) -> Result<Summary, AppError> {
    let options = BatchOptions {
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
        dataflow: super::dataflow_options(&args.run, None, args.adapter)?,
    };
    run(&options, shutdown)
}

/// What `batch` does (the command line fills it in).
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Videos, or directories whose video files are taken.
    pub inputs: Vec<PathBuf>,
    /// Where outputs and their manifests go.
    pub output: PathBuf,
    /// Models, by path or by name in `$STYLESTREAM_MODELS_DIR`.
    pub styles: Vec<String>,
    /// Network description of safetensors models.
    pub network: String,
    /// Container of the outputs (default: the input's).
    pub format: Option<String>,
    /// Videos styled at once.
    pub jobs: usize,
    /// Keep scanning the inputs every this many seconds.
    pub watch: Option<f64>,
    pub encode: EncodeSettings,
    pub progress: ProgressMode,
    pub quiet: bool,
    pub dataflow: DataflowOptions,
}

impl BatchOptions {
    /// The settings of the jobs made with `style` (whose network is the style's own).
    fn settings(&self, style: &Style) -> Settings {
        Settings {
            encode: self.encode.clone(),
            jpeg_quality: 90,
            precision: self.dataflow.gpu.precision,
            network: style.desc.name.clone(),
        }
    }
}

/// What `batch` did, for its summary line and for tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub pairs: usize,
    pub styled: usize,
    pub already_done: usize,
    pub failed: usize,
}

/// Runs `batch`; `shutdown` (Ctrl-C) stops it, discarding the outputs in progress.
pub fn run(args: &BatchOptions, shutdown: &StopToken) -> Result<Summary, AppError> {
    let opts = args.dataflow.clone();
    if args.jobs == 0 {
        return Err(AppError::Usage("--jobs must be at least 1".into()));
    }
    let desc = Arc::new(NetworkDescription::load(&args.network)?);
    let mut styles = Vec::new();
    for s in &args.styles {
        // ONNX models carry their own network; safetensors ones use --network.
        let m = crate::model::load::load(s, crate::model::load::env_dir().as_deref(), &args.network, Some(&desc))?;
        let name = m.name();
        if styles.iter().any(|st: &Style| st.name == name) {
            return Err(AppError::Usage(format!("style `{name}` is given twice")));
        }
        styles.push(Style { name, desc: m.desc, weights: m.weights });
    }
    std::fs::create_dir_all(&args.output)
        .map_err(|e| MediaError::Write { path: args.output.clone(), reason: e.to_string() })?;

    let mut planner = Planner::new();
    for s in &styles {
        planner.style(&s.name, &s.weights.sha256);
    }
    let mut hashes = HashCache::default();
    // Pairs that failed, by (content, model): not retried until the video changes.
    let mut failed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut total = Summary::default();
    let engine = Arc::new(Engine::start(opts, shutdown.clone())?);
    let env = Env::new(engine.clone(), Limits::default(), std::env::temp_dir(), None);
    // What a finished pair's manifest records besides the model (the same for every style).
    let identity =
        Settings { encode: args.encode.clone(), precision: args.dataflow.gpu.precision, ..Settings::default() }
            .identity(OutputKind::Video);
    loop {
        let videos = scan_inputs(&args.inputs, args.watch.is_some())?;
        check_names(&videos)?;
        tracing::info!(videos = videos.len(), "inputs scanned");
        let mut present = BTreeSet::new();
        for v in &videos {
            let id = v.display().to_string();
            // Watching: a video is taken once it stopped changing for one interval (not while
            // it is still being copied in).
            if args.watch.is_some() && !hashes.settled(v) {
                if hashes.known.contains_key(&id) {
                    present.insert(id);
                }
                continue;
            }
            match hashes.sha256(v) {
                Ok(h) => planner.video(&id, &h),
                Err(e) if args.watch.is_some() => {
                    tracing::warn!(video = %id, error = %e, "skipped for now");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            present.insert(id);
        }
        for gone in hashes.forget_except(&present) {
            planner.remove_video(&gone);
        }
        for (content, model) in finished_pairs(&args.output, &identity) {
            planner.done(&content, &model);
        }
        let work: Vec<WorkItem> =
            planner.plan().into_iter().filter(|w| !failed.contains(&(w.content.clone(), w.model.clone()))).collect();
        let round =
            Summary { pairs: planner.pairs(), already_done: planner.pairs() - work.len(), ..Default::default() };
        if !args.quiet && (args.watch.is_none() || !work.is_empty()) {
            eprintln!(
                "{} videos × {} styles = {} pairs: {} to style, {} already done",
                present.len(),
                styles.len(),
                round.pairs,
                work.len(),
                round.already_done
            );
        }
        let (styled, fails) = style_pairs(args, &styles, &work, &env, &mut planner, shutdown);
        for w in fails {
            failed.insert((w.content.clone(), w.model.clone()));
        }
        total = Summary {
            pairs: round.pairs,
            already_done: round.already_done,
            styled: total.styled + styled,
            failed: failed.len(),
        };
        let Some(secs) = args.watch else { break };
        if shutdown.is_stopped() {
            break;
        }
        let until = std::time::Instant::now() + Duration::from_secs_f64(secs.max(0.1));
        while std::time::Instant::now() < until && !shutdown.is_stopped() {
            std::thread::sleep(Duration::from_millis(100));
        }
        if shutdown.is_stopped() {
            break;
        }
    }
    drop(env);
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.shutdown();
    }
    if shutdown.is_stopped() && args.watch.is_none() {
        return Err(crate::dataflow::PipelineError::Stopped(StopReason::Interrupted).into());
    }
    if total.failed > 0 && args.watch.is_none() {
        return Err(AppError::Usage(format!(
            "{} of {} pairs failed (see the errors above)",
            total.failed, total.pairs
        )));
    }
    Ok(total)
}

/// Styles `work` through the engine, at most `--jobs` pairs at a time (the next starts as
/// soon as one ends, each job on a thread of its own); records each finished pair (its manifest
/// is written by the job's commit) in the planner. Returns the number styled and the pairs that
/// failed.
fn style_pairs<'w>(
    args: &BatchOptions,
    styles: &[Style],
    work: &'w [WorkItem],
    env: &Env,
    planner: &mut Planner,
    shutdown: &StopToken,
) -> (usize, Vec<&'w WorkItem>) {
    let mut styled = 0;
    let mut fails = Vec::new();
    let mode = if args.quiet { ProgressMode::None } else { args.progress };
    // One progress bar when one video runs at a time; per-video lines otherwise.
    let observe = Observe::terminal(if args.jobs > 1 && work.len() > 1 { ProgressMode::None } else { mode });
    let queue = Mutex::new(work.iter());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(work.len()) {
            let (tx, queue, observe) = (tx.clone(), &queue, &observe);
            s.spawn(move || loop {
                if shutdown.is_stopped() {
                    break;
                }
                let Some(w) = queue.lock().ok().and_then(|mut q| q.next()) else { break };
                let Some(style) = styles.iter().find(|s| s.name == w.style) else { continue };
                let job = Job {
                    id: format!("{} with {}", w.video, w.style),
                    source: Source::Local { path: w.video.clone(), fps: None, sha256: Some(w.content.clone()) },
                    sink: Sink::Local { path: output_path(args, Path::new(&w.video), &w.style), manifest: true },
                    style: style.clone(),
                    settings: args.settings(style),
                };
                if tx.send((w, job::run(&job, env, observe, shutdown))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (w, report) in rx {
            match report.result {
                Ok(Finished::Done { frames, .. }) => {
                    planner.done(&w.content, &w.model);
                    styled += 1;
                    if !args.quiet && args.progress != ProgressMode::Json {
                        eprintln!("wrote {} ({frames} frames)", report.output);
                    }
                }
                Ok(Finished::AlreadyDone { .. } | Finished::Planned { .. }) => planner.done(&w.content, &w.model),
                Err(e) => {
                    eprintln!("error: {} with {}: {e}", w.video, w.style);
                    fails.push(w);
                }
            }
        }
    });
    (styled, fails)
}

/// `OUT/<stem>.<style>.<ext>`.
fn output_path(args: &BatchOptions, video: &Path, style: &str) -> PathBuf {
    let stem = video.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = args
        .format
        .clone()
        .or_else(|| video.extension().map(|e| e.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mp4".into());
    args.output.join(format!("{stem}.{style}.{}", ext.trim_start_matches('.')))
}

/// The (content, model) pairs whose output in `dir` is complete: a manifest that parses, was
/// made with `settings`, and its output present with the recorded size.
fn finished_pairs(dir: &Path, settings: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut done = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if !path.to_string_lossy().ends_with(MANIFEST_SUFFIX) {
            continue;
        }
        let parsed = std::fs::read(&path).ok().and_then(|b| Manifest::from_json(&b, &path.display().to_string()).ok());
        let Some(m) = parsed else {
            tracing::warn!(manifest = %path.display(), "unreadable manifest: its output will be made again");
            continue;
        };
        if m.schema != MANIFEST_SCHEMA || &m.settings != settings {
            tracing::info!(manifest = %path.display(), "made with other settings: its output will be made again");
            continue;
        }
        let output = PathBuf::from(path.to_string_lossy().trim_end_matches(MANIFEST_SUFFIX));
        if std::fs::metadata(&output).map(|md| md.len()).ok() == Some(m.output_size) {
            done.push((m.input_etag, m.model_sha256));
        } else {
            tracing::warn!(output = %output.display(), "output missing or changed since its manifest: it will be made again");
        }
    }
    done
}

/// The videos named: files as given, directories' video files (by extension), sorted.
fn scan_inputs(inputs: &[PathBuf], watching: bool) -> Result<Vec<PathBuf>, AppError> {
    let mut videos = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|e| MediaError::Read { path: input.clone(), source: e })?;
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && !is_hidden(p))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
                })
                .collect();
            found.sort();
            videos.extend(found);
        } else if input.is_file() {
            videos.push(input.clone());
        } else if !watching {
            return Err(MediaError::Read { path: input.clone(), source: std::io::ErrorKind::NotFound.into() }.into());
        }
    }
    Ok(videos)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Two inputs with the same file stem would write the same outputs: refused, naming both.
fn check_names(videos: &[PathBuf]) -> Result<(), AppError> {
    let mut seen: BTreeMap<String, &PathBuf> = BTreeMap::new();
    for v in videos {
        let stem = v.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(other) = seen.insert(stem.clone(), v) {
            if other != v {
                return Err(AppError::Usage(format!(
                    "{} and {} would both be written as {stem}.<style>.*: rename one",
                    other.display(),
                    v.display()
                )));
            }
        }
    }
    Ok(())
}

/// sha256 of each video, recomputed only when its size or modification time changes.
#[derive(Default)]
struct HashCache {
    known: BTreeMap<String, (u64, Option<SystemTime>, String)>,
    /// Size and modification time at the previous scan, for `settled`.
    last_seen: BTreeMap<String, (u64, Option<SystemTime>)>,
}

impl HashCache {
    /// Whether `path` has the same size and modification time as at the previous call.
    fn settled(&mut self, path: &Path) -> bool {
        let Ok(md) = std::fs::metadata(path) else { return false };
        let stamp = (md.len(), md.modified().ok());
        self.last_seen.insert(path.display().to_string(), stamp) == Some(stamp)
    }

    fn sha256(&mut self, path: &Path) -> Result<String, MediaError> {
        let read_err = |e| MediaError::Read { path: path.to_path_buf(), source: e };
        let md = std::fs::metadata(path).map_err(read_err)?;
        let key = path.display().to_string();
        let stamp = (md.len(), md.modified().ok());
        if let Some((len, modified, hash)) = self.known.get(&key) {
            if (*len, *modified) == stamp {
                return Ok(hash.clone());
            }
        }
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hash = format!("{:x}", hasher.finalize());
        self.known.insert(key, (stamp.0, stamp.1, hash.clone()));
        Ok(hash)
    }

    /// Drops videos no longer present; returns their ids.
    fn forget_except(&mut self, present: &BTreeSet<String>) -> Vec<String> {
        let gone: Vec<String> = self.known.keys().filter(|k| !present.contains(*k)).cloned().collect();
        for g in &gone {
            self.known.remove(g);
        }
        gone
    }
}
