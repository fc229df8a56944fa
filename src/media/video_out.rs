//! Video encoding with ffmpeg: styled RGB8 frames with their source timestamps, the source's
//! audio streams copied packet for packet, written to a temporary file beside the output and
//! renamed when complete.
//!
//! Pixel formats: the encoder gets yuv420p when it supports it and the frame size is even;
//! odd sizes (4:2:0 needs even ones) get yuv444p, and encoders without either get their first
//! supported format. Colour tags (matrix, range) follow the source; untagged means BT.601.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use super::audio::AudioTranscoder;
use super::policy::{ffmpeg_path, muxer_for, open_input, InputPolicy, MediaLimits, ALLOWED_PROTOCOLS};
use super::video_in::{init, set_colorspace, Scaler};
use super::MediaError;
use crate::frame::{Frame, Rate, SourceInfo};
use crate::telemetry::stages::{timed, Clock, Step};

/// How to encode the video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeSettings {
    /// ffmpeg encoder name (libx264, libx265, libvpx-vp9, mpeg4, ...).
    pub codec: String,
    /// Constant rate factor, for encoders that have one (lower is better; x264: 0-51).
    pub crf: u32,
    /// Speed preset for x264/x265 (ultrafast ... veryslow).
    pub preset: String,
}

impl EncodeSettings {
    /// What a manifest records of these settings (a request with other settings is another
    /// job): codec, crf and preset.
    pub fn manifest_settings(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::from([
            ("codec".to_string(), self.codec.clone()),
            ("crf".to_string(), self.crf.to_string()),
            ("preset".to_string(), self.preset.clone()),
        ])
    }
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self { codec: "libx264".into(), crf: 18, preset: "medium".into() }
    }
}

/// Where the source's audio, rotation and colour tags come from (a video file), if anywhere,
/// and how far that file is trusted (the policy its decoder was opened with).
#[derive(Debug, Clone, Default)]
pub struct Companion {
    pub path: Option<PathBuf>,
    pub policy: InputPolicy,
}

/// How one source audio stream reaches the output.
enum AudioRoute {
    /// Packet for packet.
    Copy,
    /// Through a decoder and the container's default encoder (it cannot hold the codec).
    Transcode(Box<AudioTranscoder>),
}

/// Copies (or, where it must, re-encodes) the audio streams of the source file, interleaved
/// with the video by timestamp.
struct AudioCopy {
    input: ffmpeg::format::context::Input,
    /// Input stream index -> (output stream index, input time base, route).
    map: HashMap<usize, (usize, ffmpeg::Rational, AudioRoute)>,
    pending: Option<ffmpeg::Packet>,
    done: bool,
    flushed: bool,
    /// The source file and its limits (restricted inputs): audio past the duration limit is refused.
    source: PathBuf,
    limits: Option<MediaLimits>,
}

/// The colour tags of the video written: the YUV matrix and whether its range is full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourTags {
    pub space: ffmpeg::color::Space,
    pub full_range: bool,
}

impl ColourTags {
    /// The tags of `stream` (untagged: BT.601, as ffmpeg itself assumes).
    pub fn of(stream: Option<&ffmpeg::format::stream::Stream>) -> Self {
        let (space, full_range) = match stream {
            Some(s) => {
                let params = s.parameters();
                // SAFETY: reading two plain fields of valid codec parameters.
                let (cs, cr) = unsafe { ((*params.as_ptr()).color_space, (*params.as_ptr()).color_range) };
                (ffmpeg::color::Space::from(cs), ffmpeg::color::Range::from(cr) == ffmpeg::color::Range::JPEG)
            }
            None => (ffmpeg::color::Space::Unspecified, false),
        };
        Self { space, full_range }
    }

    /// The matrix to tag and convert with: the source's, BT.601 when it has none.
    fn matrix(self) -> ffmpeg::color::Space {
        if self.space == ffmpeg::color::Space::Unspecified {
            ffmpeg::color::Space::BT470BG
        } else {
            self.space
        }
    }
}

