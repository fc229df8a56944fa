//! A segment's run decoded: the frames of a pts range, as RGB8, context decoded but not emitted.

use std::ops::Range;
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;

use super::*;

/// The frames of a run whose pts fall in `[start, end)`, decoded and as RGB8, numbered from 0
/// in presentation order. Frames outside the range (context another segment emits) are
/// decoded, since later frames may need them, but never passed on.
pub struct RunDecoder {
    blob: PathBuf,
    reader: RunReader,
    decoder: ffmpeg::decoder::Video,
    rgb: ToRgb,
    info: SourceInfo,
    range: Range<i64>,
    next: u64,
    eof_sent: bool,
    limits: Option<MediaLimits>,
}

// SAFETY: the decoder and the swscale context are owned by this value and used by one thread
// at a time (the engine's decode thread).
unsafe impl Send for RunDecoder {}

impl RunDecoder {
    /// Opens the run `blob` with `index`, to emit the `frames` frames with pts in `range`;
    /// `limits` are checked against the stream and every frame.
    pub fn open(
        blob: &Path,
        index: &RunIndex,
        range: Range<i64>,
        frames: u64,
        limits: Option<&MediaLimits>,
    ) -> Result<Self, MediaError> {
        init();
        let bad = |reason: String| MediaError::Decode { path: blob.to_path_buf(), reason };
        let params = &index.params;
        if let Some(l) = limits {
            l.check_size(blob, params.width, params.height)?;
        }
        let name = std::ffi::CString::new(params.codec.as_str()).map_err(|e| bad(e.to_string()))?;
        // SAFETY: looking a descriptor up by a NUL-terminated name; it is static in libavcodec.
        let desc = unsafe { ffmpeg::ffi::avcodec_descriptor_get_by_name(name.as_ptr()) };
        if desc.is_null() {
            return Err(bad(format!("unknown codec {:?}", params.codec)));
        }
        // SAFETY: `desc` is a valid static descriptor.
        let codec = ffmpeg::decoder::find(unsafe { (*desc).id }.into())
            .ok_or_else(|| bad(format!("no decoder for {}", params.codec)))?;
        let mut ctx = ffmpeg::codec::context::Context::new_with_codec(codec);
        let extradata = unhex(&params.extradata).ok_or_else(|| bad("the run's extradata is not hex".into()))?;
        // SAFETY: setting plain fields of a context that is not opened yet; the extradata is
        // allocated with libavutil (padded, as decoders require) and owned by the context.
        unsafe {
            let raw = ctx.as_mut_ptr();
            (*raw).width = params.width as i32;
            (*raw).height = params.height as i32;
            (*raw).pkt_timebase = ffmpeg::ffi::AVRational { num: params.time_base.0, den: params.time_base.1 };
            if !extradata.is_empty() {
                let pad = ffmpeg::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
                let buf = ffmpeg::ffi::av_mallocz(extradata.len() + pad) as *mut u8;
                if buf.is_null() {
                    return Err(bad("out of memory".into()));
                }
                std::ptr::copy_nonoverlapping(extradata.as_ptr(), buf, extradata.len());
                (*raw).extradata = buf;
                (*raw).extradata_size = extradata.len() as i32;
            }
            if let Some(l) = limits {
                (*raw).max_pixels = l.decoder_max_pixels();
            }
        }
        ctx.set_threading(ffmpeg::threading::Config {
            kind: ffmpeg::threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let decoder = ctx.decoder().video().map_err(|e| bad(e.to_string()))?;
        let reader = RunReader::open(blob, index)?;
        Ok(Self {
            blob: blob.to_path_buf(),
            reader,
            decoder,
            rgb: ToRgb::default(),
            info: params.info(Some(frames)),
            range,
            next: 0,
            eof_sent: false,
            limits: limits.cloned(),
        })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// The next frame of the range, `None` once every frame of the run is decoded; fewer frames
    /// than announced is an error (the run is damaged).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        let bad = |path: &Path, reason: String| MediaError::Decode { path: path.to_path_buf(), reason };
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut decoded) {
                Ok(()) => {
                    let pts = decoded
                        .timestamp()
                        .or(decoded.pts())
                        .ok_or_else(|| bad(&self.blob, "a frame without a timestamp".into()))?;
                    if !self.range.contains(&pts) {
                        continue;
                    }
                    if let Some(l) = &self.limits {
                        l.check_size(&self.blob, decoded.width(), decoded.height())?;
                    }
                    if (decoded.width(), decoded.height()) != (self.info.width, self.info.height) {
                        let reason = format!(
                            "a frame of {}x{} in a {}x{} stream",
                            decoded.width(),
                            decoded.height(),
                            self.info.width,
                            self.info.height
                        );
                        return Err(bad(&self.blob, reason));
                    }
                    let data = self.rgb.convert(&decoded, &self.blob)?;
                    let image = RgbFrame::new(self.info.width, self.info.height, data);
                    let frame = Frame {
                        index: self.next,
                        pts,
                        duration: decoded.packet().duration,
                        image,
                        timing: Default::default(),
                    };
                    self.next += 1;
                    return Ok(Some(frame));
                }
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => return Err(bad(&self.blob, format!("frame {}: {e}", self.next))),
            }
            if self.eof_sent {
                break;
            }
            match self.reader.next()? {
                Some((_, packet)) => {
                    // A packet the decoder refuses belongs to context it cannot decode (the
                    // leading pictures of an open GOP): its frames are not ours to emit.
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        tracing::debug!(error = %e, "a context packet could not be decoded");
                    }
                }
                None => {
                    self.decoder.send_eof().map_err(|e| bad(&self.blob, e.to_string()))?;
                    self.eof_sent = true;
                }
            }
        }
        match self.info.frames {
            Some(n) if self.next != n => {
                Err(MediaError::Truncated { path: self.blob.clone(), declared: n, decoded: self.next })
            }
            _ => Ok(None),
        }
    }
}
