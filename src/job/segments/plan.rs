//! The segment plan of a long video job: where it is cut, what each segment job styles, with
//! which settings, until when. Made once, by the instance that took the video's message.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{now_ms, segment_message, Keys, SegmentOptions};
use crate::job::stage::Ready;
use crate::job::{Job, JobError, Settings, Source};
use crate::media::packets::{self, RunIndex, Scan, StreamParams};
use crate::media::policy::InputPolicy;
use crate::media::video_out::EncodeSettings;
use crate::model::gpu::{KernelChoice, Precision};
use crate::storage::{BlockingStore, ObjectKey};

/// Codecs whose packets each hold one frame, cut at keyframes. Others are styled whole.
const CUT_CODECS: &[&str] = &["h264", "hevc", "vp8", "vp9", "av1"];

/// One segment: the frames it emits, by their presentation timestamps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannedSegment {
    pub index: u32,
    /// Its first frame's position in the video, and its frame count.
    pub first_frame: u64,
    pub frames: u64,
    /// Its frames' pts lie in `[start_pts, end_pts)` (the input's time base).
    pub start_pts: i64,
    pub end_pts: i64,
    /// Frame-prefix inputs: the keys of its frames, in order (its input is these objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_keys: Vec<String>,
}

/// A video's plan: everything a segment job or a stitch needs besides its message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentPlan {
    pub schema: String,
    /// The parent job's id: names the plan, its objects and its job log.
    pub id: String,
    /// The parent's input (a video key or a frame prefix of the media store), its size and
    /// ETag when planned, and its output key.
    pub input: String,
    pub frames_input: bool,
    pub input_size: u64,
    pub input_etag: Option<String>,
    pub output: String,
    pub style: String,
    pub model_sha256: String,
    /// The settings of every segment: encoder, network, and the precision and kernel set
    /// every replica runs.
    pub codec: String,
    pub crf: u32,
    pub preset: String,
    pub network: String,
    pub precision: Precision,
    pub kernels: KernelChoice,
    /// The video stream (time base, frame rate, size, colour tags).
    pub stream: StreamParams,
    /// Whether the output container wants the codec headers out of band.
    pub global_header: bool,
    pub segments: Vec<PlannedSegment>,
    pub frames: u64,
    pub created_ms: i64,
    /// The whole video's deadline (ms since the epoch; 0: none).
    pub deadline_ms: i64,
    /// Seconds the parent job spent before the plan was written: its checks, the download, the
    /// scan and the cut, the segment inputs' uploads.
    #[serde(default)]
    pub planning_secs: f64,
}

impl SegmentPlan {
    /// The settings the segments are made with.
    pub fn settings(&self) -> Settings {
        Settings {
            encode: EncodeSettings { codec: self.codec.clone(), crf: self.crf, preset: self.preset.clone() },
            jpeg_quality: 90,
            precision: self.precision,
            network: self.network.clone(),
        }
    }

    /// Whether `now_ms` is past the video's deadline.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.deadline_ms > 0 && now_ms > self.deadline_ms
    }
}

/// What planning decided.
pub enum Planned {
    /// The plan is written and its segment inputs are stored: publish these messages.
    Plan { plan: Box<SegmentPlan>, messages: Vec<Vec<u8>> },
    /// Styled whole, for this reason (the job log says it).
    Whole { why: String },
}