/// Styled RGB8 frames to encoded packets: the RGB -> YUV conversion and the video encoder.
/// Packets keep the frames' timestamps in the source's time base (`time_base`), with the
/// frame durations the encoder leaves out filled in.
pub struct FrameEncoder {
    encoder: ffmpeg::encoder::Video,
    scaler: Scaler,
    frame: ffmpeg::frame::Video,
    enc_tb: ffmpeg::Rational,
    /// Frame durations by pts: encoders like libx264 leave packet durations at 0.
    durations: HashMap<i64, i64>,
    /// Names the output in errors.
    path: PathBuf,
    width: u32,
    height: u32,
    /// Where conversion and encoding time is counted, when measured.
    clock: Clock,
}

impl FrameEncoder {
    /// An encoder for frames of `info`'s size and time base with `settings`; `global_header`:
    /// the codec headers go out of band (extradata), as mp4/mov/mkv want. `path` names the
    /// output in errors.
    pub fn create(
        path: &Path,
        info: &SourceInfo,
        settings: &EncodeSettings,
        tags: ColourTags,
        global_header: bool,
    ) -> Result<Self, MediaError> {
        init();
        let codec =
            ffmpeg::encoder::find_by_name(&settings.codec).filter(|c| c.medium() == Type::Video).ok_or_else(|| {
                out_err(path, format!("unknown video encoder `{}` (see `ffmpeg -encoders`)", settings.codec))
            })?;
        let (w, h) = (info.width, info.height);
        let formats: Vec<Pixel> = codec.video().ok().and_then(|v| v.formats()).map(|f| f.collect()).unwrap_or_default();
        let even = w % 2 == 0 && h % 2 == 0;
        let pix = if formats.contains(&Pixel::YUV420P) && even {
            Pixel::YUV420P
        } else if formats.contains(&Pixel::YUV444P) {
            Pixel::YUV444P
        } else if let Some(&f) = formats.first() {
            f
        } else {
            Pixel::YUV420P
        };
        let enc_tb = ffmpeg::Rational::new(info.time_base.num, info.time_base.den);
        let mut ctx =
            ffmpeg::codec::context::Context::new_with_codec(codec).encoder().video().map_err(|e| out_err(path, e))?;
        ctx.set_width(w);
        ctx.set_height(h);
        ctx.set_format(pix);
        ctx.set_time_base(enc_tb);
        if info.frame_rate.num > 0 {
            ctx.set_frame_rate(Some(ffmpeg::Rational::new(info.frame_rate.num, info.frame_rate.den)));
        }
        ctx.set_colorspace(tags.matrix());
        ctx.set_color_range(if tags.full_range { ffmpeg::color::Range::JPEG } else { ffmpeg::color::Range::MPEG });
        if global_header {
            ctx.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        // As many encoder threads as the encoder picks for this machine (libx264: 1.5 per core),
        // as the ffmpeg command line does; libavcodec's default is one.
        ctx.set_threading(ffmpeg::threading::Config {
            kind: ffmpeg::threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let mut opts = ffmpeg::Dictionary::new();
        let crf = settings.crf.to_string();
        match settings.codec.as_str() {
            "libx264" | "libx265" => {
                opts.set("crf", &crf);
                opts.set("preset", &settings.preset);
            }
            "libvpx-vp9" | "libvpx" | "libaom-av1" | "libsvtav1" => {
                opts.set("crf", &crf);
                opts.set("b", "0");
            }
            _ => ctx.set_global_quality((settings.crf as i32).max(1) * ffmpeg::ffi::FF_QP2LAMBDA),
        }
        let encoder =
            ctx.open_with(opts).map_err(|e| out_err(path, format!("cannot open encoder {}: {e}", settings.codec)))?;
        let mut scaler = scaling::Context::get(Pixel::RGB24, w, h, pix, w, h, scaling::Flags::BICUBIC)
            .map_err(|e| out_err(path, e))?;
        set_colorspace(&mut scaler, tags.matrix(), tags.full_range, false);
        Ok(Self {
            encoder,
            scaler: Scaler(scaler),
            frame: ffmpeg::frame::Video::new(pix, w, h),
            enc_tb,
            durations: HashMap::new(),
            path: path.to_path_buf(),
            width: w,
            height: h,
            clock: None,
        })
    }

    /// Counts conversion and encoding time into `clock`.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The time base of the packets' timestamps (the source's).
    pub fn time_base(&self) -> ffmpeg::Rational {
        self.enc_tb
    }

    /// The codec parameters of the stream the packets make (extradata included).
    pub fn parameters(&self) -> ffmpeg::codec::Parameters {
        ffmpeg::codec::Parameters::from(&*self.encoder)
    }

    /// Encodes one frame (frames must come in presentation order); returns the packets ready.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<ffmpeg::Packet>, MediaError> {
        let img = &frame.image;
        if (img.width, img.height) != (self.width, self.height) {
            let reason = format!(
                "frame {} is {}x{}, expected {}x{}",
                frame.index, img.width, img.height, self.width, self.height
            );
            return Err(out_err(&self.path, reason));
        }
        let clock = self.clock.clone();
        timed(&clock, Step::ConvertOut, || -> Result<(), MediaError> {
            // Straight from the frame's packed rows into the encoder's planes: no copy between.
            let row = img.width as usize * 3;
            if img.data.len() < row * img.height as usize {
                return Err(out_err(
                    &self.path,
                    format!("frame {} holds {} bytes, not {}", frame.index, img.data.len(), row * img.height as usize),
                ));
            }
            // SAFETY: the source is one packed RGB plane of `row * height` bytes (checked
            // above), which a context made for this size of RGB24 input reads; the destination
            // planes are this encoder's own frame, allocated for the context's output.
            let done = unsafe {
                let src = [img.data.as_ptr(), std::ptr::null(), std::ptr::null(), std::ptr::null()];
                let stride = [row as i32, 0, 0, 0];
                let dst = &mut *self.frame.as_mut_ptr();
                ffmpeg::ffi::sws_scale(
                    self.scaler.0.as_mut_ptr(),
                    src.as_ptr(),
                    stride.as_ptr(),
                    0,
                    img.height as i32,
                    dst.data.as_ptr(),
                    dst.linesize.as_ptr(),
                )
            };
            if done != img.height as i32 {
                return Err(out_err(
                    &self.path,
                    format!("converting frame {} gave {done} of {} rows", frame.index, img.height),
                ));
            }
            Ok(())
        })?;
        self.frame.set_pts(Some(frame.pts));
        self.durations.insert(frame.pts, frame.duration);
        timed(&clock, Step::Encode, || {
            self.encoder
                .send_frame(&self.frame)
                .map_err(|e| out_err(&self.path, format!("encoding frame {}: {e}", frame.index)))?;
            Ok(self.drain())
        })
    }

    /// Flushes the encoder: the last packets.
    pub fn flush(&mut self) -> Result<Vec<ffmpeg::Packet>, MediaError> {
        let clock = self.clock.clone();
        timed(&clock, Step::Encode, || {
            self.encoder.send_eof().map_err(|e| out_err(&self.path, e))?;
            Ok(self.drain())
        })
    }

    fn drain(&mut self) -> Vec<ffmpeg::Packet> {
        let mut out = Vec::new();
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            if let Some(d) = packet.pts().and_then(|p| self.durations.remove(&p)) {
                if packet.duration() == 0 {
                    packet.set_duration(d);
                }
            }
            out.push(std::mem::replace(&mut packet, ffmpeg::Packet::empty()));
        }
        out
    }
}

/// A container being written to a temporary file beside its final name: one video stream of
/// packets given to it, and the companion file's audio streams copied (or, where the container
/// cannot hold them, re-encoded), interleaved by timestamp. Renamed into place by `finish`.
pub struct Muxer {
    output: ffmpeg::format::context::Output,
    /// The time base of the video packets given to `write_video`.
    video_tb: ffmpeg::Rational,
    ost_tb: ffmpeg::Rational,
    audio: Option<AudioCopy>,
    ost_time_bases: Vec<ffmpeg::Rational>,
    tmp: tempfile::TempPath,
    path: PathBuf,
    /// Where muxing time is counted, when measured.
    clock: Clock,
}

/// A muxer whose streams are being declared.
pub struct MuxerSetup {
    output: ffmpeg::format::context::Output,
    ext: String,
    tmp: tempfile::TempPath,
    path: PathBuf,
    /// The companion file, opened (its audio, rotation and colour tags).
    source: Option<ffmpeg::format::context::Input>,
    companion: Companion,
}

impl MuxerSetup {
    /// Opens the temporary output of `path` (the muxer from a fixed map of extensions, never
    /// guessed by ffmpeg from the name; checked before the disk is touched) and the companion.
    pub fn open(path: &Path, companion: &Companion) -> Result<Self, MediaError> {
        init();
        let muxer = muxer_for(path)?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        ffmpeg_path(path).map_err(|_| out_err(path, "ffmpeg cannot write a file name that is not UTF-8"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = super::output_builder(super::FILE_MODE)
            .prefix(&format!(".{name}."))
            .suffix(&format!(".partial.{ext}"))
            .tempfile_in(dir)
            .map_err(|e| out_err(path, super::plain_io(e)))?
            .into_temp_path();
        let mut only_files = ffmpeg::Dictionary::new();
        only_files.set("protocol_whitelist", ALLOWED_PROTOCOLS);
        let tmp_name = format!("file:{}", ffmpeg_path(&tmp)?);
        let output = ffmpeg::format::output_as_with(&tmp_name, muxer, only_files).map_err(|e| out_err(path, e))?;
        let source = match &companion.path {
            Some(p) => Some(open_input(p, &companion.policy)?),
            None => None,
        };
        Ok(Self { output, ext, tmp, path: path.to_path_buf(), source, companion: companion.clone() })
    }

    /// Whether the container wants codec headers out of band (mp4, mov, mkv).
    pub fn global_header(&self) -> bool {
        self.output.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER)
    }

    /// The colour tags of the companion's video stream.
    pub fn colour_tags(&self) -> ColourTags {
        ColourTags::of(self.source.as_ref().and_then(|s| s.streams().best(Type::Video)).as_ref())
    }

    /// Declares the video stream (its parameters, packets in `time_base`, `frame_rate`), then
    /// the companion's audio streams; writes the header.
    pub fn start(
        mut self,
        params: &ffmpeg::codec::Parameters,
        time_base: ffmpeg::Rational,
        frame_rate: Rate,
    ) -> Result<Muxer, MediaError> {
        let path = self.path.clone();
        let global_header = self.global_header();
        let mut ost =
            self.output.add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None)).map_err(|e| out_err(&path, e))?;
        ost.set_parameters(params.clone());
        // SAFETY: clearing the codec tag of the new stream's own parameters: the muxer picks one.
        unsafe {
            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
        }
        ost.set_time_base(time_base);
        if frame_rate.num > 0 {
            ost.set_avg_frame_rate(ffmpeg::Rational::new(frame_rate.num, frame_rate.den));
        }
        if let Some(sv) = self.source.as_ref().and_then(|s| s.streams().best(Type::Video)) {
            ost.set_metadata(sv.metadata().to_owned());
            copy_side_data(&sv, &mut ost);
        }

