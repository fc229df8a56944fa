//! The job board: the service's view of its jobs, for the status page, `GET /jobs` and
//! `/healthz`. The service reports what happens (`started`, `progress`, `finished`,
//! `dead_lettered`); the HTTP side reads [`JobBoard::snapshot`] and [`JobBoard::health`], and
//! asks for cancellations through the canceller the service installs.
//!
//! Bounded: the last [`RECENT`] finished jobs, frames per minute for the last [`MINUTES`]
//! minutes, and one count per dead-letter reason (a closed set: `PoisonCode`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::job::outcome::{OutcomeKind, PoisonCode};

impl Serialize for OutcomeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How many finished jobs the board remembers.
pub const RECENT: usize = 50;
/// How many minutes of frame counts the board remembers (the chart's width).
pub const MINUTES: usize = 60;

/// Asks the service to cancel the job with this id; returns whether such a job was found.
pub type Canceller = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A job being processed now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInProgress {
    pub id: String,
    pub input: String,
    pub style: String,
    pub output: String,
    /// Frames in the input, when known.
    pub total_frames: Option<u64>,
    pub frames_done: u64,
    pub started_at: DateTime<Utc>,
    /// Since the job started.
    pub seconds: f64,
    /// Frames per second since the job's first frame (download and start-up excluded); 0
    /// until a second of frames has passed.
    pub fps: f64,
    /// A video cut into segments (styled by any instances): segments committed, and in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<(u32, u32)>,
}

/// A cut video as the system store shows it: its plan, its committed segments and the
/// segments in flight on every instance (their heartbeats).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoProgress {
    pub id: String,
    pub input: String,
    pub style: String,
    pub output: String,
    pub total_frames: u64,
    pub frames_done: u64,
    pub segments_done: u32,
    pub segments: u32,
    pub started_at: DateTime<Utc>,
}

/// A segment styled here now: the video it belongs to, its job id, its frames so far and in all.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PartProgress {
    pub video: String,
    pub id: String,
    pub frames_done: u64,
    pub frames: Option<u64>,
}

/// A job that ended, one way or another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinishedJob {
    pub id: String,
    pub input: String,
    pub style: String,
    pub output: String,
    /// succeeded, already-done, failed, handed-back, interrupted, cancelled or timed-out.
    pub outcome: OutcomeKind,
    pub error: Option<String>,
    /// `None` when the board never saw the job start.
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    /// From start to end, every stage included.
    pub seconds: f64,
    pub frames: u64,
    /// `frames / seconds`: the job's throughput, every stage included.
    pub fps: f64,
}

impl FinishedJob {
    /// Whether the job ended without its output (failed, interrupted, timed out, ...): not
    /// succeeded, already done, or handed back to the queue for another instance.
    pub fn is_failure(&self) -> bool {
        self.outcome.is_failure()
    }
}

/// Everything the board knows, at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoardSnapshot {
    pub engine_alive: bool,
    /// Oldest first.
    pub in_progress: Vec<JobInProgress>,
    /// Newest first, at most [`RECENT`].
    pub recent: Vec<FinishedJob>,
    pub dead_letters: BTreeMap<String, u64>,
    /// Frames per second in each of the last [`MINUTES`] minutes, oldest first; the last one is
    /// the current minute, still counting.
    pub fps_per_minute: Vec<f64>,
    /// Seconds since the last frame progress (or job start), when there was any.
    pub seconds_since_progress: Option<f64>,
}

struct Running {
    job: JobInProgress,
    /// A segment of this cut video: shown as part of the video, not on its own.
    part_of: Option<String>,
    started: Instant,
    /// The first progress report, and the frames it reported.
    first_progress: Option<(Instant, u64)>,
}

struct Board {
    origin: Instant,
    engine_alive: bool,
    running: Vec<Running>,
    /// Cut videos with segments in progress anywhere (from the system store).
    videos: Vec<VideoProgress>,
    recent: VecDeque<FinishedJob>,
    dead_letters: BTreeMap<String, u64>,
    /// (minute since `origin`, frames done in it), oldest first, only minutes with frames.
    minutes: VecDeque<(u64, u64)>,
    /// The last frame progress or job start.
    last_activity: Option<Instant>,
    canceller: Option<Canceller>,
}

/// The service's view of its jobs; cheap to clone (shared).
#[derive(Clone)]
pub struct JobBoard {
    board: Arc<Mutex<Board>>,
}

impl Default for JobBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl JobBoard {
    /// An empty board whose engine counts as alive.
    pub fn new() -> Self {
        Self { board: Arc::new(Mutex::new(Board::new())) }
    }

    /// A job starts (again, if its id is on the board already: the old entry goes).
    pub fn started(&self, id: &str, input: &str, style: &str, output: &str, total_frames: Option<u64>) {
        self.started_part(id, None, input, style, output, total_frames);
    }

