//! The direct pipeline: decode -> stylize -> reorder -> encode on three threads joined by
//! bounded channels, so decoding, the GPU and encoding overlap and at most
//! `2 * max_frames_in_flight + 3` frames exist at once, however long the video. It only wires
//! the stages; the timely dataflow will wire the same stages across workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use crate::frame::{Frame, RgbFrame};
use crate::media::{MediaError, Sink, Source};
use crate::model::gpu::GpuError;
use crate::reorder::{Reorder, ReorderError};
use crate::telemetry::progress::Progress;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Asks every running pipeline to stop (Ctrl-C); outputs in progress are discarded.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("reordering frames: {0}")]
    Reorder(#[from] ReorderError),
    #[error("interrupted: no output was written")]
    Interrupted,
    #[error("dataflow: {0}")]
    Dataflow(String),
    #[error("{} could not be styled after {attempts} attempts: {reason}", frame_range(*first, *last, *pts))]
    FramesFailed { first: u64, last: u64, pts: i64, attempts: u32, reason: String },
}

/// "frame 4 (pts 160)", or "frames 4..=7 (one batch)" for a batch of several.
fn frame_range(first: u64, last: u64, pts: i64) -> String {
    if first == last {
        format!("frame {first} (pts {pts})")
    } else {
        format!("frames {first}..={last} (one batch)")
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Capacity of each queue between stages.
    pub max_frames_in_flight: usize,
}

/// Runs a whole video; returns the number of frames written. On any error (or interruption)
/// the sink is dropped unfinished, so nothing appears under the output name.
pub fn run<F>(mut source: Source, mut stylize: F, mut sink: Sink, opts: PipelineOptions, mut progress: Progress) -> Result<u64, PipelineError>
where
    F: FnMut(&RgbFrame) -> Result<RgbFrame, GpuError> + Send,
{
    let cap = opts.max_frames_in_flight.max(1);
    let first_error: Mutex<Option<PipelineError>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let decoded = AtomicU64::new(0);
    let stop = || failed.load(Ordering::SeqCst) || INTERRUPTED.load(Ordering::SeqCst);
    let fail = |e: PipelineError| {
        failed.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = first_error.lock() {
            slot.get_or_insert(e);
        }
    };
    let (to_gpu, from_decode): (SyncSender<Frame>, Receiver<Frame>) = sync_channel(cap);
    let (to_encode, from_gpu): (SyncSender<Frame>, Receiver<Frame>) = sync_channel(cap);

    // Each thread gets references (or owned channel ends) of its own.
    let (decoded, stop, fail) = (&decoded, &stop, &fail);
    let (source, sink_ref, progress) = (&mut source, &mut sink, &mut progress);
    let written = std::thread::scope(|scope| {
        // Decode.
        scope.spawn(move || {
            let mut n = 0u64;
            while !stop() {
                match source.next_frame() {
                    Ok(Some(f)) => {
                        n += 1;
                        if to_gpu.send(f).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        fail(e.into());
                        break;
                    }
                }
            }
            decoded.store(n, Ordering::SeqCst);
        });
        // Reorder and encode.
        let encoder = scope.spawn(move || {
            let mut reorder = Reorder::new();
            for frame in from_gpu.iter() {
                if stop() {
                    break;
                }
                let due = match reorder.push(frame.index, frame) {
                    Ok(due) => due,
                    Err(e) => {
                        fail(e.into());
                        break;
                    }
                };
                for f in due {
                    if let Err(e) = sink_ref.write(&f) {
                        fail(e.into());
                        return 0;
                    }
                    progress.inc();
                }
            }
            if stop() {
                return 0;
            }
            match reorder.finish(Some(decoded.load(Ordering::SeqCst))) {
                Ok(n) => {
                    progress.finish();
                    n
                }
                Err(e) => {
                    fail(e.into());
                    0
                }
            }
        });
        // Stylize on this thread: the GPU stage.
        for frame in from_decode.iter() {
            if stop() {
                break;
            }
            match stylize(&frame.image) {
                Ok(image) => {
                    if to_encode.send(Frame { image, ..frame }).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    fail(e.into());
                    break;
                }
            }
        }
        drop(to_encode);
        drop(from_decode);
        encoder.join().unwrap_or(0)
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(PipelineError::Interrupted);
    }
    sink.finish()?;
    Ok(written)
}
