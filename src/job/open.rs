//! Opening a job's ends: its input (a video, an image sequence) as a `Source` and its output
//! (a video, a directory of frames) as a `Sink`, under an input policy (trusted files the user
//! named, or restricted stored objects).

use std::path::{Path, PathBuf};

use crate::media::policy::InputPolicy;
use crate::media::sequence::{SequenceReader, SequenceWriter, FPS_SIDECAR};
use crate::media::video_in::VideoDecoder;
use crate::media::video_out::{Companion, EncodeSettings, VideoEncoder};
use crate::media::{self, MediaError, Sink, Source};

/// Why a job's ends could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The input and output do not go together (a video into one image).
    #[error("{0}")]
    Usage(String),
}

/// What a job's input is.
pub enum InputKind {
    Image,
    Video,
    Sequence,
}

/// A directory or a printf pattern is a sequence; a file is an image by its first bytes, else a
/// video.
pub fn input_kind(input: &str) -> InputKind {
    let path = Path::new(input);
    if path.is_dir() || (!path.exists() && media::sequence::is_pattern(input)) {
        return InputKind::Sequence;
    }
    if media::image::looks_like_image(path) {
        InputKind::Image
    } else {
        InputKind::Video
    }
}

/// Whether OUTPUT names a directory of frames.
pub fn is_dir_output(output: &Path) -> bool {
    output.is_dir() || output.as_os_str().to_string_lossy().ends_with('/')
}

/// Whether OUTPUT names one still image (.png, .jpg).
pub fn is_image_output(output: &Path) -> bool {
    media::image::output_format(output).is_ok()
}

/// Opens one job's source (video or frames) and sink (video or frame directory), trusting the
/// input as a file the user named (see `open_job_with`).
pub fn open_job(
    input: &str,
    output: &Path,
    fps: Option<crate::frame::Rate>,
    encode: &EncodeSettings,
) -> Result<(Source, Sink), OpenError> {
    open_job_with(input, output, fps, encode, &InputPolicy::Trusted)
}

/// `open_job` with the input (video or frames) opened under `policy`:
/// `InputPolicy::Restricted(limits)` for files someone else wrote (stored objects).
pub fn open_job_with(
    input: &str,
    output: &Path,
    fps: Option<crate::frame::Rate>,
    encode: &EncodeSettings,
    policy: &InputPolicy,
) -> Result<(Source, Sink), OpenError> {
    let dir_out = is_dir_output(output);
    let (source, names, companion) = match input_kind(input) {
        InputKind::Sequence => {
            let reader = SequenceReader::open_with(input, fps, policy)?;
            let names = reader.names();
            (Source::Sequence(reader), Some(names), Companion::default())
        }
        _ => {
            let path = PathBuf::from(input);
            let decoder = VideoDecoder::open_with(&path, policy)?;
            (Source::Video(decoder), None, Companion { path: Some(path), policy: policy.clone() })
        }
    };
    let info = source.info().clone();
    if !dir_out && is_image_output(output) {
        return Err(OpenError::Usage(format!(
            "{}: a video or frame sequence cannot be written as one image; name a video file or a directory ending in /",
            output.display()
        )));
    }
    let sink = if dir_out {
        Sink::Sequence(SequenceWriter::create(output, names)?)
    } else {
        if info.frame_rate.num <= 0 {
            return Err(MediaError::NoFrameRate { what: format!("making a video from {input}"), sidecar: FPS_SIDECAR }.into());
        }
        Sink::Video(Box::new(VideoEncoder::create(output, &info, encode, &companion)?))
    };
    Ok((source, sink))
}

