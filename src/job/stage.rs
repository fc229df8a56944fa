//! Staging a job whose output is one file (a video or a still): check the request, skip it when
//! its output is done, and bring a stored input to local disk. A local input is staged where it
//! is; a stored one is downloaded into a staging directory of the job's own (never named from
//! request text), which is removed when the job ends, however it ends.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::staging::{self, NoRoom, StagingDir};
use super::{Env, Job, JobError, PoisonCode, Sink, Source};
use crate::frame::Rate;
use crate::storage::{owner, BlockingStore, Meta, ObjectKey};

/// What staging found.
pub enum Staged<'a> {
    /// The output is complete for this input, model and settings: no GPU work.
    Done { output: String },
    /// Ready to open and run.
    Ready(Ready<'a>),
}

/// A job's ends on local disk.
pub struct Ready<'a> {
    /// The input as the media layer opens it (a file, a directory of frames, a pattern).
    pub local_in: String,
    /// Where the output is written; published by its sink's rename.
    pub local_out: PathBuf,
    /// Frame rate of frame inputs.
    pub fps: Option<Rate>,
    /// The input's identity: its size and ETag (a stored object's, a hash for frames or local
    /// files), recorded in the manifest.
    pub input_meta: Option<Meta>,
    /// The staging directory of a stored job (removed when dropped).
    pub dir: Option<StagingDir>,
    /// Holds the output for this job while it runs (a duplicate waits).
    pub claim: Option<Claim<'a>>,
    /// A frame prefix long enough to be cut into segments: its frames (not downloaded), their
    /// rate and the first frame's size.
    pub to_cut: Option<FramesToCut>,
    /// Seconds spent checking and downloading.
    pub secs: f64,
}

/// The frames directly under a prefix, by the one frame-name rule, in name order.
pub fn frames_under(listing: Vec<(ObjectKey, Meta)>, prefix: &str) -> Vec<(ObjectKey, Meta)> {
    let mut frames: Vec<(ObjectKey, Meta)> = listing
        .into_iter()
        .filter(|(k, _)| {
            !k.is_partial()
                && k.parent().map(|p| format!("{p}/")).unwrap_or_default() == prefix
                && crate::media::sequence::is_frame_name(k.name())
        })
        .collect();
    frames.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    frames
}

/// `prefix` as a key prefix: empty (the store's root) or ending in `/`.
pub fn folder(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// Checks and stages a job whose sink is one file. Stored frames sinks stage themselves
/// (`frames`).
pub fn stage<'a>(job: &Job, env: &'a Env) -> Result<Staged<'a>, JobError> {
    let t0 = Instant::now();
    match (&job.source, &job.sink) {
        (Source::Local { path, fps, .. }, Sink::Local { path: out, .. }) => {
            check_local(path, out)?;
            Ok(Staged::Ready(Ready {
                local_in: path.clone(),
                local_out: out.clone(),
                fps: *fps,
                input_meta: None,
                dir: None,
                claim: None,
                to_cut: None,
                secs: t0.elapsed().as_secs_f64(),
            }))
        }
        (Source::StoredVideo { .. } | Source::StoredFrames { .. }, Sink::StoredVideo { store, key }) => {
            stage_stored(job, env, store, key, t0)
        }
        (source, sink) => Err(JobError::Usage(format!("{} cannot be written to {}", source.name(), sink.name()))),
    }
}

/// Refuses a missing local input, and an output that is the input (the same file by any name).
fn check_local(input: &str, output: &Path) -> Result<(), JobError> {
    let path = Path::new(input);
    if !path.exists() && !crate::media::sequence::is_pattern(input) {
        return Err(crate::media::MediaError::Read {
            path: path.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        }
        .into());
    }
    if crate::media::policy::same_file(path, output) {
        return Err(
            crate::media::MediaError::SameFile { input: path.to_path_buf(), output: output.to_path_buf() }.into()
        );
    }
    Ok(())
}

