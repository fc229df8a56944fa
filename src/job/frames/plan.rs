//! What a stored frames job finds and plans: the listings, the records of earlier runs, the
//! sequence manifest, and (frames × style) − done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::*;

/// What is there, and what is left to do.
pub(super) struct Plan {
    /// The input frames, in name order.
    pub(super) frames: Vec<Listed>,
    /// `None`: the sequence is complete.
    pub(super) todo: Option<Todo>,
}

pub(super) struct Todo {
    pub(super) planner: Planner,
    /// Frames whose content is known without a download (their ETag is the recorded one).
    pub(super) known: BTreeSet<String>,
    /// The records of earlier runs, by frame name.
    pub(super) records: BTreeMap<String, FrameRecord>,
    /// Frames to download and look at, in name order.
    pub(super) candidates: Vec<Listed>,
    pub(super) shared: Arc<Mutex<Shared>>,
}

impl Plan {
    /// Lists the input frames, the output frames, their records and the manifest; plans
    /// (frames × style) − done.
    pub(super) fn make(
        io: &Io,
        input: &Store,
        in_prefix: &str,
        output: &Store,
        out_prefix: &str,
        style_key: &str,
        max_frames: usize,
    ) -> Result<Plan, JobError> {
        let listed = io.blocking("list input", || input.list_with_meta(in_prefix)).map_err(JobError::read)?;
        let frames: Vec<Listed> = stage::frames_under(listed, in_prefix)
            .into_iter()
            .map(|(key, meta)| Listed { name: key.name().to_string(), key, meta })
            .collect();
        if frames.is_empty() {
            return Err(JobError::refused(
                PoisonCode::MissingInput,
                format!("no PNG/JPEG frames under {}", prefix_url(input, in_prefix)),
            ));
        }
        if frames.len() > max_frames {
            let reason = format!(
                "{} holds {} frames, over the limit of {max_frames}",
                prefix_url(input, in_prefix),
                frames.len()
            );
            return Err(JobError::refused(PoisonCode::OversizedInput, reason));
        }
        let listed_out = io.blocking("list output", || output.list_with_meta(out_prefix)).map_err(JobError::read)?;
        let records_prefix = format!("{out_prefix}{RECORDS}");
        let manifest_key = ObjectKey::parse(&format!("{out_prefix}{MANIFEST}")).map_err(JobError::write)?;
        let mut outputs: BTreeMap<String, Meta> = BTreeMap::new();
        let mut record_names = BTreeSet::new();
        let mut manifest_listed = false;
        for (k, meta) in listed_out {
            if k == manifest_key {
                manifest_listed = true;
            } else if let Some(name) = k.as_str().strip_prefix(&records_prefix).and_then(|n| n.strip_suffix(".json")) {
                record_names.insert(name.to_string());
            } else if k.parent().map(|p| format!("{p}/")).unwrap_or_default() == out_prefix {
                outputs.insert(k.name().to_string(), meta);
            }
        }

        // A complete sequence: the manifest says so, and the listings agree.
        if manifest_listed {
            let manifest = io
                .blocking("read manifest", || output.get_bytes(&manifest_key, MAX_MANIFEST_BYTES))
                .map_err(JobError::read)?;
            if let Ok(m) = serde_json::from_slice::<SequenceManifest>(&manifest) {
                if is_complete(&m, style_key, &frames, &outputs)
                    && record_names.iter().all(|n| frames.iter().any(|f| &f.name == n))
                {
                    return Ok(Plan { frames, todo: None });
                }
            }
        }

        // The records of earlier runs, `IN_FLIGHT` reads at a time (an unreadable one counts as
        // absent: its frame is made again).
        let mut records: BTreeMap<String, FrameRecord> = BTreeMap::new();
        let keys = record_names
            .iter()
            .map(|n| record_key(out_prefix, n).map(|k| (n.clone(), k)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(JobError::read)?;
        let read = io.rt.block_on(async {
            use futures::StreamExt;
            futures::stream::iter(keys)
                .map(|(name, key)| {
                    let (store, io) = (output.clone(), io.clone());
                    async move {
                        let got = io.retrying("read record", || store.get_bytes(&key, MAX_RECORD_BYTES)).await;
                        (name, key, got)
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        });
        for (name, key, bytes) in read {
            match bytes.map(|b| serde_json::from_slice::<FrameRecord>(&b)) {
                Ok(Ok(r)) if r.name == name => {
                    records.insert(name, r);
                }
                Ok(_) => tracing::warn!(record = %output.url_of(&key), "ignoring an unreadable frame record"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(JobError::read(e)),
            }
        }

        // The plan: frames × style − done. Done = a record made with this style whose output
        // is there, of the size recorded.
        let mut planner = Planner::new();
        planner.style("style", style_key);
        for (name, r) in &records {
            if r.style_key == style_key && outputs.get(name).is_some_and(|m| m.size == r.output_size) {
                planner.done(&identity(name, &r.input_sha256), style_key);
            }
        }
        // Frames whose ETag and size are the recorded ones: content known without a download.
        let mut known = BTreeSet::new();
        for f in &frames {
            if let Some(r) = records.get(&f.name) {
                if r.input_etag.is_some() && r.input_etag == f.meta.etag && r.input_size == f.meta.size {
                    planner.video(&f.name, &identity(&f.name, &r.input_sha256));
                    known.insert(f.name.clone());
                }
            }
        }
        let work: BTreeSet<String> = planner.plan().into_iter().map(|w| w.video).collect();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut candidates = Vec::new();
        for f in &frames {
            if known.contains(&f.name) && !work.contains(&f.name) {
                push_entry(&shared, &f.name, Action::Skipped, "unchanged");
            } else {
                candidates.push(f.clone());
            }
        }
        Ok(Plan { frames, todo: Some(Todo { planner, known, records, candidates, shared }) })
    }
}

pub(super) fn prefix_url(store: &Store, prefix: &str) -> String {
    match ObjectKey::parse(prefix.trim_end_matches('/')) {
        Ok(k) => format!("{}/", store.url_of(&k)),
        Err(_) => store.url().to_string(),
    }
}

pub(super) fn record_key(out_prefix: &str, name: &str) -> Result<ObjectKey, StoreError> {
    ObjectKey::parse(&format!("{out_prefix}{RECORDS}{name}.json"))
}

pub(super) fn style_key(model_sha256: &str, settings: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(model_sha256.as_bytes());
    for (k, v) in settings {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    format!("{:x}", h.finalize())
}

/// Whether `m` describes exactly these inputs (by ETag and size), made with this style, with
/// every output there at its recorded size.
pub(super) fn is_complete(
    m: &SequenceManifest,
    style_key: &str,
    frames: &[Listed],
    outputs: &BTreeMap<String, Meta>,
) -> bool {
    m.schema == SEQUENCE_SCHEMA
        && m.style_key == style_key
        && m.frames.len() == frames.len()
        && m.frames.iter().zip(frames).all(|(r, f)| {
            r.name == f.name
                && r.input_etag.is_some()
                && r.input_etag == f.meta.etag
                && r.input_size == f.meta.size
                && outputs.get(&r.name).is_some_and(|o| o.size == r.output_size)
        })
}
