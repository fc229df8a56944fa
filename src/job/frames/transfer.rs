//! A stored frames job's transfers: store requests retried on passing trouble, downloads ahead
//! of the GPU, the reader that decides which frames still need styling, and the sink that
//! uploads each styled frame with its record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// Store requests of one frames job: on its runtime, retried on passing trouble.
#[derive(Clone)]
pub(super) struct Io {
    pub(super) rt: Arc<tokio::runtime::Runtime>,
    /// Pause before the first retry of a request (doubles, up to 8 s).
    pub(super) backoff: Duration,
    pub(super) stop: StopToken,
}

impl Io {
    /// Runs the request `f` makes until it succeeds, fails for good, or has failed `ATTEMPTS`
    /// times in passing ways.
    pub(super) async fn retrying<T, F: std::future::Future<Output = Result<T, StoreError>>>(
        &self,
        what: &str,
        mut f: impl FnMut() -> F,
    ) -> Result<T, StoreError> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS && self.stop.reason().is_none() => {
                    tracing::warn!(what, attempt, error = %e, "store request failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// One store request made from a plain thread: retried as [`Io::retrying`] says.
    pub(super) fn blocking<T, F: std::future::Future<Output = Result<T, StoreError>>>(
        &self,
        what: &str,
        f: impl FnMut() -> F,
    ) -> Result<T, StoreError> {
        self.rt.block_on(self.retrying(what, f))
    }
}

/// Downloads the candidates in order, `IN_FLIGHT` at a time, ahead of the reader (memory: at
/// most `2 × IN_FLIGHT` frames' bytes waiting).
pub(super) fn prefetch(
    rt: &tokio::runtime::Runtime,
    store: Store,
    todo: Vec<Listed>,
    io: Io,
) -> tokio::sync::mpsc::Receiver<(Listed, Result<Vec<u8>, StoreError>)> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    rt.spawn(async move {
        let mut downloads = futures::stream::iter(todo)
            .map(|f| {
                let (store, io) = (store.clone(), io.clone());
                async move {
                    let got = io.retrying("read frame", || store.get_bytes(&f.key, MAX_FRAME_BYTES)).await;
                    (f, got)
                }
            })
            .buffered(IN_FLIGHT);
        while let Some(item) = downloads.next().await {
            if tx.send(item).await.is_err() {
                break; // the reader is gone
            }
        }
    });
    rx
}

/// Downloads candidates in order and hands on those still wanted, numbered 0, 1, 2, ...
pub(super) struct Reader {
    pub(super) downloads: tokio::sync::mpsc::Receiver<(Listed, Result<Vec<u8>, StoreError>)>,
    pub(super) io: Io,
    pub(super) output: Store,
    pub(super) out_prefix: String,
    pub(super) planner: Planner,
    pub(super) known: BTreeSet<String>,
    pub(super) records: Arc<BTreeMap<String, FrameRecord>>,
    /// Stored frames are hostile: their headers are checked against these before decoding.
    pub(super) limits: MediaLimits,
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) next_index: u64,
}

impl Reader {
    pub(super) fn next(&mut self) -> Result<Option<Frame>, JobError> {
        while let Some((f, got)) = self.downloads.blocking_recv() {
            if let Some(why) = self.io.stop.reason() {
                return Err(PipelineError::Stopped(why).into());
            }
            let bytes = got.map_err(JobError::read)?;
            let sha = sha256_hex(&bytes);
            if !self.known.contains(&f.name) {
                // Content now known: is this (frame, style) pair still work?
                self.planner.video(&f.name, &identity(&f.name, &sha));
                let wanted = self.planner.plan().iter().any(|w| w.video == f.name);
                if !wanted {
                    // Same bytes under a new ETag: keep the output, remember the ETag.
                    if let Some(r) = self.records.get(&f.name) {
                        let fresh =
                            FrameRecord { input_etag: f.meta.etag.clone(), input_size: f.meta.size, ..r.clone() };
                        self.write_record(&fresh)?;
                        if let Ok(mut s) = self.shared.lock() {
                            s.made.insert(f.name.clone(), fresh);
                        }
                    }
                    push_entry(&self.shared, &f.name, Action::Skipped, "same content");
                    continue;
                }
            }
            let still = decode_still(&bytes, Path::new(&f.name), Some(&self.limits))?;
            let index = self.next_index;
            self.next_index += 1;
            if let Ok(mut s) = self.shared.lock() {
                s.pending.insert(
                    index,
                    Pending { name: f.name.clone(), sha256: sha, meta: f.meta.clone(), form: still.form },
                );
            }
            return Ok(Some(Frame {
                index,
                pts: index as i64,
                duration: 1,
                image: still.rgb,
                timing: Default::default(),
            }));
        }
        Ok(None)
    }

    fn write_record(&self, r: &FrameRecord) -> Result<(), JobError> {
        let key = record_key(&self.out_prefix, &r.name).map_err(JobError::write)?;
        let bytes = serde_json::to_vec(r).map_err(|e| JobError::Other(e.to_string()))?;
        self.io
            .blocking("write record", || self.output.put_bytes_atomic(&key, bytes.clone()))
            .map_err(JobError::write)?;
        Ok(())
    }
}