/// A stored input to a stored video: its metadata and limits, the done check, the room on the
/// local disk, the download.
fn stage_stored<'a>(
    job: &Job,
    env: &'a Env,
    out_store: &BlockingStore,
    output: &ObjectKey,
    t0: Instant,
) -> Result<Staged<'a>, JobError> {
    let limits = &env.limits;
    // Cheap checks of a stored input first: a missing or oversized one costs no disk.
    let video_meta = match &job.source {
        Source::StoredVideo { store, key } => {
            let meta = store.head(key).map_err(JobError::read)?;
            let Some(meta) = meta else {
                return Err(JobError::refused(
                    PoisonCode::MissingInput,
                    format!("{} does not exist", store.store().url_of(key)),
                ));
            };
            if meta.size > limits.max_input_bytes {
                let reason = format!("{key} is {} bytes, over the limit of {}", meta.size, limits.max_input_bytes);
                return Err(JobError::refused(PoisonCode::OversizedInput, reason));
            }
            staging::check_room(&env.work_dir, meta.size, limits.staging_factor, limits.staging_margin_bytes)
                .map_err(|r| no_room(key.as_str(), r))?;
            Some(meta)
        }
        _ => None,
    };
    let claim = Claim::take(env, output.as_str())?;
    let dir = staging::create(&env.work_dir)
        .map_err(|e| JobError::Disk(format!("staging directory in {}: {e}", env.work_dir.display())))?;
    let listed = match &job.source {
        Source::StoredFrames { store, prefix, fps } => Some(list_frames(store, prefix, *fps, env)?),
        _ => None,
    };
    let meta = match &listed {
        Some(l) => l.meta.clone(),
        None => video_meta.unwrap_or_else(|| Meta { size: 0, etag: None, last_modified: chrono::Utc::now() }),
    };
    let etag = meta.etag.clone().unwrap_or_default();
    let settings = job.settings.identity(job.sink.kind());
    match out_store.is_done(output, &etag, &job.style.weights.sha256, &settings) {
        Ok(true) => return Ok(Staged::Done { output: output.to_string() }),
        Ok(false) => {}
        Err(e) => return Err(JobError::Store { code: PoisonCode::InvalidKey, source: e }),
    }
    if let Some(owner) = &env.owner {
        remove_stale_partials(out_store, owner, output);
    }
    let ext =
        Path::new(output.name()).extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let local_out = dir.path().join(format!("output.{ext}"));
    let mut to_cut = None;
    let (local_in, fps) = match (&job.source, listed) {
        (Source::StoredVideo { store, key }, _) => {
            // Local names are the job's own, never request text.
            let local = dir.path().join("input.media");
            store.download(key, &local).map_err(JobError::read)?;
            (local.display().to_string(), None)
        }
        (Source::StoredFrames { store, .. }, Some(l)) => {
            let cut = env
                .segments
                .as_ref()
                .is_some_and(|s| s.segment_secs > 0.0 && l.frames.len() as f64 > s.segment_secs * l.fps.as_f64());
            if cut {
                // Only the first frame, for the size: each segment job downloads its own.
                let first = dir.path().join(format!(
                    "first.{}",
                    Path::new(l.frames[0].name())
                        .extension()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ));
                store.download(&l.frames[0], &first).map_err(JobError::read)?;
                let still = crate::media::image::read_rgb_within(&first, Some(&env.limits.media))?;
                to_cut = Some(FramesToCut { frames: l.frames, fps: l.fps, size: (still.width, still.height) });
                (String::new(), Some(l.fps))
            } else {
                let local = download_frames(store, &l.frames, dir.path())?;
                (local.display().to_string(), Some(l.fps))
            }
        }
        _ => (String::new(), None),
    };
    let secs = t0.elapsed().as_secs_f64();
    Ok(Staged::Ready(Ready {
        local_in,
        local_out,
        fps,
        input_meta: Some(meta),
        dir: Some(dir),
        claim: Some(claim),
        to_cut,
        secs,
    }))
}

/// A frame prefix to cut into segments rather than download.
pub struct FramesToCut {
    pub frames: Vec<ObjectKey>,
    pub fps: Rate,
    pub size: (u32, u32),
}

/// The frames of a prefix as listed: their keys in name order, the prefix's identity (every
/// frame's key and ETag hashed, their total size) and their rate.
struct ListedFrames {
    frames: Vec<ObjectKey>,
    meta: Meta,
    fps: Rate,
}

fn no_room(what: &str, r: NoRoom) -> JobError {
    match r {
        NoRoom::Never(why) => JobError::refused(PoisonCode::OversizedInput, format!("{what}: {why}")),
        NoRoom::Now(why) => JobError::Disk(format!("{what}: {why}")),
    }
}

