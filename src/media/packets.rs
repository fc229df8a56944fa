//! Packet runs: one video stream's compressed packets, in decode order, with their exact
//! timestamps in the stream's own time base — outside any container. A run is two things: a
//! blob (the packets' bytes, one after another) and its index ([`RunIndex`]: the stream's
//! parameters and every packet's pts, dts, duration, key flag and size). No container rounds a
//! timestamp or adds an edit list, and no demuxer reads a run: it is fed to a decoder packet by
//! packet.
//!
//! What uses them: a video cut at keyframes into segment inputs ([`scan`], [`split`]); a
//! segment's frames decoded from its input run ([`RunDecoder`]) and encoded into an output run
//! ([`RunWriter`]); the output runs joined into one container with the source's audio
//! ([`join`]).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ffmpeg::media::Type;
use ffmpeg_next as ffmpeg;

use super::policy::{open_input, InputPolicy, MediaLimits};
use super::video_in::{init, rate, ToRgb};
use super::video_out::{ColourTags, Companion, EncodeSettings, FrameEncoder, MuxerSetup};
use super::MediaError;
use crate::frame::{Frame, Rate, RgbFrame, SourceInfo};

/// What a decoder needs to know of a stream besides its packets, and what tells two encoded
/// streams apart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamParams {
    /// ffmpeg's codec name (`h264`, `hevc`, `vp9`, ...).
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// The codec's out-of-band headers (SPS/PPS for H.264 in mp4), hex.
    pub extradata: String,
    pub profile: i32,
    pub level: i32,
    /// Timestamps are in `num/den` seconds.
    pub time_base: (i32, i32),
    pub frame_rate: (i32, i32),
    /// The YUV matrix (ffmpeg's name, `unknown` when untagged) and range of the stream.
    pub colour_space: String,
    pub full_range: bool,
}

impl StreamParams {
    /// The parameters of `stream`.
    fn of(stream: &ffmpeg::format::stream::Stream, frame_rate: Rate) -> Self {
        let p = stream.parameters();
        let tags = ColourTags::of(Some(stream));
        // SAFETY: reading plain fields and the extradata (`extradata_size` bytes) of valid codec
        // parameters, and static names from libavcodec / libavutil.
        unsafe {
            let raw = &*p.as_ptr();
            let extradata = if raw.extradata.is_null() || raw.extradata_size <= 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(raw.extradata, raw.extradata_size as usize).to_vec()
            };
            let name = |ptr: *const std::os::raw::c_char| {
                (!ptr.is_null()).then(|| std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned())
            };
            Self {
                codec: name(ffmpeg::ffi::avcodec_get_name(raw.codec_id)).unwrap_or_default(),
                width: raw.width.max(0) as u32,
                height: raw.height.max(0) as u32,
                extradata: hex(&extradata),
                profile: raw.profile,
                level: raw.level,
                time_base: (stream.time_base().numerator(), stream.time_base().denominator()),
                frame_rate: (frame_rate.num, frame_rate.den),
                colour_space: colour_space_name(tags.space).to_string(),
                full_range: tags.full_range,
            }
        }
    }

    /// The parameters of an encoder's stream, in `time_base`.
    fn of_encoder(
        params: &ffmpeg::codec::Parameters,
        time_base: ffmpeg::Rational,
        frame_rate: Rate,
        tags: ColourTags,
    ) -> Self {
        // SAFETY: as in `of`.
        unsafe {
            let raw = &*params.as_ptr();
            let extradata = if raw.extradata.is_null() || raw.extradata_size <= 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(raw.extradata, raw.extradata_size as usize).to_vec()
            };
            let name = |ptr: *const std::os::raw::c_char| {
                (!ptr.is_null()).then(|| std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned())
            };
            Self {
                codec: name(ffmpeg::ffi::avcodec_get_name(raw.codec_id)).unwrap_or_default(),
                width: raw.width.max(0) as u32,
                height: raw.height.max(0) as u32,
                extradata: hex(&extradata),
                profile: raw.profile,
                level: raw.level,
                time_base: (time_base.numerator(), time_base.denominator()),
                frame_rate: (frame_rate.num, frame_rate.den),
                colour_space: colour_space_name(tags.space).to_string(),
                full_range: tags.full_range,
            }
        }
    }

    pub fn time_base(&self) -> Rate {
        Rate::new(self.time_base.0, self.time_base.1)
    }

    /// The colour tags an encoder of these frames writes.
    pub fn colour_tags(&self) -> ColourTags {
        ColourTags { space: colour_space_from_name(&self.colour_space), full_range: self.full_range }
    }

    /// What a frame source of this stream knows before its first frame.
    pub fn info(&self, frames: Option<u64>) -> SourceInfo {
        SourceInfo {
            width: self.width,
            height: self.height,
            time_base: self.time_base(),
            frame_rate: Rate::new(self.frame_rate.0, self.frame_rate.1),
            frames,
            frames_exact: frames.is_some(),
        }
    }
}