    /// A job starts that is a segment of cut video `video` (when `Some`): shown as part of it.
    pub fn started_part(
        &self,
        id: &str,
        video: Option<&str>,
        input: &str,
        style: &str,
        output: &str,
        total_frames: Option<u64>,
    ) {
        let now = Instant::now();
        let mut b = self.lock();
        b.running.retain(|r| r.job.id != id);
        b.running.push(Running {
            job: JobInProgress {
                id: id.to_string(),
                input: input.to_string(),
                style: style.to_string(),
                output: output.to_string(),
                total_frames,
                frames_done: 0,
                started_at: Utc::now(),
                seconds: 0.0,
                fps: 0.0,
                segments: None,
            },
            part_of: video.map(str::to_string),
            started: now,
            first_progress: None,
        });
        b.last_activity = Some(now);
    }

    /// Job `id` knows now how many frames it has (its input is open).
    pub fn set_total_frames(&self, id: &str, total_frames: Option<u64>) {
        let mut b = self.lock();
        if let Some(r) = b.running.iter_mut().find(|r| r.job.id == id) {
            r.job.total_frames = total_frames;
        }
        b.last_activity = Some(Instant::now());
    }

    /// Job `id` has written `frames_done` frames in all (a running count, not an increment).
    pub fn progress(&self, id: &str, frames_done: u64) {
        let now = Instant::now();
        let mut b = self.lock();
        let minute = now.duration_since(b.origin).as_secs() / 60;
        let Some(r) = b.running.iter_mut().find(|r| r.job.id == id) else { return };
        let new = frames_done.saturating_sub(r.job.frames_done);
        r.job.frames_done = r.job.frames_done.max(frames_done);
        r.first_progress.get_or_insert((now, frames_done));
        b.last_activity = Some(now);
        if new > 0 {
            b.add_frames(minute, new);
        }
    }

    /// Job `id` ended with `outcome` and, for failures, an error.
    pub fn finished(&self, id: &str, outcome: OutcomeKind, error: Option<&str>) {
        let mut b = self.lock();
        let running = b.running.iter().position(|r| r.job.id == id).map(|i| b.running.remove(i));
        let (input, style, output, started_at, seconds, frames) = match running {
            Some(r) => {
                let secs = r.started.elapsed().as_secs_f64();
                (r.job.input, r.job.style, r.job.output, Some(r.job.started_at), secs, r.job.frames_done)
            }
            None => (String::new(), String::new(), String::new(), None, 0.0, 0),
        };
        b.recent.push_front(FinishedJob {
            id: id.to_string(),
            input,
            style,
            output,
            outcome,
            error: error.map(str::to_string),
            started_at,
            ended_at: Utc::now(),
            seconds,
            frames,
            fps: fps(frames, seconds),
        });
        b.recent.truncate(RECENT);
    }

    /// The cut videos in progress, as the system store shows them now (replaces the last list).
    pub fn set_videos(&self, videos: Vec<VideoProgress>) {
        self.lock().videos = videos;
    }

    /// The segments styled here now (for the heartbeat other instances read).
    pub fn parts(&self) -> Vec<PartProgress> {
        let b = self.lock();
        b.running
            .iter()
            .filter_map(|r| {
                let video = r.part_of.clone()?;
                Some(PartProgress {
                    video,
                    id: r.job.id.clone(),
                    frames_done: r.job.frames_done,
                    frames: r.job.total_frames,
                })
            })
            .collect()
    }

    /// A message went to the dead-letter queue for `reason`.
    pub fn dead_lettered(&self, reason: PoisonCode) {
        *self.lock().dead_letters.entry(reason.as_str().to_string()).or_default() += 1;
    }

    /// Whether the frame engine (the dataflow workers) runs; `/healthz` fails while it does not.
    pub fn set_engine_alive(&self, alive: bool) {
        self.lock().engine_alive = alive;
    }

    /// Installs what `DELETE /jobs/<id>` calls.
    pub fn set_canceller(&self, f: Canceller) {
        self.lock().canceller = Some(f);
    }

    /// Asks the canceller to cancel job `id`: `None` without a canceller, else whether the job
    /// was found. The canceller runs without the board's lock (it may report to the board).
    pub fn cancel(&self, id: &str) -> Option<bool> {
        let canceller = self.lock().canceller.clone()?;
        Some(canceller(id))
    }

    /// `Ok(())` while the engine is alive and, when jobs are in progress, one of them made
    /// progress (or started) in the last `stall_secs` seconds; else why not.
    pub fn health(&self, stall_secs: f64) -> Result<(), String> {
        self.health_at(Instant::now(), stall_secs)
    }

