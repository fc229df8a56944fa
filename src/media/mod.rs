//! Media in and out: still images now (video with ffmpeg-next follows). Knows nothing of the
//! network or of scheduling.

pub mod image;

use std::path::PathBuf;

/// Errors of reading or writing media, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a readable PNG or JPEG image: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: unsupported output format (use .png, .jpg or .jpeg)")]
    OutputFormat { path: PathBuf },
}