/// The names of the YUV matrices a stream may be tagged with.
const COLOUR_SPACES: [(ffmpeg::color::Space, &str); 8] = [
    (ffmpeg::color::Space::BT709, "bt709"),
    (ffmpeg::color::Space::BT470BG, "bt470bg"),
    (ffmpeg::color::Space::SMPTE170M, "smpte170m"),
    (ffmpeg::color::Space::SMPTE240M, "smpte240m"),
    (ffmpeg::color::Space::FCC, "fcc"),
    (ffmpeg::color::Space::BT2020NCL, "bt2020nc"),
    (ffmpeg::color::Space::BT2020CL, "bt2020c"),
    (ffmpeg::color::Space::RGB, "gbr"),
];

fn colour_space_name(space: ffmpeg::color::Space) -> &'static str {
    COLOUR_SPACES.iter().find(|(s, _)| *s == space).map_or("unknown", |(_, n)| n)
}

fn colour_space_from_name(name: &str) -> ffmpeg::color::Space {
    COLOUR_SPACES.iter().find(|(_, n)| *n == name).map_or(ffmpeg::color::Space::Unspecified, |(s, _)| *s)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len().is_multiple_of(2).then_some(())?;
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// One packet of a run, without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PacketInfo {
    pub pts: i64,
    pub dts: i64,
    pub duration: i64,
    pub key: bool,
    pub size: u32,
}

/// A run's index: the stream and its packets in decode order (their bytes are the blob's,
/// one after another in this order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunIndex {
    pub params: StreamParams,
    pub packets: Vec<PacketInfo>,
}

impl RunIndex {
    /// The blob's size.
    pub fn bytes(&self) -> u64 {
        self.packets.iter().map(|p| p.size as u64).sum()
    }
}

/// A video stream read without decoding: what a plan needs to cut it.
#[derive(Debug, Clone)]
pub struct Scan {
    pub params: StreamParams,
    /// Every packet of the stream, in decode order (sizes are the packets' own).
    pub packets: Vec<PacketInfo>,
    /// Whether every packet has a pts and a dts, the dts rise strictly, and no two packets
    /// share a pts: the timestamps are the frames' own, and a decoder patches none of them.
    pub clean_timestamps: bool,
}

