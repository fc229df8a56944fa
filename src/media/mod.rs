//! Media in and out: still images, image sequences, and video with ffmpeg (decode, encode,
//! audio passthrough). Knows nothing of the network or of scheduling.

pub mod audio;
pub mod image;
pub mod packets;
pub mod policy;
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
    #[error("{path}: unsupported output type (use .png/.jpg for images, a video extension: .mp4, .m4v, .mov, .mkv, .webm, .avi, or a directory ending in /)")]
    OutputFormat { path: PathBuf },
    #[error("{path}: {format} files are not accepted here (they can refer to other files); accepted: mp4/mov, mkv/webm, avi, mpegts, flv")]
    ContainerNotAllowed { path: PathBuf, format: String },
    #[error("{path}: frames of {width}x{height} exceed the limit of {max_width_px}x{max_height_px}")]
    TooLarge { path: PathBuf, width: u32, height: u32, max_width_px: u32, max_height_px: u32 },
    #[error("{path}: {frames} frames exceed the limit of {max_frames}")]
    TooManyFrames { path: PathBuf, frames: u64, max_frames: u64 },
    #[error("{path}: {secs:.1} s exceeds the limit of {max_duration_secs} s")]
    TooLong { path: PathBuf, secs: f64, max_duration_secs: f64 },
    #[error("{output} is the input {input}: refusing to overwrite it (choose another output)")]
    SameFile { input: PathBuf, output: PathBuf },
    #[error("{what} needs a frame rate: pass --fps (e.g. --fps 25) or put it in {sidecar} beside the frames")]
    NoFrameRate { what: String, sidecar: &'static str },
}

impl MediaError {
    /// Whether an input was refused by a [`policy::MediaLimits`] limit (size, frames, duration).
    pub fn is_over_limit(&self) -> bool {
        matches!(self, MediaError::TooLarge { .. } | MediaError::TooManyFrames { .. } | MediaError::TooLong { .. })
    }
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

/// A temporary-file builder whose files and directories get the modes of any file a program
/// creates (0666 / 0777 less the umask), not tempfile's private 0600 / 0700: the temporary
/// becomes the user's output by a rename, which keeps the mode.
pub(crate) fn output_builder<'a>(mode: u32) -> tempfile::Builder<'a, 'a> {
    use std::os::unix::fs::PermissionsExt;
    let mut b = tempfile::Builder::new();
    // The kernel applies the umask to the mode given at creation.
    b.permissions(std::fs::Permissions::from_mode(mode));
    b
}

/// Mode of a new output file before the umask.
pub(crate) const FILE_MODE: u32 = 0o666;
/// Mode of a new output directory before the umask.
pub(crate) const DIR_MODE: u32 = 0o777;

/// Writes `data` to `path` atomically: a temporary file beside it (`.stylestream-*.partial`),
/// synced, then renamed, so `path` holds the old content or all of the new, never a part. The
/// file's mode follows the umask, as for any file a program creates.
/// Errors carry no temporary path (see `plain_io`).
pub fn write_atomic(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp =
        output_builder(FILE_MODE).prefix(".stylestream-").suffix(".partial").tempfile_in(dir).map_err(plain_io)?;
    tmp.write_all(data).map_err(plain_io)?;
    tmp.as_file().sync_all().map_err(plain_io)?;
    tmp.persist(path).map_err(|e| plain_io(e.error))?;
    Ok(())
}

/// Frames from elsewhere (stored frame sequences, see `job::frames`): numbered 0, 1, 2, ...
pub trait FrameSource: Send {
    fn info(&self) -> &SourceInfo;
    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError>;
}

/// Styled frames to elsewhere, in index order.
pub trait FrameSink: Send {
    fn write(&mut self, frame: &Frame) -> Result<(), MediaError>;
    fn finish(self: Box<Self>) -> Result<(), MediaError>;
}

/// Where frames come from: a still image, a video, an image sequence, or another source.
pub enum Source {
    Still(image::StillSource),
    Video(video_in::VideoDecoder),
    Sequence(sequence::SequenceReader),
    Other(Box<dyn FrameSource>),
}

impl Source {
    pub fn info(&self) -> &SourceInfo {
        match self {
            Source::Still(s) => s.info(),
            Source::Video(v) => v.info(),
            Source::Sequence(s) => s.info(),
            Source::Other(s) => s.info(),
        }
    }

    /// Counts decode and conversion time into `clock` (videos; other sources are not measured).
    pub fn set_clock(&mut self, clock: crate::telemetry::stages::Clock) {
        if let Source::Video(v) = self {
            v.set_clock(clock);
        }
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        match self {
            Source::Still(s) => s.next_frame(),
            Source::Video(v) => v.next_frame(),
            Source::Sequence(s) => s.next_frame(),
            Source::Other(s) => s.next_frame(),
        }
    }
}

/// Where styled frames go: a still image, a video file, a directory of images, or another sink.
pub enum Sink {
    Still(image::StillSink),
    Video(Box<video_out::VideoEncoder>),
    Sequence(sequence::SequenceWriter),
    Other(Box<dyn FrameSink>),
}

impl Sink {
    /// Counts conversion, encoding and muxing time into `clock` (videos; others are not measured).
    pub fn set_clock(&mut self, clock: crate::telemetry::stages::Clock) {
        if let Sink::Video(v) = self {
            v.set_clock(clock);
        }
    }

    pub fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        match self {
            Sink::Still(s) => s.write(frame),
            Sink::Video(v) => v.write(frame),
            Sink::Sequence(s) => s.write(frame),
            Sink::Other(s) => s.write(frame),
        }
    }

    /// Publishes the output under its final name. Dropping a sink without finishing removes
    /// everything it wrote (an `Other` sink says what it keeps).
    pub fn finish(self) -> Result<(), MediaError> {
        match self {
            Sink::Still(s) => s.finish(),
            Sink::Video(v) => v.finish(),
            Sink::Sequence(s) => s.finish(),
            Sink::Other(s) => s.finish(),
        }
    }
}
