//! Where a video's time goes: the wall time spent inside each stage's calls (decode, conversion
//! in, upload, GPU, readback and repack, conversion out, encode, mux), summed over the job.
//! The stages run on different threads at once (decode, the dataflow workers, the encoder), so
//! the one that limits the rate is the busiest thread; `bench --video` reports both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Demuxing and decoding (the decoder's own threads included).
    Decode,
    /// Decoded frames to RGB8.
    ConvertIn,
    /// Frames to the GPU.
    Upload,
    /// The network (or its CPU copy under `--model none`).
    Gpu,
    /// Results back, repacked to RGB8.
    Readback,
    /// RGB8 to the encoder's pixel format.
    ConvertOut,
    /// The video encoder.
    Encode,
    /// Writing packets (and the copied audio) to the container.
    Mux,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::Decode,
        Step::ConvertIn,
        Step::Upload,
        Step::Gpu,
        Step::Readback,
        Step::ConvertOut,
        Step::Encode,
        Step::Mux,
    ];

    /// The thread the stage runs on: the decode thread, a dataflow worker, the encoder thread.
    pub const fn thread(self) -> &'static str {
        match self {
            Step::Decode | Step::ConvertIn => "decode",
            Step::Upload | Step::Gpu | Step::Readback => "worker",
            Step::ConvertOut | Step::Encode | Step::Mux => "encode",
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Step::Decode => "decode",
            Step::ConvertIn => "convert_in",
            Step::Upload => "upload",
            Step::Gpu => "gpu",
            Step::Readback => "readback",
            Step::ConvertOut => "convert_out",
            Step::Encode => "encode",
            Step::Mux => "mux",
        }
    }
}

/// Time spent in each stage of one job, from any thread.
#[derive(Debug, Default)]
pub struct StageClock {
    nanos: [AtomicU64; 8],
    calls: [AtomicU64; 8],
}

/// A stage clock a stage may or may not have (most jobs are not measured).
pub type Clock = Option<Arc<StageClock>>;

impl StageClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts `d` into `step`.
    pub fn add(&self, step: Step, d: Duration) {
        let i = step as usize;
        self.nanos[i].fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.calls[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The seconds and calls of every stage so far.
    pub fn report(&self) -> Vec<StageTime> {
        Step::ALL
            .iter()
            .map(|&s| StageTime {
                stage: s,
                thread: s.thread(),
                secs: self.nanos[s as usize].load(Ordering::Relaxed) as f64 / 1e9,
                calls: self.calls[s as usize].load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Runs `f`, counting its wall time into `step` of `clock` when there is one.
pub fn timed<T>(clock: &Clock, step: Step, f: impl FnOnce() -> T) -> T {
    match clock {
        Some(c) => {
            let t = Instant::now();
            let out = f();
            c.add(step, t.elapsed());
            out
        }
        None => f(),
    }
}

/// One stage's total.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StageTime {
    pub stage: Step,
    pub thread: &'static str,
    pub secs: f64,
    pub calls: u64,
}

/// The thread whose stages took longest (it bounds the rate), and its busiest stage.
pub fn limiting(times: &[StageTime]) -> Option<(&'static str, Step)> {
    let busiest =
        ["decode", "worker", "encode"].into_iter().max_by(|a, b| total(times, a).total_cmp(&total(times, b)))?;
    let stage = times.iter().filter(|t| t.thread == busiest).max_by(|a, b| a.secs.total_cmp(&b.secs))?.stage;
    Some((busiest, stage))
}

fn total(times: &[StageTime], thread: &str) -> f64 {
    times.iter().filter(|t| t.thread == thread).map(|t| t.secs).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_thread_and_its_busiest_stage_limit() {
        let c = StageClock::new();
        c.add(Step::Decode, Duration::from_millis(30));
        c.add(Step::ConvertIn, Duration::from_millis(30));
        c.add(Step::Gpu, Duration::from_millis(50));
        c.add(Step::Encode, Duration::from_millis(40));
        c.add(Step::Mux, Duration::from_millis(1));
        let r = c.report();
        assert_eq!(r.iter().find(|t| t.stage == Step::Gpu).map(|t| t.calls), Some(1));
        // decode 60 ms beats the worker's 50 ms: the decode thread limits, by either stage.
        assert_eq!(limiting(&r).map(|l| l.0), Some("decode"));
        c.add(Step::Encode, Duration::from_millis(40));
        assert_eq!(limiting(&c.report()), Some(("encode", Step::Encode)));
    }
}