    fn health_at(&self, now: Instant, stall_secs: f64) -> Result<(), String> {
        let b = self.lock();
        if !b.engine_alive {
            return Err("engine: not running".to_string());
        }
        if b.running.is_empty() {
            return Ok(());
        }
        let idle = b.last_activity.map(|t| now.saturating_duration_since(t).as_secs_f64()).unwrap_or(0.0);
        if idle > stall_secs {
            return Err(format!(
                "stalled: {} job(s) in progress and no frame progress for {idle:.0} s (limit {stall_secs} s)",
                b.running.len()
            ));
        }
        Ok(())
    }

    /// Frames per second over the last 60 seconds, all jobs together.
    pub fn recent_fps(&self) -> f64 {
        let b = self.lock();
        let now = b.origin.elapsed().as_secs_f64();
        let minute = (now / 60.0).floor() as u64;
        // The current minute counts whole; the previous one for the part of it still in the window.
        let into = (now - minute as f64 * 60.0) / 60.0;
        // A fold from +0.0, not `sum` (which starts at -0.0 and would show "-0").
        let frames = b.minutes.iter().fold(0.0, |acc, &(m, f)| match m {
            m if m == minute => acc + f as f64,
            m if m + 1 == minute => acc + f as f64 * (1.0 - into),
            _ => acc,
        });
        frames / 60.0
    }

    /// What the board knows now.
    pub fn snapshot(&self) -> BoardSnapshot {
        let now = Instant::now();
        let b = self.lock();
        let minute = now.duration_since(b.origin).as_secs() / 60;
        let first = (minute + 1).saturating_sub(MINUTES as u64);
        let mut fps_per_minute = vec![0.0; MINUTES];
        for &(m, f) in b.minutes.iter().filter(|(m, _)| *m >= first && *m <= minute) {
            // Right-aligned: the current minute is the last entry.
            let slot = MINUTES - 1 - (minute - m) as usize;
            fps_per_minute[slot] = f as f64 / 60.0;
        }
        BoardSnapshot {
            engine_alive: b.engine_alive,
            in_progress: b
                .running
                .iter()
                .filter(|r| r.part_of.is_none())
                .map(|r| {
                    let seconds = now.saturating_duration_since(r.started).as_secs_f64();
                    let steady = r.first_progress.map_or(0.0, |(t, f0)| {
                        let secs = now.saturating_duration_since(t).as_secs_f64();
                        if secs >= 1.0 {
                            fps(r.job.frames_done.saturating_sub(f0), secs)
                        } else {
                            0.0
                        }
                    });
                    JobInProgress { seconds, fps: steady, ..r.job.clone() }
                })
                .chain(b.videos.iter().map(|v| {
                    let seconds = (Utc::now() - v.started_at).num_milliseconds().max(0) as f64 / 1e3;
                    JobInProgress {
                        id: v.id.clone(),
                        input: v.input.clone(),
                        style: v.style.clone(),
                        output: v.output.clone(),
                        total_frames: Some(v.total_frames),
                        frames_done: v.frames_done,
                        started_at: v.started_at,
                        seconds,
                        fps: fps(v.frames_done, seconds),
                        segments: Some((v.segments_done, v.segments)),
                    }
                }))
                .collect(),
            recent: b.recent.iter().cloned().collect(),
            dead_letters: b.dead_letters.clone(),
            fps_per_minute,
            seconds_since_progress: b.last_activity.map(|t| now.saturating_duration_since(t).as_secs_f64()),
        }
    }

    /// The board, even after a panic elsewhere while it was held (its data stays consistent:
    /// every update is a few plain assignments).
    fn lock(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Board {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            engine_alive: true,
            running: Vec::new(),
            videos: Vec::new(),
            recent: VecDeque::new(),
            dead_letters: BTreeMap::new(),
            minutes: VecDeque::new(),
            last_activity: None,
            canceller: None,
        }
    }

    /// Counts `frames` into `minute`, forgetting minutes older than the chart.
    fn add_frames(&mut self, minute: u64, frames: u64) {
        match self.minutes.back_mut() {
            Some((m, f)) if *m == minute => *f += frames,
            _ => self.minutes.push_back((minute, frames)),
        }
        while self.minutes.front().is_some_and(|(m, _)| *m + (MINUTES as u64) <= minute) {
            self.minutes.pop_front();
        }
    }
}

