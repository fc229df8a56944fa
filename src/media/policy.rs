//! What ffmpeg may touch: how an input is opened (trusted: everything ffmpeg can do; restricted:
//! allowlisted containers, the `file` protocol, size limits), and the fixed extension → muxer map
//! of outputs.
//!
//! Why: many ffmpeg formats refer to other files (concat/ffconcat lists, HLS/DASH playlists,
//! image2 patterns, tee, segment lists, mov data references). An object stored by someone else
//! and opened with every demuxer could make the service read, style and publish a local file
//! that is not in the store. The restricted open accepts only self-contained containers, and
//! [`MediaLimits`] refuses decompression bombs from their headers before anything is decoded
//! (the decoder enforces them again, for streams whose headers lie).

use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;

use super::MediaError;

/// Demuxers a restricted open accepts: self-contained video containers (ffmpeg demuxer names;
/// a demuxer whose name list contains one of these matches, e.g. `mov,mp4,m4a,3gp,3g2,mj2`).
/// Nothing that opens other files: no concat, hls, dash, image2, tee, segment lists.
pub const ALLOWED_DEMUXERS: &[&str] = &["mov", "mp4", "m4a", "3gp", "matroska", "webm", "avi", "mpegts", "flv"];

/// The only protocol a restricted open may use.
pub const ALLOWED_PROTOCOLS: &str = "file";

/// Output extensions and the muxer each selects; nothing else is written. No muxer here writes
/// other files (never tee, segment, hls, dash, image2).
pub const OUTPUT_MUXERS: &[(&str, &str)] =
    &[("mp4", "mp4"), ("m4v", "mp4"), ("mov", "mov"), ("mkv", "matroska"), ("webm", "webm"), ("avi", "avi")];

/// Limits on an untrusted input, checked against its headers when it is opened (before any
/// frame is decoded) and again while it is decoded.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaLimits {
    /// Widest video frame accepted, in pixels.
    pub max_width_px: u32,
    /// Tallest video frame accepted, in pixels.
    pub max_height_px: u32,
    /// Most video frames accepted.
    pub max_frames: u64,
    /// Longest input accepted (video and audio), in seconds.
    pub max_duration_secs: f64,
}

impl Default for MediaLimits {
    /// 8K UHD frames, a million frames, six hours.
    fn default() -> Self {
        Self { max_width_px: 7680, max_height_px: 4320, max_frames: 1_000_000, max_duration_secs: 6.0 * 3600.0 }
    }
}

impl MediaLimits {
    /// Every field that cannot work (a limit of zero refuses every input), as `field = value`.
    pub fn problems(&self) -> Vec<String> {
        let mut bad = Vec::new();
        if self.max_width_px == 0 {
            bad.push("max_width_px = 0 (must be at least 1)".to_string());
        }
        if self.max_height_px == 0 {
            bad.push("max_height_px = 0 (must be at least 1)".to_string());
        }
        if self.max_frames == 0 {
            bad.push("max_frames = 0 (must be at least 1)".to_string());
        }
        if !(self.max_duration_secs.is_finite() && self.max_duration_secs > 0.0) {
            bad.push(format!("max_duration_secs = {} (must be a positive number)", self.max_duration_secs));
        }
        bad
    }

    /// What the decoder is told to refuse to allocate beyond (`max_pixels`), so a frame far
    /// over the limit is never allocated. ffmpeg checks the width rounded up to its stride
    /// alignment (up to 64) and codecs pad heights to their block size (16), so this allows
    /// that much more; [`Self::check_size`] holds every frame to the exact limit.
    pub fn decoder_max_pixels(&self) -> i64 {
        (self.max_width_px as i64 + 128) * (self.max_height_px as i64 + 16)
    }

    /// Refuses a frame size over the limit.
    pub fn check_size(&self, path: &Path, width: u32, height: u32) -> Result<(), MediaError> {
        if width > self.max_width_px || height > self.max_height_px {
            return Err(MediaError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
                max_width_px: self.max_width_px,
                max_height_px: self.max_height_px,
            });
        }
        Ok(())
    }

    /// Refuses a frame count over the limit (`frames`: declared or estimated, or frames seen).
    pub fn check_frames(&self, path: &Path, frames: u64) -> Result<(), MediaError> {
        if frames > self.max_frames {
            return Err(MediaError::TooManyFrames { path: path.to_path_buf(), frames, max_frames: self.max_frames });
        }
        Ok(())
    }

    /// Refuses a duration over the limit.
    pub fn check_duration(&self, path: &Path, secs: f64) -> Result<(), MediaError> {
        if secs > self.max_duration_secs {
            return Err(MediaError::TooLong {
                path: path.to_path_buf(),
                secs,
                max_duration_secs: self.max_duration_secs,
            });
        }
        Ok(())
    }
}

