//! Image sequences ("replay of stored frame streams"): a directory of PNG/JPEG frames or a
//! printf pattern (`frames/%05d.png`) in, a directory of PNG frames out.
//!
//! Input frames are taken in name order (directory) or number order (pattern). Their rate is
//! `--fps`, else the sidecar file `fps.txt` (e.g. `25` or `30000/1001`) in the frames'
//! directory; timestamps are the frame numbers in a time base of 1/fps.

use std::path::{Path, PathBuf};

use super::policy::{InputPolicy, MediaLimits};
use super::{image, MediaError};
use crate::frame::{Frame, Rate, RgbFrame, SourceInfo};

/// Name of the sidecar file that holds a sequence's frame rate.
pub const FPS_SIDECAR: &str = "fps.txt";

/// Whether `spec` names a printf pattern such as `frames/%05d.png`.
pub fn is_pattern(spec: &str) -> bool {
    parse_pattern(spec).is_some()
}

/// (directory, prefix, suffix) of a `%d` / `%0Nd` pattern.
fn parse_pattern(spec: &str) -> Option<(PathBuf, String, String)> {
    let path = Path::new(spec);
    let name = path.file_name()?.to_str()?;
    let start = name.find('%')?;
    let rest = &name[start + 1..];
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if !rest[digits..].starts_with('d') {
        return None;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir, name[..start].to_string(), rest[digits + 1..].to_string()))
}

/// The one rule for which names are frames, in a local directory or under a stored prefix:
/// PNG or JPEG by extension (any case), and not hidden (a leading `.`: temporaries such as
/// `.stylestream-*.partial`, editors' and systems' own files).
pub fn is_frame_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.') && (lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg"))
}

/// Reads the frames of a directory or pattern.
pub struct SequenceReader {
    files: Vec<PathBuf>,
    info: SourceInfo,
    next: usize,
    /// Limits of a restricted open: every frame's header is checked before it is decoded.
    limits: Option<MediaLimits>,
}

impl SequenceReader {
    /// Lists the frames and reads the first one for the size. `fps` overrides the sidecar.
    pub fn open(spec: &str, fps: Option<Rate>) -> Result<Self, MediaError> {
        Self::open_with(spec, fps, &InputPolicy::Trusted)
    }

    /// As [`Self::open`]; a restricted `policy` refuses more frames than its limits allow, or
    /// longer (at a known rate), now, and any frame larger than allowed before decoding it.
    pub fn open_with(spec: &str, fps: Option<Rate>, policy: &InputPolicy) -> Result<Self, MediaError> {
        let limits = policy.limits().cloned();
        let (dir, files) = if let Some((dir, prefix, suffix)) = parse_pattern(spec) {
            let entries = std::fs::read_dir(&dir).map_err(|e| MediaError::Read { path: dir.clone(), source: e })?;
            let mut numbered: Vec<(u64, PathBuf)> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let middle = name.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
                    let n = (!middle.is_empty() && middle.chars().all(|c| c.is_ascii_digit()))
                        .then(|| middle.parse().ok())??;
                    Some((n, e.path()))
                })
                .collect();
            numbered.sort();
            (dir, numbered.into_iter().map(|(_, p)| p).collect::<Vec<_>>())
        } else {
            let dir = PathBuf::from(spec);
            let entries = std::fs::read_dir(&dir).map_err(|e| MediaError::Read { path: dir.clone(), source: e })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.file_name().is_some_and(|n| is_frame_name(&n.to_string_lossy())))
                .collect();
            files.sort();
            (dir, files)
        };
        let Some(first) = files.first() else {
            return Err(MediaError::NoFrames { path: PathBuf::from(spec) });
        };
        if let Some(l) = &limits {
            l.check_frames(Path::new(spec), files.len() as u64)?;
        }
        let img = image::read_rgb_within(first, limits.as_ref())?;
        let fps = match fps {
            Some(r) => Some(r),
            None => read_sidecar(&dir)?,
        };
        if let (Some(l), Some(r)) = (&limits, fps.filter(|r| r.num > 0)) {
            l.check_duration(Path::new(spec), files.len() as f64 / r.as_f64())?;
        }
        let frame_rate = fps.unwrap_or(Rate::new(0, 1));
        let info = SourceInfo {
            width: img.width,
            height: img.height,
            time_base: if frame_rate.num > 0 { Rate::new(frame_rate.den, frame_rate.num) } else { Rate::new(1, 1) },
            frame_rate,
            frames: Some(files.len() as u64),
            frames_exact: true,
        };
        Ok(Self { files, info, next: 0, limits })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// File names of the frames, in order (output frames are named after them).
    pub fn names(&self) -> Vec<String> {
        self.files.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect()
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        let Some(path) = self.files.get(self.next) else { return Ok(None) };
        let image = image::read_rgb_within(path, self.limits.as_ref())?;
        if (image.width, image.height) != (self.info.width, self.info.height) {
            return Err(MediaError::Decode {
                path: path.clone(),
                reason: format!(
                    "is {}x{}, the sequence started at {}x{}",
                    image.width, image.height, self.info.width, self.info.height
                ),
            });
        }
        let i = self.next as u64;
        self.next += 1;
        Ok(Some(Frame { index: i, pts: i as i64, duration: 1, image, timing: Default::default() }))
    }
}

fn read_sidecar(dir: &Path) -> Result<Option<Rate>, MediaError> {
    let path = dir.join(FPS_SIDECAR);
    match std::fs::read_to_string(&path) {
        Ok(text) => Rate::parse(&text).map(Some).ok_or_else(|| MediaError::Decode {
            path,
            reason: format!("`{}` is not a frame rate (write e.g. 25 or 30000/1001)", text.trim()),
        }),
        Err(_) => Ok(None),
    }
}

/// Writes frames as PNG files into a directory, atomically: into a temporary directory beside
/// it, renamed into place by `finish`. An existing output directory must be empty.
pub struct SequenceWriter {
    dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    names: Option<Vec<String>>,
}

impl SequenceWriter {
    /// `names`: the input frames' names (their extension becomes .png); `None`: frame_000001.png...
    pub fn create(dir: &Path, names: Option<Vec<String>>) -> Result<Self, MediaError> {
        let err = |reason: String| MediaError::Write { path: dir.to_path_buf(), reason };
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
            if entries.next().is_some() {
                return Err(err("the output directory is not empty".into()));
            }
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "frames".into());
        let tmp = super::output_builder(super::DIR_MODE)
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempdir_in(parent)
            .map_err(|e| err(super::plain_io(e).to_string()))?;
        Ok(Self { dir: dir.to_path_buf(), tmp: Some(tmp), names })
    }

    pub fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let name = match self.names.as_ref().and_then(|n| n.get(frame.index as usize)) {
            Some(n) => Path::new(n).with_extension("png").to_string_lossy().into_owned(),
            None => format!("frame_{:06}.png", frame.index + 1),
        };
        let Some(tmp) = self.tmp.as_ref() else { return Ok(()) };
        let img = RgbFrame::new(frame.image.width, frame.image.height, frame.image.data.clone());
        image::write_rgb(&tmp.path().join(name), &img)
    }

    pub fn finish(mut self) -> Result<(), MediaError> {
        let Some(tmp) = self.tmp.take() else { return Ok(()) };
        let from = tmp.keep();
        if self.dir.exists() {
            // Empty (checked at create): rename replaces it.
            let _ = std::fs::remove_dir(&self.dir);
        }
        std::fs::rename(&from, &self.dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&from);
            MediaError::Write { path: self.dir.clone(), reason: e.to_string() }
        })
    }
}