/// Reads every packet of the best video stream of `path` (opened under `policy`), without
/// decoding any.
pub fn scan(path: &Path, policy: &InputPolicy) -> Result<Scan, MediaError> {
    init();
    let mut input = open_input(path, policy)?;
    let stream = input.streams().best(Type::Video).ok_or_else(|| MediaError::NoVideo { path: path.to_path_buf() })?;
    let index = stream.index();
    let mut frame_rate = rate(stream.avg_frame_rate());
    if frame_rate.num <= 0 || frame_rate.den <= 0 {
        frame_rate = rate(stream.rate());
    }
    let params = StreamParams::of(&stream, frame_rate);
    let limits = policy.limits().cloned();
    if let Some(l) = &limits {
        l.check_size(path, params.width, params.height)?;
    }
    let mut packets = Vec::new();
    let mut clean = true;
    for (s, p) in input.packets() {
        if s.index() != index {
            continue;
        }
        if let Some(l) = &limits {
            l.check_frames(path, packets.len() as u64 + 1)?;
        }
        let (pts, dts) = (p.pts(), p.dts());
        clean &= pts.is_some() && dts.is_some();
        packets.push(PacketInfo {
            pts: pts.unwrap_or(i64::MIN),
            dts: dts.unwrap_or(i64::MIN),
            duration: p.duration(),
            key: p.is_key(),
            size: p.size() as u32,
        });
    }
    if clean {
        clean = packets.windows(2).all(|w| w[0].dts < w[1].dts);
        let mut pts: Vec<i64> = packets.iter().map(|p| p.pts).collect();
        pts.sort_unstable();
        clean &= pts.windows(2).all(|w| w[0] < w[1]);
    }
    Ok(Scan { params, packets, clean_timestamps: clean })
}

/// Copies the packets of the best video stream of `path` whose decode-order positions fall in
/// each of `ranges` (which may overlap) into one blob each, `dir/<i>.run`, in one pass over
/// the file. Returns each blob's path and packets.
pub fn split(
    path: &Path,
    policy: &InputPolicy,
    ranges: &[Range<usize>],
    dir: &Path,
) -> Result<Vec<(PathBuf, Vec<PacketInfo>)>, MediaError> {
    init();
    let mut input = open_input(path, policy)?;
    let index =
        input.streams().best(Type::Video).ok_or_else(|| MediaError::NoVideo { path: path.to_path_buf() })?.index();
    let write_err = |p: &Path, e: std::io::Error| MediaError::Write { path: p.to_path_buf(), reason: e.to_string() };
    let mut outs = Vec::with_capacity(ranges.len());
    for i in 0..ranges.len() {
        let p = dir.join(format!("{i}.run"));
        let f = File::create(&p).map_err(|e| write_err(&p, e))?;
        outs.push((p, BufWriter::new(f), Vec::new()));
    }
    let mut n = 0usize;
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        let data = packet.data().unwrap_or_default();
        for (range, (p, w, infos)) in ranges.iter().zip(outs.iter_mut()) {
            if range.contains(&n) {
                w.write_all(data).map_err(|e| write_err(p, e))?;
                infos.push(PacketInfo {
                    pts: packet.pts().unwrap_or(i64::MIN),
                    dts: packet.dts().unwrap_or(i64::MIN),
                    duration: packet.duration(),
                    key: packet.is_key(),
                    size: data.len() as u32,
                });
            }
        }
        n += 1;
    }
    let mut done = Vec::with_capacity(outs.len());
    for (p, mut w, infos) in outs {
        w.flush().map_err(|e| write_err(&p, e))?;
        done.push((p, infos));
    }
    Ok(done)
}

/// Reads a run's packets back from its blob, in order.
struct RunReader {
    blob: PathBuf,
    file: File,
    packets: std::vec::IntoIter<PacketInfo>,
}

impl RunReader {
    fn open(blob: &Path, index: &RunIndex) -> Result<Self, MediaError> {
        let read_err = |e| MediaError::Read { path: blob.to_path_buf(), source: e };
        let file = File::open(blob).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        if len != index.bytes() {
            let reason = format!("the run holds {len} bytes, its index {}", index.bytes());
            return Err(MediaError::Decode { path: blob.to_path_buf(), reason });
        }
        Ok(Self { blob: blob.to_path_buf(), file, packets: index.packets.clone().into_iter() })
    }

    /// The next packet with its timestamps and flags, `None` at the end.
    fn next(&mut self) -> Result<Option<(PacketInfo, ffmpeg::Packet)>, MediaError> {
        let Some(info) = self.packets.next() else { return Ok(None) };
        let mut data = vec![0u8; info.size as usize];
        self.file.read_exact(&mut data).map_err(|e| MediaError::Read { path: self.blob.clone(), source: e })?;
        let mut p = ffmpeg::Packet::copy(&data);
        p.set_pts(Some(info.pts));
        p.set_dts(Some(info.dts));
        p.set_duration(info.duration);
        if info.key {
            p.set_flags(ffmpeg::packet::Flags::KEY);
        }
        Ok(Some((info, p)))
    }
}

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

