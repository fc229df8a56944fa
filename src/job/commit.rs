//! Committing a job's output once every frame is written: a stored output is uploaded to a
//! temporary key and moved to its final one, and then — only then — its manifest is written,
//! which is what marks the job done. A local output was published by its sink's rename; with a
//! manifest asked for, `<output>.manifest.json` follows it.

use std::path::Path;

use super::stage::Ready;
use super::{Job, JobError, Sink, Source};
use crate::media::MediaError;
use crate::storage::{Manifest, Meta, ObjectKey, StoreError, MANIFEST_SCHEMA, MANIFEST_SUFFIX};

/// Commits the output of `job`, made of `frames` frames from the staged `ready`.
pub fn commit(job: &Job, ready: &Ready, frames: u64) -> Result<(), JobError> {
    match &job.sink {
        Sink::StoredVideo { store, key } => {
            let out_meta = store.upload_atomic(&ready.local_out, key).map_err(JobError::write)?;
            let input = input_key(&job.source).map_err(JobError::write)?;
            let in_meta = ready.input_meta.clone().unwrap_or_else(|| Meta {
                size: 0,
                etag: None,
                last_modified: chrono::Utc::now(),
            });
            let manifest = Manifest::new(
                &input,
                &in_meta,
                &job.style.weights.sha256,
                &job.settings.network,
                frames,
                key,
                &out_meta,
            )
            .with_settings(job.settings.identity(job.sink.kind()));
            store.write_manifest(&manifest).map_err(JobError::write)?;
            Ok(())
        }
        Sink::Local { path, manifest: true } => write_local_manifest(job, path, frames),
        Sink::Local { .. } => Ok(()),
        Sink::StoredFrames { .. } | Sink::Segment { .. } => {
            Err(JobError::Usage("stored frames and segments commit themselves".into()))
        }
    }
}

/// The key a manifest records as the input: the object, or the frames' prefix.
fn input_key(source: &Source) -> Result<ObjectKey, StoreError> {
    match source {
        Source::StoredVideo { key, .. } => Ok(key.clone()),
        other => ObjectKey::parse(other.name().trim_end_matches('/')),
    }
}

/// `<output>.manifest.json`, the store's manifest name.
pub fn local_manifest_path(output: &Path) -> std::path::PathBuf {
    let mut name = output.as_os_str().to_os_string();
    name.push(MANIFEST_SUFFIX);
    std::path::PathBuf::from(name)
}

/// The store's manifest, for a local output: the input's content hash stands as its ETag.
fn write_local_manifest(job: &Job, output: &Path, frames: u64) -> Result<(), JobError> {
    let Source::Local { path: input, sha256, .. } = &job.source else {
        return Err(JobError::Usage(format!("{}: a local manifest records a local input", output.display())));
    };
    let path = local_manifest_path(output);
    let write_err = |reason: String| JobError::Media(MediaError::Write { path: path.clone(), reason });
    let output_size = std::fs::metadata(output).map_err(|e| write_err(e.to_string()))?.len();
    let input_size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        input_key: input.clone(),
        input_etag: sha256.clone().unwrap_or_default(),
        input_size,
        model_sha256: job.style.weights.sha256.clone(),
        network: job.settings.network.clone(),
        frames,
        output_key: output.display().to_string(),
        output_size,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        stylestream_version: env!("CARGO_PKG_VERSION").to_string(),
        settings: job.settings.identity(job.sink.kind()),
    };
    crate::media::write_atomic(&path, &manifest.to_json()).map_err(|e| write_err(e.to_string()))
}
