//! Media in and out: still images, image sequences, and video with ffmpeg (decode, encode,
//! audio passthrough). Knows nothing of the network or of scheduling.

pub mod audio;
pub mod image;
pub mod sequence;
pub mod video_in;
pub mod video_out;

use std::path::PathBuf;

use crate::frame::{Frame, SourceInfo};

/// Errors of reading or writing media, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path} has no video stream")]
    NoVideo { path: PathBuf },
    #[error("{path} has no frames")]
    NoFrames { path: PathBuf },
    #[error("{path} is truncated or damaged: it declares {declared} frames but only {decoded} could be decoded")]
    Truncated { path: PathBuf, declared: u64, decoded: u64 },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: unsupported output type (use .png/.jpg for images, a video extension such as .mp4, .mkv, .mov, .webm, or a directory ending in /)")]
    OutputFormat { path: PathBuf },
    #[error("{what} needs a frame rate: pass --fps (e.g. --fps 25) or put it in {sidecar} beside the frames")]
    NoFrameRate { what: String, sidecar: &'static str },
}

/// An I/O error without the temporary path that tempfile appends (users never see
/// temporaries): "No such file or directory (os error 2) at path ..." loses the " at path ...".
pub(crate) fn plain_io(e: std::io::Error) -> std::io::Error {
    let text = e.to_string();
    match text.find(" at path ") {
        Some(i) => std::io::Error::new(e.kind(), text[..i].to_string()),
        None => e,
    }
}

/// Writes `data` to `path` atomically: a temporary file beside it (`.stylestream-*.partial`),
/// synced, then renamed, so `path` holds the old content or all of the new, never a part.
/// Errors carry no temporary path (see `plain_io`).
pub fn write_atomic(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".stylestream-").suffix(".partial").tempfile_in(dir).map_err(plain_io)?;
    tmp.write_all(data).map_err(plain_io)?;
    tmp.as_file().sync_all().map_err(plain_io)?;
    tmp.persist(path).map_err(|e| plain_io(e.error))?;
    Ok(())
}

/// Where frames come from: a video or an image sequence.
pub enum Source {
    Video(video_in::VideoDecoder),
    Sequence(sequence::SequenceReader),
}

impl Source {
    pub fn info(&self) -> &SourceInfo {
        match self {
            Source::Video(v) => v.info(),
            Source::Sequence(s) => s.info(),
        }
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        match self {
            Source::Video(v) => v.next_frame(),
            Source::Sequence(s) => s.next_frame(),
        }
    }
}

/// Where styled frames go: a video file or a directory of images.
pub enum Sink {
    Video(Box<video_out::VideoEncoder>),
    Sequence(sequence::SequenceWriter),
}

impl Sink {
    pub fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        match self {
            Sink::Video(v) => v.write(frame),
            Sink::Sequence(s) => s.write(frame),
        }
    }

    /// Publishes the output under its final name. Dropping a sink without finishing removes
    /// everything it wrote.
    pub fn finish(self) -> Result<(), MediaError> {
        match self {
            Sink::Video(v) => v.finish(),
            Sink::Sequence(s) => s.finish(),
        }
    }
}