/// Where a video is cut: the segments' decode-order packet ranges (context included) and what
/// each emits. `Err` says why it cannot be cut safely.
pub fn cut(scan: &Scan, segment_secs: f64) -> Result<Vec<(std::ops::Range<usize>, PlannedSegment)>, String> {
    let p = &scan.packets;
    if !CUT_CODECS.contains(&scan.params.codec.as_str()) {
        return Err(format!("{} packets are not cut", scan.params.codec));
    }
    if !scan.clean_timestamps {
        return Err("its timestamps are missing, repeated or not monotonic (the decoder would patch them)".into());
    }
    let Some(first) = p.first() else { return Err("it has no video packets".into()) };
    if !first.key {
        return Err("it does not start with a keyframe".into());
    }
    let tb = scan.params.time_base();
    let ticks = (segment_secs / tb.as_f64()).ceil() as i64;
    let start = p.iter().map(|x| x.pts).min().unwrap_or(0);
    let end = p.iter().map(|x| x.pts + x.duration.max(1)).max().unwrap_or(start);
    // Cut keyframes, in decode order: the first, then each keyframe at least `ticks` after the
    // previous cut whose frames all come after every frame decoded before it.
    let mut max_before = i64::MIN;
    let mut cuts = vec![0usize];
    for (i, x) in p.iter().enumerate() {
        let last = p[*cuts.last().unwrap_or(&0)].pts;
        if i > 0 && x.key && x.pts >= last + ticks && x.pts > max_before && end - x.pts >= ticks / 2 {
            cuts.push(i);
        }
        max_before = max_before.max(x.pts);
    }
    if cuts.len() < 2 {
        return Err(format!("its keyframes are too far apart to cut it into segments of {segment_secs} s"));
    }
    let mut out = Vec::new();
    let mut first_frame = 0;
    for (k, &c) in cuts.iter().enumerate() {
        let t0 = p[c].pts;
        let t1 = cuts.get(k + 1).map_or(end, |&n| p[n].pts);
        // Decode from the cut keyframe through every packet shown before the next cut (the
        // leading pictures of an open GOP come after the next keyframe in decode order).
        let next = cuts.get(k + 1).copied().unwrap_or(p.len());
        let last_shown = p.iter().rposition(|x| x.pts < t1).map_or(next, |i| i + 1);
        let range = c..next.max(last_shown);
        let frames = p.iter().filter(|x| x.pts >= t0 && x.pts < t1).count() as u64;
        let segment =
            PlannedSegment { index: k as u32, first_frame, frames, start_pts: t0, end_pts: t1, frame_keys: Vec::new() };
        first_frame += frames;
        out.push((range, segment));
    }
    Ok(out)
}

/// Plans the stored video of `job`, staged in `ready`: scans it, cuts it, stores the segment
/// inputs and the plan. A plan already made for this input (a redelivery) is used again.
pub fn plan_video(job: &Job, ready: &Ready, opts: &SegmentOptions) -> Result<Planned, JobError> {
    let Source::StoredVideo { key: input, .. } = &job.source else {
        return Ok(Planned::Whole { why: "only stored videos and frame prefixes are cut".into() });
    };
    let started = std::time::Instant::now();
    let system = &opts.system;
    let etag = ready.input_meta.as_ref().and_then(|m| m.etag.clone());
    if let Some(existing) = reuse(system, job, etag.as_deref())? {
        return Ok(existing);
    }
    let policy = InputPolicy::Restricted(crate::media::policy::MediaLimits::default());
    let local = Path::new(&ready.local_in);
    let scan = packets::scan(local, &policy)?;
    let tb = scan.params.time_base().as_f64();
    let span = scan.packets.iter().map(|p| p.pts + p.duration.max(1)).max().unwrap_or(0)
        - scan.packets.iter().map(|p| p.pts).min().unwrap_or(0);
    if (span as f64) * tb <= opts.segment_secs {
        return Ok(Planned::Whole {
            why: format!("it is not longer than service.segment_secs ({} s)", opts.segment_secs),
        });
    }
    let cuts = match cut(&scan, opts.segment_secs) {
        Ok(c) => c,
        Err(why) => return Ok(Planned::Whole { why }),
    };
    let dir = ready
        .dir
        .as_ref()
        .map(|d| d.path().join("runs"))
        .ok_or_else(|| JobError::Other("planning needs a staging directory".into()))?;
    std::fs::create_dir_all(&dir).map_err(|e| JobError::Disk(format!("{}: {e}", dir.display())))?;
    let ranges: Vec<_> = cuts.iter().map(|(r, _)| r.clone()).collect();
    let runs = packets::split(local, &policy, &ranges, &dir)?;
    let keys = Keys::new(&job.id);
    for (i, (blob, infos)) in runs.iter().enumerate() {
        let index = RunIndex { params: scan.params.clone(), packets: infos.clone() };
        system.upload_atomic(blob, &keys.input_run(i as u32).map_err(JobError::write)?).map_err(JobError::write)?;
        let json = serde_json::to_vec(&index).map_err(|e| JobError::Other(e.to_string()))?;
        system
            .put_bytes_atomic(&keys.input_index(i as u32).map_err(JobError::write)?, json)
            .map_err(JobError::write)?;
        let _ = std::fs::remove_file(blob);
    }
    let segments: Vec<PlannedSegment> = cuts.into_iter().map(|(_, s)| s).collect();
    let global_header = matches!(job.sink.name().rsplit('.').next(), Some("mp4" | "mov" | "mkv" | "m4v" | "webm"));
    let choice = resolve(opts, job, scan.params.width, scan.params.height)?;
    let mut plan =
        new_plan(job, input.as_str(), false, ready, etag, scan.params, global_header, segments, opts, choice);
    plan.planning_secs = ready.secs + started.elapsed().as_secs_f64();
    write_plan(system, &plan)
}

