//! Opening a job's ends on local disk: its input (a still, a video, an image sequence) as a
//! `media::Source` and its output (a still, a video, a directory of frames) as a
//! `media::Sink`, under an input policy (trusted files the user named, or restricted stored
//! objects).

use std::path::{Path, PathBuf};

use crate::frame::Rate;
use crate::media::image::{StillSink, StillSource};
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

impl From<OpenError> for super::JobError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Media(m) => super::JobError::Media(m),
            OpenError::Usage(u) => super::JobError::Usage(u),
        }
    }
}

/// What a job's input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Opens one job's source and sink: a still into a still (one frame); a video or sequence into
/// a video or a directory of frames. The output's kind is checked before the input is read
/// where that is cheap, so a bad output name costs no decoding.
pub fn open_ends(
    input: &str,
    output: &Path,
    fps: Option<Rate>,
    encode: &EncodeSettings,
    policy: &InputPolicy,
) -> Result<(Source, Sink), OpenError> {
    let dir_out = is_dir_output(output);
    let kind = input_kind(input);
    if kind == InputKind::Image && !dir_out && policy == &InputPolicy::Trusted {
        let sink = StillSink::create(output)?;
        let source = StillSource::open(Path::new(input), policy.limits())?;
        return Ok((Source::Still(source), Sink::Still(sink)));
    }
    let (source, names, companion) = match kind {
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
            return Err(
                MediaError::NoFrameRate { what: format!("making a video from {input}"), sidecar: FPS_SIDECAR }.into()
            );
        }
        Sink::Video(Box::new(VideoEncoder::create(output, &info, encode, &companion)?))
    };
    Ok((source, sink))
}
