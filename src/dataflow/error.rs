//! How a job run by the dataflow ends badly.

use super::frame_order::OrderError;
use crate::media::MediaError;
use crate::model::gpu::GpuError;
use crate::stop::StopReason;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("reordering frames: {0}")]
    Reorder(#[from] OrderError),
    #[error("{}: no output was written", .0.label())]
    Stopped(StopReason),
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