/// Plans a frame prefix that becomes a video: segments of whole frame ranges. `frames` are the
/// prefix's frames in order (keys), `fps` their rate, `size` the first frame's.
#[allow(clippy::too_many_arguments)]
pub fn plan_frames(
    job: &Job,
    ready: &Ready,
    frames: &[ObjectKey],
    fps: crate::frame::Rate,
    size: (u32, u32),
    opts: &SegmentOptions,
) -> Result<Planned, JobError> {
    let Source::StoredFrames { prefix, .. } = &job.source else {
        return Ok(Planned::Whole { why: "not a frame prefix".into() });
    };
    let started = std::time::Instant::now();
    let system = &opts.system;
    let etag = ready.input_meta.as_ref().and_then(|m| m.etag.clone());
    if let Some(existing) = reuse(system, job, etag.as_deref())? {
        return Ok(existing);
    }
    let per = (opts.segment_secs * fps.as_f64()).ceil().max(1.0) as usize;
    if frames.len() <= per {
        return Ok(Planned::Whole {
            why: format!("it is not longer than service.segment_secs ({} s)", opts.segment_secs),
        });
    }
    let segments: Vec<PlannedSegment> = frames
        .chunks(per)
        .enumerate()
        .map(|(k, chunk)| {
            let first = (k * per) as u64;
            PlannedSegment {
                index: k as u32,
                first_frame: first,
                frames: chunk.len() as u64,
                start_pts: first as i64,
                end_pts: first as i64 + chunk.len() as i64,
                frame_keys: chunk.iter().map(|k| k.to_string()).collect(),
            }
        })
        .collect();
    let stream = StreamParams {
        codec: "frames".into(),
        width: size.0,
        height: size.1,
        extradata: String::new(),
        profile: 0,
        level: 0,
        time_base: (fps.den, fps.num),
        frame_rate: (fps.num, fps.den),
        colour_space: "unknown".into(),
        full_range: false,
    };
    let global_header = true;
    let choice = resolve(opts, job, size.0, size.1)?;
    let mut plan = new_plan(job, prefix, true, ready, etag, stream, global_header, segments, opts, choice);
    plan.planning_secs = ready.secs + started.elapsed().as_secs_f64();
    write_plan(system, &plan)
}

#[allow(clippy::too_many_arguments)]
fn new_plan(
    job: &Job,
    input: &str,
    frames_input: bool,
    ready: &Ready,
    etag: Option<String>,
    stream: StreamParams,
    global_header: bool,
    segments: Vec<PlannedSegment>,
    opts: &SegmentOptions,
    (precision, kernels): (Precision, KernelChoice),
) -> SegmentPlan {
    let created = now_ms();
    let s = &job.settings;
    SegmentPlan {
        schema: super::PLAN_SCHEMA.into(),
        id: job.id.clone(),
        input: input.to_string(),
        frames_input,
        input_size: ready.input_meta.as_ref().map_or(0, |m| m.size),
        input_etag: etag,
        output: job.sink.name(),
        style: job.style.name.clone(),
        model_sha256: job.style.weights.sha256.clone(),
        codec: s.encode.codec.clone(),
        crf: s.encode.crf,
        preset: s.encode.preset.clone(),
        network: s.network.clone(),
        precision,
        kernels,
        stream,
        global_header,
        frames: segments.iter().map(|x| x.frames).sum(),
        segments,
        created_ms: created,
        deadline_ms: if opts.timeout_secs > 0.0 { created + (opts.timeout_secs * 1000.0) as i64 } else { 0 },
        planning_secs: 0.0,
    }
}

/// The precision and kernel set the video's frames run with (on this instance's GPU, at the
/// video's frame size), so every replica styles them the same way.
fn resolve(opts: &SegmentOptions, job: &Job, width: u32, height: u32) -> Result<(Precision, KernelChoice), JobError> {
    (opts.resolve)(&job.style, width, height)
        .map_err(|e| JobError::Other(format!("resolving the precision and kernels to plan with: {e}")))
}