        // Audio: every stream the container can hold is copied as it is.
        let mut audio = None;
        if let Some(src) = self.source.take() {
            let mut map = HashMap::new();
            // SAFETY: the output format is static in libavformat.
            let format_ptr = unsafe { self.output.format().as_ptr() };
            for s in src.streams() {
                if s.parameters().medium() != Type::Audio {
                    continue;
                }
                let id = s.parameters().id();
                // SAFETY: querying a valid output format with a codec id.
                let holds = unsafe {
                    ffmpeg::ffi::avformat_query_codec(format_ptr, id.into(), ffmpeg::ffi::FF_COMPLIANCE_NORMAL)
                } == 1;
                let route = if holds {
                    AudioRoute::Copy
                } else {
                    // SAFETY: the parameters and the output format are valid for this call.
                    let t = unsafe { AudioTranscoder::new(s.parameters().as_ptr(), format_ptr, global_header) }
                        .map_err(|e| out_err(&path, format!("audio stream {}: {e}", s.index())))?;
                    tracing::warn!(
                        "audio stream {} ({id:?}) cannot be stored in .{}: re-encoding it with {}",
                        s.index(),
                        self.ext,
                        t.encoder_name
                    );
                    AudioRoute::Transcode(Box::new(t))
                };
                let mut ost = self
                    .output
                    .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                    .map_err(|e| out_err(&path, e))?;
                match &route {
                    AudioRoute::Copy => {
                        ost.set_parameters(s.parameters());
                        // SAFETY: clearing the source container's codec tag so the muxer picks its own.
                        unsafe {
                            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
                        }
                    }
                    AudioRoute::Transcode(t) => {
                        // SAFETY: the new stream's parameters are valid and owned by the output.
                        unsafe { t.fill_parameters(ost.parameters().as_mut_ptr()) };
                        ost.set_time_base(t.time_base());
                    }
                }
                ost.set_metadata(s.metadata().to_owned());
                map.insert(s.index(), (ost.index(), s.time_base(), route));
            }
            if !map.is_empty() {
                audio = Some(AudioCopy {
                    input: src,
                    map,
                    pending: None,
                    done: false,
                    flushed: false,
                    source: self.companion.path.clone().unwrap_or_default(),
                    limits: self.companion.policy.limits().cloned(),
                });
            }
        }
        self.output.write_header().map_err(|e| out_err(&path, format!("cannot write the header: {e}")))?;
        // The muxer may have changed the time bases: read them back.
        let ost_time_bases: Vec<ffmpeg::Rational> = self.output.streams().map(|s| s.time_base()).collect();
        let ost_tb = ost_time_bases[0];
        Ok(Muxer {
            output: self.output,
            video_tb: time_base,
            ost_tb,
            audio,
            ost_time_bases,
            tmp: self.tmp,
            path,
            clock: None,
        })
    }
}