/// How far an input file is trusted.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum InputPolicy {
    /// The user's own files on the command line: every demuxer and protocol ffmpeg has, so
    /// concat lists, playlists and image2 patterns are followed as the user asked; no limits.
    #[default]
    Trusted,
    /// Stored objects someone else wrote: [`ALLOWED_DEMUXERS`], the `file` protocol, and limits.
    Restricted(MediaLimits),
}

impl InputPolicy {
    pub fn limits(&self) -> Option<&MediaLimits> {
        match self {
            InputPolicy::Trusted => None,
            InputPolicy::Restricted(l) => Some(l),
        }
    }
}

/// ffmpeg takes paths as UTF-8 C strings (ffmpeg-next panics on anything else): refuse others.
pub(crate) fn ffmpeg_path(path: &Path) -> Result<&str, MediaError> {
    match path.to_str() {
        Some(s) if !s.contains('\0') => Ok(s),
        _ => Err(MediaError::Decode {
            path: path.to_path_buf(),
            reason: "ffmpeg cannot open a file name that is not UTF-8".into(),
        }),
    }
}

/// Opens an input container under `policy`. A restricted open that ffmpeg refuses because the
/// file is of a container that is not allowed says so ([`MediaError::ContainerNotAllowed`]).
pub(crate) fn open_input(path: &Path, policy: &InputPolicy) -> Result<ffmpeg::format::context::Input, MediaError> {
    super::video_in::init();
    let name = ffmpeg_path(path)?;
    let not_readable = |e: ffmpeg::Error| MediaError::Decode {
        path: path.to_path_buf(),
        reason: format!("not a readable video or image ({e})"),
    };
    let InputPolicy::Restricted(_) = policy else {
        return ffmpeg::format::input(&name).map_err(not_readable);
    };
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("format_whitelist", &ALLOWED_DEMUXERS.join(","));
    opts.set("protocol_whitelist", ALLOWED_PROTOCOLS);
    // mov data references to other files: off by default in ffmpeg; stated, not assumed.
    opts.set("enable_drefs", "0");
    // `file:` makes the name a plain file name whatever it contains (no `proto:` prefix).
    let input =
        ffmpeg::format::input_with_dictionary(&format!("file:{name}"), opts).map_err(|e| match probe_format(path) {
            Some(format) if !demuxer_allowed(&format) => {
                MediaError::ContainerNotAllowed { path: path.to_path_buf(), format }
            }
            _ => not_readable(e),
        })?;
    // The allowlist again, on what actually opened.
    let format = input.format().name().to_string();
    if !demuxer_allowed(&format) {
        return Err(MediaError::ContainerNotAllowed { path: path.to_path_buf(), format });
    }
    Ok(input)
}

/// Whether a demuxer (ffmpeg's comma-separated name list) is on [`ALLOWED_DEMUXERS`].
pub fn demuxer_allowed(name: &str) -> bool {
    name.split(',').any(|n| ALLOWED_DEMUXERS.contains(&n))
}

/// The container ffmpeg would take a file for, judged from its name and first 64 KiB only
/// (nothing else is opened): for naming what a restricted open refused.
pub fn probe_format(path: &Path) -> Option<String> {
    const HEAD: usize = 64 * 1024;
    let padding = ffmpeg::ffi::AVPROBE_PADDING_SIZE as usize;
    let mut buf = Vec::with_capacity(HEAD + padding);
    std::fs::File::open(path).ok()?.take(HEAD as u64).read_to_end(&mut buf).ok()?;
    let len = buf.len();
    buf.resize(len + padding, 0);
    let filename = CString::new(path.to_str()?).ok()?;
    let pd = ffmpeg::ffi::AVProbeData {
        filename: filename.as_ptr(),
        buf: buf.as_mut_ptr(),
        buf_size: len as i32,
        mime_type: std::ptr::null(),
    };
    // SAFETY: `pd` points at a buffer of `len` bytes plus the zero padding probing requires,
    // and at a NUL-terminated name, both alive for the call; the result is a static format.
    unsafe {
        let fmt = ffmpeg::ffi::av_probe_input_format(&pd, 1);
        if fmt.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr((*fmt).name).to_string_lossy().into_owned())
    }
}

/// The muxer for an output path, from its extension through [`OUTPUT_MUXERS`]; anything else is
/// refused before the disk is touched.
pub fn muxer_for(path: &Path) -> Result<&'static str, MediaError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    OUTPUT_MUXERS
        .iter()
        .find(|(e, _)| Some(*e) == ext.as_deref())
        .map(|(_, m)| *m)
        .ok_or_else(|| MediaError::OutputFormat { path: path.to_path_buf() })
}

/// Whether two paths name the same file (same device and inode, so hard links and symbolic
/// links count); false when either does not exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The first of `outputs` that is the same file as one of `inputs`, as (input, output).
pub fn outputs_overwriting_inputs<'a>(inputs: &'a [PathBuf], outputs: &'a [PathBuf]) -> Option<(&'a Path, &'a Path)> {
    outputs.iter().find_map(|o| inputs.iter().find(|i| same_file(i, o)).map(|i| (i.as_path(), o.as_path())))
}
