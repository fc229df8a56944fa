//! Progress of a video: a bar on a terminal, JSON lines for scripts, or nothing.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, nothing otherwise.
    Auto,
    /// Always a bar (on stderr).
    Bar,
    /// One JSON object per second on stderr: frames_done, frames_total, fps, eta_secs, elapsed_secs.
    Json,
    /// Nothing.
    None,
}

pub struct Progress {
    mode: ProgressMode,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last_json: Option<Instant>,
    /// When the first frame was done: the rate after it excludes start-up (kernel compilation).
    first: Option<Instant>,
    bar: Option<ProgressBar>,
    /// Per-frame records for a job log, when asked for.
    log: Option<FrameLog>,
    /// Told the frames written so far after each frame (a status page's progress).
    observer: Option<FrameObserver>,
}

/// Called with the number of frames written so far, after each frame.
pub type FrameObserver = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// One written frame, for job logs: where it was styled, how long that took, and when it was
/// written (ms after the job started).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrameRecord {
    pub index: u64,
    pub pts: i64,
    pub worker: u32,
    pub gpu_ms: f32,
    pub attempts: u32,
    pub written_ms: f64,
}

/// Where a job's frame records go (shared with whoever writes the log).
pub type FrameLog = std::sync::Arc<std::sync::Mutex<Vec<FrameRecord>>>;

impl Progress {
    pub fn new(mode: ProgressMode, total: Option<u64>) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::None,
            m => m,
        };
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames  {per_sec}  ETA {eta}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            mode,
            total,
            done: 0,
            start: Instant::now(),
            last_json: None,
            first: None,
            bar,
            log: None,
            observer: None,
        }
    }

    /// Also keeps a record of every frame written in `log`.
    pub fn with_frame_log(mut self, log: FrameLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Also tells `observer` the frames written so far after each frame.
    pub fn with_observer(mut self, observer: FrameObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The number of frames to come, once it is known (the bar's length, JSON `frames_total`).
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// One more frame written: counts it and, with a frame log, records it.
    pub fn frame(&mut self, f: &crate::frame::Frame) {
        if let Some(log) = &self.log {
            if let Ok(mut l) = log.lock() {
                l.push(FrameRecord {
                    index: f.index,
                    pts: f.pts,
                    worker: f.timing.worker,
                    gpu_ms: f.timing.gpu_ms,
                    attempts: f.timing.attempts,
                    written_ms: self.start.elapsed().as_secs_f64() * 1e3,
                });
            }
        }
        self.inc();
    }

    /// One more frame written.
    pub fn inc(&mut self) {
        self.done += 1;
        if let Some(o) = &self.observer {
            o(self.done);
        }
        self.first.get_or_insert_with(Instant::now);
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        if self.mode == ProgressMode::Json && self.last_json.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.json();
        }
    }

    fn json(&mut self) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let fps = if elapsed > 0.0 { self.done as f64 / elapsed } else { 0.0 };
        let eta = self.total.filter(|_| fps > 0.0).map(|t| t.saturating_sub(self.done) as f64 / fps);
        let line = serde_json::json!({
            "frames_done": self.done,
            "frames_total": self.total,
            "fps": (fps * 100.0).round() / 100.0,
            "eta_secs": eta.map(|e| (e * 10.0).round() / 10.0),
            "elapsed_secs": (elapsed * 10.0).round() / 10.0,
            "steady_fps": self.steady_fps().map(|f| (f * 1000.0).round() / 1000.0),
        });
        let _ = writeln!(std::io::stderr(), "{line}");
        self.last_json = Some(Instant::now());
    }

    /// The end: a final JSON line with every frame, or the bar cleared.
    pub fn finish(&mut self) {
        self.total = Some(self.done);
        if self.mode == ProgressMode::Json {
            self.json();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    /// Frames per second after the first frame (which pays for compiling the kernels).
    pub fn steady_fps(&self) -> Option<f64> {
        let first = self.first?;
        let secs = first.elapsed().as_secs_f64();
        (self.done > 1 && secs > 0.0).then(|| (self.done - 1) as f64 / secs)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}