pub(super) enum Feed {
    Frame(Frame),
    End,
    Failed(String),
}

/// The engine's view of the reader: frames from a channel.
pub(super) struct ChannelSource {
    pub(super) info: SourceInfo,
    pub(super) rx: Receiver<Feed>,
    pub(super) first: Option<Frame>,
}

impl FrameSource for ChannelSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, MediaError> {
        if let Some(f) = self.first.take() {
            return Ok(Some(f));
        }
        let failed = |reason: String| MediaError::Decode { path: "stored frames".into(), reason };
        match self.rx.recv() {
            Ok(Feed::Frame(f)) => Ok(Some(f)),
            Ok(Feed::End) => Ok(None),
            Ok(Feed::Failed(reason)) => Err(failed(reason)),
            Err(_) => Err(failed("the frame reader stopped".into())),
        }
    }
}

/// Writes each styled frame like its input, then its record: encoded on the engine's encoder
/// thread, uploaded by tasks on the job's runtime, `IN_FLIGHT` frames at a time (the frame's
/// record is written by the same task, right after the frame).
pub(super) struct StoreSink {
    pub(super) io: Io,
    pub(super) store: Store,
    pub(super) uploads: Vec<tokio::task::JoinHandle<()>>,
    /// Uploads in flight: a frame waits for a slot before its upload starts.
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    pub(super) out_prefix: String,
    pub(super) style_key: String,
    pub(super) jpeg_quality: u8,
    pub(super) shared: Arc<Mutex<Shared>>,
}

impl StoreSink {
    /// The first upload failure, if any (it fails the job).
    fn failed(&self) -> Option<String> {
        self.shared.lock().ok().and_then(|s| s.failure.as_ref().map(|e| e.to_string()))
    }

    fn commit(&mut self, frame: &Frame) -> Result<(), JobError> {
        let pending = self.shared.lock().ok().and_then(|mut s| s.pending.remove(&frame.index));
        let Some(p) = pending else {
            return Err(JobError::Other(format!("styled frame {} has no input on record", frame.index)));
        };
        let styled = RgbFrame::new(frame.image.width, frame.image.height, frame.image.data.clone());
        let bytes = encode_still(&styled, &p.form, self.jpeg_quality)
            .map_err(|e| JobError::Other(format!("{}: {e}", p.name)))?;
        let key = ObjectKey::parse(&format!("{}{}", self.out_prefix, p.name)).map_err(JobError::write)?;
        let rk = record_key(&self.out_prefix, &p.name).map_err(JobError::write)?;
        let record = FrameRecord {
            schema: FRAME_SCHEMA.into(),
            name: p.name.clone(),
            input_sha256: p.sha256,
            input_etag: p.meta.etag,
            input_size: p.meta.size,
            style_key: self.style_key.clone(),
            output_sha256: sha256_hex(&bytes),
            output_size: bytes.len() as u64,
        };
        let json = serde_json::to_vec(&record).map_err(|e| JobError::Other(e.to_string()))?;
        // Bounded: wait (on this thread, outside the runtime) for a free upload slot.
        let permit =
            self.io.rt.block_on(self.slots.clone().acquire_owned()).map_err(|e| JobError::Other(e.to_string()))?;
        let (store, shared, io) = (self.store.clone(), self.shared.clone(), self.io.clone());
        self.uploads.retain(|h| !h.is_finished());
        self.uploads.push(self.io.rt.spawn(async move {
            let _permit = permit;
            let put = |k: ObjectKey, b: Vec<u8>| {
                let store = store.clone();
                async move { store.put_bytes_atomic(&k, b).await }
            };
            let mut done = io.retrying("write frame", || put(key.clone(), bytes.clone())).await;
            if done.is_ok() {
                done = io.retrying("write record", || put(rk.clone(), json.clone())).await;
            }
            if let Ok(mut s) = shared.lock() {
                match done {
                    Ok(()) => {
                        s.entries.push(FrameEntry {
                            name: p.name.clone(),
                            action: Action::Styled,
                            why: "new or changed",
                        });
                        s.made.insert(p.name, record);
                    }
                    Err(e) => {
                        s.failure.get_or_insert(JobError::write(e));
                    }
                }
            }
        }));
        Ok(())
    }
}

impl FrameSink for StoreSink {
    fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let write_err = |reason: String| MediaError::Write { path: "stored frames".into(), reason };
        if let Some(text) = self.failed() {
            return Err(write_err(text));
        }
        self.commit(frame).map_err(|e| {
            let text = e.to_string();
            if let Ok(mut s) = self.shared.lock() {
                s.failure.get_or_insert(e);
            }
            write_err(text)
        })
    }

    /// Waits for the uploads still in flight; fails if any failed.
    fn finish(mut self: Box<Self>) -> Result<(), MediaError> {
        let uploads = std::mem::take(&mut self.uploads);
        self.io.rt.block_on(async {
            for h in uploads {
                let _ = h.await;
            }
        });
        match self.failed() {
            Some(text) => Err(MediaError::Write { path: "stored frames".into(), reason: text }),
            None => Ok(()),
        }
    }
}
