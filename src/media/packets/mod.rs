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
        Self::of_parameters(&stream.parameters(), stream.time_base(), frame_rate, ColourTags::of(Some(stream)))
    }

    /// The parameters of a stream or an encoder (`params`), in `time_base`, tagged `tags`.
    fn of_parameters(
        params: &ffmpeg::codec::Parameters,
        time_base: ffmpeg::Rational,
        frame_rate: Rate,
        tags: ColourTags,
    ) -> Self {
        // SAFETY: reading plain fields and the extradata (`extradata_size` bytes) of valid codec
        // parameters, and static names from libavcodec / libavutil.
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

mod decode;
mod encode;

pub use decode::RunDecoder;
pub use encode::{join, joined_dts, reorder_delay, RunWriter};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_odd_text() {
        assert_eq!(unhex(&hex(&[0, 1, 0xab, 0xff])).unwrap(), [0, 1, 0xab, 0xff]);
        assert!(unhex("abc").is_none() && unhex("zz").is_none());
        assert_eq!(colour_space_from_name(colour_space_name(ffmpeg::color::Space::BT709)), ffmpeg::color::Space::BT709);
    }
}