fn fps(frames: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        frames as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn jobs_move_from_in_progress_to_recent_with_their_frames() {
        let board = JobBoard::new();
        board.started("a", "in/a.mp4", "udnie", "out/a.mp4", Some(100));
        board.started("b", "in/b.mp4", "mosaic", "out/b.mp4", None);
        board.progress("a", 10);
        board.progress("a", 40);
        board.progress("a", 30); // late and out of order: the count never goes back
        board.progress("unknown", 5);
        let s = board.snapshot();
        assert_eq!(s.in_progress.len(), 2);
        assert_eq!(s.in_progress[0].id, "a");
        assert_eq!(s.in_progress[0].frames_done, 40);
        assert_eq!(s.in_progress[0].total_frames, Some(100));
        assert_eq!(s.in_progress[0].fps, 0.0, "no rate before a second of frames");
        assert_eq!(s.fps_per_minute.len(), MINUTES);
        assert!((s.fps_per_minute.iter().sum::<f64>() - 40.0 / 60.0).abs() < 1e-9, "{:?}", s.fps_per_minute);

        board.finished("a", OutcomeKind::Succeeded, None);
        board.finished("b", OutcomeKind::Failed, Some("decode: broken"));
        board.finished("never-started", OutcomeKind::AlreadyDone, None);
        let s = board.snapshot();
        assert!(s.in_progress.is_empty());
        let ids: Vec<&str> = s.recent.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["never-started", "b", "a"]);
        assert_eq!(s.recent[2].frames, 40);
        assert_eq!(s.recent[2].style, "udnie");
        assert!(s.recent[2].started_at.is_some());
        assert_eq!(s.recent[1].error.as_deref(), Some("decode: broken"));
        assert!(s.recent[1].is_failure() && !s.recent[2].is_failure() && !s.recent[0].is_failure());
        assert_eq!(s.recent[0].started_at, None);
    }

    #[test]
    fn recent_jobs_and_dead_letter_reasons_stay_bounded() {
        let board = JobBoard::new();
        for i in 0..RECENT + 10 {
            board.finished(&format!("j{i}"), OutcomeKind::Succeeded, None);
        }
        let s = board.snapshot();
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(s.recent[0].id, format!("j{}", RECENT + 9));
        for code in PoisonCode::ALL {
            board.dead_lettered(code);
        }
        board.dead_lettered(PoisonCode::CorruptInput);
        let d = board.snapshot().dead_letters;
        assert_eq!(d.len(), PoisonCode::ALL.len());
        assert_eq!(d["corrupt-input"], 2);
        assert_eq!(d["timed-out"], 1);
    }

    #[test]
    fn recent_fps_counts_this_minute_and_is_never_negative_zero() {
        let board = JobBoard::new();
        assert_eq!(board.recent_fps().to_string(), "0");
        board.started("a", "i", "s", "o", None);
        board.progress("a", 120);
        // Started under a minute ago: everything is in the current minute.
        let fps = board.recent_fps();
        assert!((fps - 2.0).abs() < 1e-9, "{fps}");
    }

    #[test]
    fn frame_minutes_older_than_the_chart_are_forgotten() {
        let mut b = Board::new();
        b.add_frames(0, 5);
        b.add_frames(0, 5);
        b.add_frames(59, 1);
        assert_eq!(b.minutes, [(0, 10), (59, 1)]);
        b.add_frames(60, 1);
        assert_eq!(b.minutes, [(59, 1), (60, 1)]);
    }

    #[test]
    fn health_fails_when_the_engine_dies_or_running_jobs_stall() {
        let board = JobBoard::new();
        let later = |s| Instant::now() + Duration::from_secs(s);
        assert_eq!(board.health_at(later(3600), 60.0), Ok(()), "no jobs: nothing can stall");
        board.started("a", "i", "s", "o", None);
        assert_eq!(board.health_at(later(10), 60.0), Ok(()));
        let stalled = board.health_at(later(120), 60.0);
        assert!(stalled.as_ref().is_err_and(|e| e.starts_with("stalled: 1 job(s)")), "{stalled:?}");
        std::thread::sleep(Duration::from_millis(20));
        board.progress("a", 1);
        assert_eq!(board.health_at(later(50), 60.0), Ok(()));
        board.finished("a", OutcomeKind::Succeeded, None);
        assert_eq!(board.health_at(later(3600), 60.0), Ok(()));
        board.set_engine_alive(false);
        assert_eq!(board.health(60.0), Err("engine: not running".to_string()));
        board.set_engine_alive(true);
        assert_eq!(board.health(60.0), Ok(()));
    }

    #[test]
    fn cancel_calls_the_canceller_with_the_id_without_holding_the_board() {
        let board = JobBoard::new();
        assert_eq!(board.cancel("a"), None);
        let calls = Arc::new(AtomicUsize::new(0));
        let (b2, c2) = (board.clone(), calls.clone());
        board.set_canceller(Arc::new(move |id: &str| {
            c2.fetch_add(1, Ordering::SeqCst);
            // Reporting to the board from the canceller must not deadlock.
            b2.finished(id, OutcomeKind::Cancelled, None);
            id == "a"
        }));
        assert_eq!(board.cancel("a"), Some(true));
        assert_eq!(board.cancel("zzz"), Some(false));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