/// Writes the plan (after its inputs: a plan that exists has them) and lists its messages.
fn write_plan(system: &BlockingStore, plan: &SegmentPlan) -> Result<Planned, JobError> {
    let keys = Keys::new(&plan.id);
    let json = serde_json::to_vec_pretty(plan).map_err(|e| JobError::Other(e.to_string()))?;
    system.put_bytes_atomic(&keys.plan().map_err(JobError::write)?, json).map_err(JobError::write)?;
    let messages = plan.segments.iter().map(|s| segment_message(&plan.id, s.index)).collect();
    Ok(Planned::Plan { plan: Box::new(plan.clone()), messages })
}

/// A plan made before for the same job (a redelivered message): its segment messages again
/// (duplicates are harmless). A plan of another input version or output is replaced.
fn reuse(system: &BlockingStore, job: &Job, etag: Option<&str>) -> Result<Option<Planned>, JobError> {
    let Some(plan) = super::read_plan(system, &job.id).map_err(JobError::read)? else { return Ok(None) };
    if plan.input == job.source.name()
        && plan.input_etag.as_deref() == etag
        && plan.output == job.sink.name()
        && plan.model_sha256 == job.style.weights.sha256
    {
        let messages = plan.segments.iter().map(|s| segment_message(&plan.id, s.index)).collect();
        return Ok(Some(Planned::Plan { plan: Box::new(plan), messages }));
    }
    tracing::info!(plan = %job.id, "a plan of another input version: replacing it");
    super::remove_plan(system, &job.id).map_err(JobError::write)?;
    Ok(None)
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, std::io::Error> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(packets: Vec<PacketInfo>) -> Scan {
        let params = StreamParams {
            codec: "h264".into(),
            width: 64,
            height: 48,
            extradata: String::new(),
            profile: 0,
            level: 0,
            time_base: (1, 25),
            frame_rate: (25, 1),
            colour_space: "unknown".into(),
            full_range: false,
        };
        Scan { params, packets, clean_timestamps: true }
    }

    use crate::media::packets::PacketInfo;

    fn pk(pts: i64, key: bool) -> PacketInfo {
        PacketInfo { pts, dts: pts, duration: 1, key, size: 1 }
    }

    #[test]
    fn closed_gops_are_cut_at_keyframes_into_whole_frame_ranges() {
        // 100 frames at 25 fps, a keyframe every 10: 1 s segments cut at 0, 30, 60 (the next
        // keyframe at least 25 frames on; none at 90, which would leave a last segment of
        // under half a segment).
        let s = scan((0..100).map(|i| pk(i, i % 10 == 0)).collect());
        let c = cut(&s, 1.0).unwrap();
        let starts: Vec<i64> = c.iter().map(|(_, s)| s.start_pts).collect();
        assert_eq!(starts, [0, 30, 60]);
        assert_eq!(c.iter().map(|(_, s)| s.frames).sum::<u64>(), 100);
        assert_eq!(c[1].0, 30..60);
        assert_eq!(c[2].1.end_pts, 100);
        assert_eq!(c[2].1.first_frame, 60);
    }

    #[test]
    fn open_gops_take_the_next_gops_leading_pictures_as_context() {
        // Decode order: I0 P3 B1 B2 | I6 B4 B5 P9 B7 B8 | ... (B4, B5 lead the second GOP: shown
        // before I6, decoded after it).
        let order = [
            (0, true),
            (3, false),
            (1, false),
            (2, false),
            (6, true),
            (4, false),
            (5, false),
            (9, false),
            (7, false),
            (8, false),
            (10, false),
        ];
        let packets: Vec<PacketInfo> = order
            .iter()
            .enumerate()
            .map(|(i, &(pts, key))| PacketInfo { pts, dts: i as i64 - 1, duration: 1, key, size: 1 })
            .collect();
        let c = cut(&scan(packets), 0.2).unwrap();
        assert_eq!(c[0].1.start_pts, 0);
        assert_eq!(c[1].1.start_pts, 6);
        // The first segment shows 0..=5: it decodes through B5, past the second keyframe.
        assert_eq!(c[0].0, 0..7);
        assert_eq!(c[0].1.frames, 6);
        assert_eq!(c[1].1.frames, 5);
    }

    #[test]
    fn unsafe_inputs_are_not_cut() {
        let mut s = scan((0..100).map(|i| pk(i, i == 0)).collect());
        assert!(cut(&s, 1.0).unwrap_err().contains("too far apart"));
        s.clean_timestamps = false;
        assert!(cut(&s, 1.0).unwrap_err().contains("patch"));
        let mut s = scan((0..100).map(|i| pk(i, i % 10 == 0)).collect());
        s.params.codec = "mpeg4".into();
        assert!(cut(&s, 1.0).is_err());
    }
}
