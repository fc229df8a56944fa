//! Video decoding with ffmpeg: frames as RGB8 with their own timestamps.

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use super::policy::{open_input, InputPolicy, MediaLimits};
use super::MediaError;
use crate::frame::{Frame, Rate, RgbFrame, SourceInfo};
use crate::telemetry::stages::{timed, Clock, Step};

/// Initialises ffmpeg once and keeps its own logging quiet: our errors say what went wrong.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Only fails when the libraries are broken; then every open reports it anyway.
        let _ = ffmpeg::init();
        // STYLESTREAM_FFMPEG_LOG=warning (or info, debug) shows ffmpeg's own messages.
        let level = match std::env::var("STYLESTREAM_FFMPEG_LOG").as_deref() {
            Ok("error") => ffmpeg::log::Level::Error,
            Ok("warning") => ffmpeg::log::Level::Warning,
            Ok("info") => ffmpeg::log::Level::Info,
            Ok("debug") => ffmpeg::log::Level::Debug,
            _ => ffmpeg::log::Level::Fatal,
        };
        ffmpeg::log::set_level(level);
    });
}

/// An swscale context. SAFETY: it is used by one thread at a time (it moves with the stage
/// that owns it) and holds no thread-local state.
pub(super) struct Scaler(pub(super) scaling::Context);
unsafe impl Send for Scaler {}

/// Sets the YUV <-> RGB matrix and ranges of a scaler from the stream's colour tags
/// (untagged: BT.601, as ffmpeg itself assumes).
pub(super) fn set_colorspace(s: &mut scaling::Context, space: ffmpeg::color::Space, yuv_full: bool, yuv_is_src: bool) {
    use ffmpeg::ffi;
    let cs = match space {
        ffmpeg::color::Space::BT709 => ffi::SWS_CS_ITU709,
        ffmpeg::color::Space::FCC => ffi::SWS_CS_FCC,
        ffmpeg::color::Space::SMPTE240M => ffi::SWS_CS_SMPTE240M,
        ffmpeg::color::Space::BT2020NCL | ffmpeg::color::Space::BT2020CL => ffi::SWS_CS_BT2020,
        _ => ffi::SWS_CS_DEFAULT,
    };
    // SAFETY: plain calls on a valid context; the coefficient table is static in swscale.
    unsafe {
        let coefs = ffi::sws_getCoefficients(cs);
        let (src_range, dst_range) = if yuv_is_src { (yuv_full as i32, 1) } else { (1, yuv_full as i32) };
        ffi::sws_setColorspaceDetails(s.as_mut_ptr(), coefs, src_range, coefs, dst_range, 0, 1 << 16, 1 << 16);
    }
}

/// Decoded frames to packed RGB8 rows, whatever their pixel format and colour tags (one
/// swscale context, made for the first frame).
#[derive(Default)]
pub(super) struct ToRgb {
    scaler: Option<Scaler>,
}

impl ToRgb {
    /// The frame as RGB8, 3 bytes a pixel, no row padding; `path` names the input in errors.
    pub(super) fn convert(&mut self, f: &ffmpeg::frame::Video, path: &Path) -> Result<Vec<u8>, MediaError> {
        let (w, h) = (f.width(), f.height());
        if self.scaler.is_none() {
            let mut s =
                scaling::Context::get(f.format(), w, h, Pixel::RGB24, w, h, scaling::Flags::BILINEAR).map_err(|e| {
                    MediaError::Decode {
                        path: path.to_path_buf(),
                        reason: format!("pixel format {:?}: {e}", f.format()),
                    }
                })?;
            set_colorspace(&mut s, f.color_space(), f.color_range() == ffmpeg::color::Range::JPEG, true);
            self.scaler = Some(Scaler(s));
        }
        // Straight into the frame's own packed rows: no intermediate frame, no copy.
        let row = w as usize * 3;
        let mut data = vec![0u8; row * h as usize];
        let Some(s) = self.scaler.as_mut() else { return Ok(data) };
        // SAFETY: the source planes are the decoded frame's (valid for its height and
        // strides); the destination is one packed RGB plane of `row * h` bytes, which is what
        // a context made for `w x h` RGB24 output writes.
        let done = unsafe {
            let src = &*f.as_ptr();
            let dst = [data.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut()];
            let stride = [row as i32, 0, 0, 0];
            ffmpeg::ffi::sws_scale(
                s.0.as_mut_ptr(),
                src.data.as_ptr() as *const *const u8,
                src.linesize.as_ptr(),
                0,
                h as i32,
                dst.as_ptr(),
                stride.as_ptr(),
            )
        };
        if done != h as i32 {
            return Err(MediaError::Decode {
                path: path.to_path_buf(),
                reason: format!("converting to RGB gave {done} of {h} rows"),
            });
        }
        Ok(data)
    }
}

