//! Frames encoded into a run, and runs joined into one container (decode timestamps set across
//! the whole stream, the source's audio copied once).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;

use super::*;

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
        let params = StreamParams::of_parameters(
            &self.encoder.parameters(),
            self.encoder.time_base(),
            self.frame_rate,
            self.tags,
        );
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
    let expected = StreamParams::of_parameters(&reference.parameters(), reference.time_base(), info.frame_rate, tags);
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
}