impl Muxer {
    /// Writes one video packet (timestamps in the time base given to `start`), and before it
    /// the audio up to its time.
    pub fn write_video(&mut self, packet: ffmpeg::Packet) -> Result<(), MediaError> {
        let clock = self.clock.clone();
        timed(&clock, Step::Mux, || self.write_video_now(packet))
    }

    fn write_video_now(&mut self, mut packet: ffmpeg::Packet) -> Result<(), MediaError> {
        packet.set_stream(0);
        packet.rescale_ts(self.video_tb, self.ost_tb);
        let until = packet.dts().or(packet.pts());
        self.write_audio_until(until.map(|t| (t, self.ost_tb)))?;
        packet.write_interleaved(&mut self.output).map_err(|e| out_err(&self.path, e))
    }

    /// Writes audio packets up to time `until` (all remaining ones for `None`).
    fn write_audio_until(&mut self, until: Option<(i64, ffmpeg::Rational)>) -> Result<(), MediaError> {
        let Some(a) = self.audio.as_mut() else { return Ok(()) };
        let path = &self.path;
        let output = &mut self.output;
        let ost_tbs = &self.ost_time_bases;
        loop {
            if a.pending.is_none() && !a.done {
                let mut p = ffmpeg::Packet::empty();
                match p.read(&mut a.input) {
                    Ok(()) => {
                        if a.map.contains_key(&p.stream()) {
                            a.pending = Some(p);
                        }
                        continue;
                    }
                    Err(ffmpeg::Error::Eof) => a.done = true,
                    Err(e) => return Err(out_err(path, format!("reading audio: {e}"))),
                }
            }
            let Some(p) = a.pending.take() else { break };
            let Some((out_index, in_tb, route)) = a.map.get_mut(&p.stream()) else { continue };
            if let (Some(l), Some(ts)) = (&a.limits, p.pts().or(p.dts())) {
                l.check_duration(&a.source, ts as f64 * f64::from(*in_tb))?;
            }
            if let (Some((t, tb)), Some(ts)) = (until, p.dts().or(p.pts())) {
                // SAFETY: av_compare_ts is a pure function of its arguments.
                if unsafe { ffmpeg::ffi::av_compare_ts(ts, (*in_tb).into(), t, tb.into()) } > 0 {
                    a.pending = Some(p);
                    return Ok(());
                }
            }
            let out_tb = ost_tbs[*out_index];
            match route {
                AudioRoute::Copy => {
                    let mut p = p;
                    p.rescale_ts(*in_tb, out_tb);
                    p.set_position(-1);
                    p.set_stream(*out_index);
                    p.write_interleaved(output).map_err(|e| out_err(path, e))?;
                }
                AudioRoute::Transcode(t) => {
                    let tb = t.time_base();
                    for mut q in t.push(Some(&p)).map_err(|e| out_err(path, e))? {
                        q.rescale_ts(tb, out_tb);
                        q.set_stream(*out_index);
                        q.write_interleaved(output).map_err(|e| out_err(path, e))?;
                    }
                }
            }
        }
        // Everything read: flush the re-encoders once.
        if until.is_none() && a.done && !a.flushed {
            a.flushed = true;
            for (out_index, _, route) in a.map.values_mut() {
                if let AudioRoute::Transcode(t) = route {
                    let (tb, out_tb) = (t.time_base(), ost_tbs[*out_index]);
                    for mut q in t.push(None).map_err(|e| out_err(path, e))? {
                        q.rescale_ts(tb, out_tb);
                        q.set_stream(*out_index);
                        q.write_interleaved(output).map_err(|e| out_err(path, e))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the remaining audio and the trailer, and renames the file into place.
    pub fn finish(mut self) -> Result<(), MediaError> {
        let clock = self.clock.clone();
        timed(&clock, Step::Mux, || self.write_audio_until(None))?;
        self.output.write_trailer().map_err(|e| out_err(&self.path, e))?;
        let path = self.path.clone();
        drop(self.output);
        self.tmp.persist(&path).map_err(|e| out_err(&path, e.error))?;
        Ok(())
    }
}

/// Styled frames to a video file: a [`FrameEncoder`] feeding a [`Muxer`]. Nothing appears at
/// the output's name until `finish`; dropped unfinished, it removes its temporary.
pub struct VideoEncoder {
    encoder: FrameEncoder,
    muxer: Muxer,
}

fn out_err(path: &Path, reason: impl std::fmt::Display) -> MediaError {
    MediaError::Write { path: path.to_path_buf(), reason: reason.to_string() }
}

impl VideoEncoder {
    /// Counts conversion, encoding and muxing time into `clock`.
    pub fn set_clock(&mut self, clock: Clock) {
        self.encoder.set_clock(clock.clone());
        self.muxer.clock = clock;
    }

    /// Creates the temporary output and its streams; nothing appears at `path` until `finish`.
    pub fn create(
        path: &Path,
        info: &SourceInfo,
        settings: &EncodeSettings,
        companion: &Companion,
    ) -> Result<Self, MediaError> {
        let setup = MuxerSetup::open(path, companion)?;
        let encoder = FrameEncoder::create(path, info, settings, setup.colour_tags(), setup.global_header())?;
        let muxer = setup.start(&encoder.parameters(), encoder.time_base(), info.frame_rate)?;
        Ok(Self { encoder, muxer })
    }

    /// Encodes one frame (frames must come in presentation order).
    pub fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        for p in self.encoder.encode(frame)? {
            self.muxer.write_video(p)?;
        }
        Ok(())
    }

    /// Flushes the encoder and the audio, writes the trailer, renames into place.
    pub fn finish(mut self) -> Result<(), MediaError> {
        for p in self.encoder.flush()? {
            self.muxer.write_video(p)?;
        }
        self.muxer.finish()
    }
}

/// Copies stream side data (the display matrix that carries rotation, among others).
fn copy_side_data(src: &ffmpeg::format::stream::Stream, dst: &mut ffmpeg::format::stream::StreamMut) {
    for sd in src.side_data() {
        let data = sd.data();
        // SAFETY: av_stream_new_side_data allocates `len` bytes owned by the stream; we fill them.
        unsafe {
            let ptr = ffmpeg::ffi::av_stream_new_side_data(dst.as_mut_ptr(), sd.kind().into(), data.len());
            if !ptr.is_null() {
                std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len());
            }
        }
    }
}

/// The frame rate as a string for messages.
pub fn describe_rate(r: Rate) -> String {
    format!("{}/{}", r.num, r.den)
}