pub(super) fn rate(r: ffmpeg::Rational) -> Rate {
    Rate::new(r.numerator(), r.denominator())
}

/// Reads one video stream of a file, frame by frame.
pub struct VideoDecoder {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream: usize,
    info: SourceInfo,
    rgb: ToRgb,
    next: u64,
    eof_sent: bool,
    last_pts: Option<i64>,
    first_pts: Option<i64>,
    /// Limits of a restricted open, enforced again on every frame decoded.
    limits: Option<MediaLimits>,
    /// Where decode and conversion time is counted, when measured.
    clock: Clock,
}

impl VideoDecoder {
    /// Opens a file and its best video stream, as ffmpeg would: every demuxer and protocol, so
    /// concat lists, playlists and image2 patterns are followed (the user's own files).
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        Self::open_with(path, &InputPolicy::Trusted)
    }

    /// Opens a file someone else wrote (a stored object): only self-contained containers
    /// ([`super::policy::ALLOWED_DEMUXERS`]) through the `file` protocol, and `limits` checked
    /// against the headers now, before anything is decoded, and against every frame decoded.
    pub fn open_restricted(path: &Path, limits: &MediaLimits) -> Result<Self, MediaError> {
        Self::open_with(path, &InputPolicy::Restricted(limits.clone()))
    }

    /// Opens a file under `policy`.
    pub fn open_with(path: &Path, policy: &InputPolicy) -> Result<Self, MediaError> {
        init();
        if !path.exists() {
            return Err(MediaError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let limits = policy.limits().cloned();
        let input = open_input(path, policy)?;
        let stream =
            input.streams().best(Type::Video).ok_or_else(|| MediaError::NoVideo { path: path.to_path_buf() })?;
        let index = stream.index();
        let bad = |e: ffmpeg::Error| MediaError::Decode { path: path.to_path_buf(), reason: e.to_string() };
        if let Some(l) = &limits {
            // Before the decoder exists: opening one for a size over its `max_pixels` drops the size.
            // SAFETY: reading two plain fields of the stream's valid codec parameters.
            let (w, h) = unsafe { ((*stream.parameters().as_ptr()).width, (*stream.parameters().as_ptr()).height) };
            l.check_size(path, w.max(0) as u32, h.max(0) as u32)?;
        }
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(bad)?;
        ctx.set_threading(ffmpeg::threading::Config {
            kind: ffmpeg::threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        if let Some(l) = &limits {
            // The decoder refuses to allocate a bigger frame, whatever the headers said.
            // SAFETY: setting a plain field of a context that is not opened yet.
            unsafe { (*ctx.as_mut_ptr()).max_pixels = l.decoder_max_pixels() };
        }
        let decoder = ctx.decoder().video().map_err(bad)?;
        let time_base = rate(stream.time_base());
        let mut frame_rate = rate(stream.avg_frame_rate());
        if frame_rate.num <= 0 || frame_rate.den <= 0 {
            frame_rate = rate(stream.rate());
        }
        let declared = stream.frames();
        let (frames, frames_exact) = if declared > 0 {
            (Some(declared as u64), true)
        } else {
            let secs = if stream.duration() > 0 {
                stream.duration() as f64 * time_base.as_f64()
            } else {
                input.duration() as f64 / ffmpeg::ffi::AV_TIME_BASE as f64
            };
            let est = secs * frame_rate.as_f64();
            ((est.is_finite() && est >= 1.0).then(|| est.round() as u64), false)
        };
        if decoder.width() == 0 || decoder.height() == 0 {
            return Err(MediaError::Decode {
                path: path.to_path_buf(),
                reason: "the video stream has no frame size".into(),
            });
        }
        if let Some(l) = &limits {
            check_headers(path, &input, index, decoder.width(), decoder.height(), frames, l)?;
        }
        let info = SourceInfo {
            width: decoder.width(),
            height: decoder.height(),
            time_base,
            frame_rate,
            frames,
            frames_exact,
        };
        Ok(Self {
            path: path.to_path_buf(),
            input,
            decoder,
            stream: index,
            info,
            rgb: ToRgb::default(),
            next: 0,
            eof_sent: false,
            last_pts: None,
            first_pts: None,
            limits,
            clock: None,
        })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Counts decode and conversion time into `clock`.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The next frame in presentation order, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        let started = std::time::Instant::now();
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut decoded) {
                Ok(()) => {
                    if let Some(c) = &self.clock {
                        c.add(Step::Decode, started.elapsed());
                    }
                    let clock = self.clock.clone();
                    return timed(&clock, Step::ConvertIn, || self.convert(&decoded)).map(Some);
                }
                Err(ffmpeg::Error::Eof) => return self.end(),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => return Err(self.decode_error(e)),
            }
            if self.eof_sent {
                return self.end();
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream => {
                    self.decoder.send_packet(&packet).map_err(|e| self.decode_error(e))?;
                }
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    self.decoder.send_eof().map_err(|e| self.decode_error(e))?;
                    self.eof_sent = true;
                }
                Err(e) => return Err(self.decode_error(e)),
            }
        }
    }

    fn end(&self) -> Result<Option<Frame>, MediaError> {
        if self.next == 0 {
            return Err(MediaError::NoFrames { path: self.path.clone() });
        }
        if let (Some(declared), true) = (self.info.frames, self.info.frames_exact) {
            if self.next < declared {
                return Err(MediaError::Truncated { path: self.path.clone(), declared, decoded: self.next });
            }
        }
        Ok(None)
    }

    fn decode_error(&self, e: ffmpeg::Error) -> MediaError {
        // A decoder refusing a frame over `max_pixels` fails with a plain EINVAL; its context
        // holds the size it was asked for.
        if let Some(l) = &self.limits {
            if let Err(over) = l.check_size(&self.path, self.decoder.width(), self.decoder.height()) {
                return over;
            }
        }
        MediaError::Decode { path: self.path.clone(), reason: format!("frame {}: {e}", self.next) }
    }

    fn convert(&mut self, f: &ffmpeg::frame::Video) -> Result<Frame, MediaError> {
        let (w, h) = (self.info.width, self.info.height);
        if let Some(l) = &self.limits {
            l.check_size(&self.path, f.width(), f.height())?;
            l.check_frames(&self.path, self.next + 1)?;
        }
        if f.width() != w || f.height() != h {
            return Err(MediaError::Decode {
                path: self.path.clone(),
                reason: format!("frame {} is {}x{}, the stream started at {w}x{h}", self.next, f.width(), f.height()),
            });
        }
        let data = self.rgb.convert(f, &self.path)?;
        // Best-effort timestamp; a stream without any gets one frame duration per frame.
        let step = (self.info.frame_rate.den as i64 * self.info.time_base.den as i64)
            .checked_div(self.info.frame_rate.num as i64 * self.info.time_base.num as i64)
            .unwrap_or(1)
            .max(1);
        let pts = f.timestamp().or(f.pts()).unwrap_or_else(|| self.last_pts.map_or(0, |p| p + step));
        let pts = match self.last_pts {
            Some(p) if pts <= p => p + 1,
            _ => pts,
        };
        self.last_pts = Some(pts);
        let first = *self.first_pts.get_or_insert(pts);
        if let Some(l) = &self.limits {
            l.check_duration(&self.path, (pts - first) as f64 * self.info.time_base.as_f64())?;
        }
        let duration = f.packet().duration;
        let frame =
            Frame { index: self.next, pts, duration, image: RgbFrame::new(w, h, data), timing: Default::default() };
        self.next += 1;
        Ok(frame)
    }
}

/// Refuses an input whose headers declare more than `limits` allow: the video stream's frame
/// size and frame count (declared or estimated), and the container's and every stream's duration.
fn check_headers(
    path: &Path,
    input: &ffmpeg::format::context::Input,
    video: usize,
    width: u32,
    height: u32,
    frames: Option<u64>,
    limits: &MediaLimits,
) -> Result<(), MediaError> {
    limits.check_size(path, width, height)?;
    if let Some(n) = frames {
        limits.check_frames(path, n)?;
    }
    if input.duration() > 0 {
        limits.check_duration(path, input.duration() as f64 / ffmpeg::ffi::AV_TIME_BASE as f64)?;
    }
    for s in input.streams() {
        if s.duration() > 0 {
            limits.check_duration(path, s.duration() as f64 * f64::from(s.time_base()))?;
        }
        if s.index() == video && s.frames() > 0 {
            limits.check_frames(path, s.frames() as u64)?;
        }
    }
    Ok(())
}