/// Styled frames encoded into a run: a blob file and its index, for the frames' own time base.
pub struct RunWriter {
    encoder: FrameEncoder,
    blob: PathBuf,
    file: BufWriter<File>,
    packets: Vec<PacketInfo>,
    frame_rate: Rate,
    tags: ColourTags,
}

impl RunWriter {
    /// Encodes frames of `info` with `settings` into `blob`; `global_header`: the headers go to
    /// the index (for a container that wants them out of band).
    pub fn create(
        blob: &Path,
        info: &SourceInfo,
        settings: &EncodeSettings,
        tags: ColourTags,
        global_header: bool,
    ) -> Result<Self, MediaError> {
        let encoder = FrameEncoder::create(blob, info, settings, tags, global_header)?;
        let file =
            File::create(blob).map_err(|e| MediaError::Write { path: blob.to_path_buf(), reason: e.to_string() })?;
        Ok(Self {
            encoder,
            blob: blob.to_path_buf(),
            file: BufWriter::new(file),
            packets: Vec::new(),
            frame_rate: info.frame_rate,
            tags,
        })
    }

    pub fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let packets = self.encoder.encode(frame)?;
        self.append(packets)
    }

    fn append(&mut self, packets: Vec<ffmpeg::Packet>) -> Result<(), MediaError> {
        for p in packets {
            let data = p.data().unwrap_or_default();
            self.file
                .write_all(data)
                .map_err(|e| MediaError::Write { path: self.blob.clone(), reason: e.to_string() })?;
            self.packets.push(PacketInfo {
                pts: p.pts().unwrap_or(i64::MIN),
                dts: p.dts().unwrap_or(i64::MIN),
                duration: p.duration(),
                key: p.is_key(),
                size: data.len() as u32,
            });
        }
        Ok(())
    }

    /// Flushes the encoder and the blob; the run's index.
    pub fn finish(mut self) -> Result<RunIndex, MediaError> {
        let last = self.encoder.flush()?;
        self.append(last)?;
        self.file.flush().map_err(|e| MediaError::Write { path: self.blob.clone(), reason: e.to_string() })?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| MediaError::Write { path: self.blob.clone(), reason: e.to_string() })?;
        let params =
            StreamParams::of_encoder(&self.encoder.parameters(), self.encoder.time_base(), self.frame_rate, self.tags);
        Ok(RunIndex { params, packets: self.packets })
    }
}

/// How many frames an encoder held back before its first packet: the packets whose dts comes
/// before every pts of the run.
pub fn reorder_delay(packets: &[PacketInfo]) -> usize {
    let first = packets.iter().map(|p| p.pts).min().unwrap_or(0);
    packets.iter().filter(|p| p.dts < first).count()
}

/// Decode timestamps for packets joined from several runs, in decode order: from the sorted
/// presentation timestamps and the largest reorder delay `delay`, as an encoder sets them
/// (dts of packet i = the i-delay-th pts; the first `delay` ones one frame apart before the
/// first pts). Monotonic at every join, since each run's pts all come before the next run's.
pub fn joined_dts(packets: &[PacketInfo], delay: usize) -> Vec<i64> {
    let mut pts: Vec<i64> = packets.iter().map(|p| p.pts).collect();
    pts.sort_unstable();
    let step = match pts.as_slice() {
        [a, b, ..] => (b - a).max(1),
        _ => packets.first().map_or(1, |p| p.duration.max(1)),
    };
    (0..packets.len())
        .map(
            |i| if i >= delay { pts[i - delay] } else { pts.first().copied().unwrap_or(0) - (delay - i) as i64 * step },
        )
        .collect()
}