/// Lists the frames under `prefix`: their keys, the prefix's identity, and the frame rate (the
/// request's, else the prefix's `fps.txt`).
fn list_frames(store: &BlockingStore, prefix: &str, fps: Option<Rate>, env: &Env) -> Result<ListedFrames, JobError> {
    let frames = frames_under(store.list_with_meta(prefix).map_err(JobError::read)?, prefix);
    if frames.is_empty() {
        let url = match ObjectKey::parse(prefix.trim_end_matches('/')) {
            Ok(k) => store.store().url_of(&k),
            Err(e) => return Err(JobError::refused(PoisonCode::InvalidKey, e.to_string())),
        };
        return Err(JobError::refused(PoisonCode::MissingInput, format!("no PNG/JPEG frames under {url}")));
    }
    let max = env.limits.max_prefix_frames;
    if frames.len() > max {
        return Err(JobError::refused(
            PoisonCode::OversizedInput,
            format!("{prefix} holds {} frames, over the limit of {max}", frames.len()),
        ));
    }
    let total: u64 = frames.iter().map(|(_, m)| m.size).sum();
    staging::check_room(&env.work_dir, total, 1.0, env.limits.staging_margin_bytes).map_err(|r| match r {
        NoRoom::Never(why) | NoRoom::Now(why) => JobError::Disk(format!("{prefix}: {why}")),
    })?;
    let mut hasher = Sha256::new();
    let mut size = 0;
    for (k, meta) in &frames {
        hasher.update(k.as_str().as_bytes());
        hasher.update(meta.etag.clone().unwrap_or_default().as_bytes());
        size += meta.size;
    }
    let fps = match fps {
        Some(f) => Some(f),
        None => {
            let key = ObjectKey::parse(&format!("{prefix}{}", crate::media::sequence::FPS_SIDECAR))
                .map_err(|e| JobError::refused(PoisonCode::InvalidKey, e.to_string()))?;
            match store.get_bytes(&key, 64) {
                Ok(b) => Rate::parse(String::from_utf8_lossy(&b).trim()),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(JobError::read(e)),
            }
        }
    };
    let Some(fps) = fps else {
        let reason =
            format!("frames under {prefix} need a frame rate: an fps in the event or route, or {prefix}fps.txt");
        return Err(JobError::refused(PoisonCode::InvalidEvent, reason));
    };
    let meta = Meta { size, etag: Some(format!("frames-{:x}", hasher.finalize())), last_modified: chrono::Utc::now() };
    Ok(ListedFrames { frames: frames.into_iter().map(|(k, _)| k).collect(), meta, fps })
}

/// Downloads `frames` into `dir/frames/`, under their own names.
fn download_frames(store: &BlockingStore, frames: &[ObjectKey], dir: &Path) -> Result<PathBuf, JobError> {
    let local = dir.join("frames");
    std::fs::create_dir_all(&local).map_err(|e| JobError::Disk(e.to_string()))?;
    for k in frames {
        store.download(k, &local.join(k.name())).map_err(JobError::read)?;
    }
    Ok(local)
}

/// Upload temporaries of `output` that no live instance owns: a killed run's. Those of a live
/// instance (another replica uploading the same output) are left alone; temporaries without an
/// owner (older builds) go once they are an hour old.
pub fn remove_stale_partials(store: &BlockingStore, owner: &super::Owner, output: &ObjectKey) {
    let prefix = output.parent().map(|p| format!("{p}/")).unwrap_or_default();
    let Ok(found) = store.list_partials(&prefix) else { return };
    let mine = format!(".{}.", output.name());
    for (k, meta) in found.iter().filter(|(k, _)| k.name().starts_with(&mine)) {
        let stale = match owner::partial_owner(k.name()) {
            Some(id) if id == owner.instance_id => false,
            Some(id) => !owner::is_alive(&owner.system, id, owner.heartbeat),
            None => chrono::Utc::now().signed_duration_since(meta.last_modified) > chrono::Duration::hours(1),
        };
        if stale && store.delete(k).is_ok() {
            tracing::info!(object = %k, "removed a partial upload left by a stopped run");
        }
    }
}

/// An output being made by a job of this process; freed when dropped, however the job ends.
pub struct Claim<'a> {
    claims: &'a std::sync::Mutex<std::collections::BTreeSet<String>>,
    key: String,
}

impl<'a> Claim<'a> {
    /// Takes output `key` for this job; a second job for it is handed back to wait for the
    /// first (then it finds the output done).
    pub fn take(env: &'a Env, key: &str) -> Result<Self, JobError> {
        let fresh = env.claims.lock().map(|mut t| t.insert(key.to_string())).unwrap_or(false);
        if !fresh {
            return Err(JobError::Busy(format!("{key} is being made by another job")));
        }
        Ok(Claim { claims: &env.claims, key: key.to_string() })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.claims.lock() {
            t.remove(&self.key);
        }
    }
}