/// Joins runs of one encoder's output (same parameters) into one container at `out`, in
/// order, with the companion's audio copied as a single encode would (see `Muxer`); decode
/// timestamps are set across the whole stream (`joined_dts`). `params` are those of the
/// stream as an encoder opened with the runs' settings describes it: every run must match them.
pub fn join(
    out: &Path,
    runs: &[(PathBuf, RunIndex)],
    info: &SourceInfo,
    settings: &EncodeSettings,
    companion: &Companion,
) -> Result<u64, MediaError> {
    let bad = |reason: String| MediaError::Write { path: out.to_path_buf(), reason };
    let setup = MuxerSetup::open(out, companion)?;
    // The stream's parameters come from an encoder opened as the segments' were: its
    // extradata must be theirs.
    let tags = runs.first().map(|(_, r)| r.params.colour_tags()).unwrap_or(setup.colour_tags());
    let reference = FrameEncoder::create(out, info, settings, tags, setup.global_header())?;
    let expected = StreamParams::of_encoder(&reference.parameters(), reference.time_base(), info.frame_rate, tags);
    for (i, (_, r)) in runs.iter().enumerate() {
        if r.params != expected {
            return Err(bad(format!(
                "segment {i} was encoded with other parameters ({:?}) than the stream's ({:?})",
                r.params, expected
            )));
        }
    }
    let all: Vec<PacketInfo> = runs.iter().flat_map(|(_, r)| r.packets.iter().copied()).collect();
    let delay = runs.iter().map(|(_, r)| reorder_delay(&r.packets)).max().unwrap_or(0);
    let dts = joined_dts(&all, delay);
    if let Some((i, p)) = all.iter().enumerate().find(|(i, p)| dts[*i] > p.pts) {
        return Err(bad(format!("packet {i} (pts {}) would be decoded after it is shown (dts {})", p.pts, dts[i])));
    }
    let mut muxer = setup.start(&reference.parameters(), reference.time_base(), info.frame_rate)?;
    drop(reference);
    let mut n = 0;
    for (blob, index) in runs {
        let mut reader = RunReader::open(blob, index)?;
        while let Some((_, mut packet)) = reader.next()? {
            packet.set_dts(Some(dts[n]));
            muxer.write_video(packet)?;
            n += 1;
        }
    }
    muxer.finish()?;
    Ok(all.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pts: i64, dts: i64) -> PacketInfo {
        PacketInfo { pts, dts, duration: 1, key: false, size: 1 }
    }

    #[test]
    fn joined_decode_timestamps_rise_at_every_join_and_precede_their_pts() {
        // Two runs of an encoder with two frames of reorder delay (I P B B pattern).
        let a = [p(0, -2), p(3, -1), p(1, 0), p(2, 1), p(4, 2)];
        let b = [p(5, 3), p(8, 4), p(6, 5), p(7, 6), p(9, 7)];
        // Each run on its own starts its dts before its first pts: joined as they are, the
        // second run's first dts (3) would not rise after the first run's last (2)... here it
        // does, but a run of another delay would not; the join recomputes them.
        let all: Vec<PacketInfo> = a.iter().chain(b.iter()).copied().collect();
        let delay = reorder_delay(&a).max(reorder_delay(&b));
        assert_eq!(delay, 2);
        let dts = joined_dts(&all, delay);
        assert!(dts.windows(2).all(|w| w[0] < w[1]), "{dts:?}");
        assert!(all.iter().zip(&dts).all(|(p, d)| *d <= p.pts), "{dts:?}");
        assert_eq!(dts, [-2, -1, 0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn hex_round_trips_and_refuses_odd_text() {
        assert_eq!(unhex(&hex(&[0, 1, 0xab, 0xff])).unwrap(), [0, 1, 0xab, 0xff]);
        assert!(unhex("abc").is_none() && unhex("zz").is_none());
        assert_eq!(colour_space_from_name(colour_space_name(ffmpeg::color::Space::BT709)), ffmpeg::color::Space::BT709);
    }
}
