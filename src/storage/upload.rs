//! Streamed, atomic uploads: parts go to a temporary key beside the final one
//! (`<dir>/.<name>.<random>.partial`) through a multipart upload; only a complete upload is
//! renamed (local) or copied and deleted (Azure, S3; a multipart copy on S3 above
//! `multipart_copy_threshold_bytes`) to the final key.

use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};

use super::key::{ObjectKey, PARTIAL_SUFFIX};
use super::{Meta, Store, StoreError};

/// An upload in progress. Nothing is visible under the final key until [`Upload::commit`]
/// returns. Dropped or [`aborted`](Upload::abort) before that, the multipart upload is
/// aborted: on the local store its staging file is removed; on Azure and S3 uncommitted
/// parts are invisible to readers and listings. What a crash leaves behind: Azure discards
/// uncommitted blocks after 7 days; S3 keeps (and bills) the parts of a multipart upload that
/// was never completed or aborted until a bucket lifecycle rule `AbortIncompleteMultipartUpload`
/// removes them.
pub struct Upload {
    store: Store,
    key: ObjectKey,
    temp: ObjectKey,
    temp_path: Path,
    writer: Option<WriteMultipart>,
    written: u64,
}

impl Upload {
    pub(crate) async fn begin(store: Store, key: ObjectKey) -> Result<Upload, StoreError> {
        let owner = store
            .options()
            .owner
            .as_deref()
            .filter(|o| !o.is_empty() && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let temp_name = match owner {
            Some(o) => format!(".{}.{:016x}~{o}{PARTIAL_SUFFIX}", key.name(), fastrand::u64(..)),
            None => format!(".{}.{:016x}{PARTIAL_SUFFIX}", key.name(), fastrand::u64(..)),
        };
        let temp = match key.parent() {
            Some(dir) => ObjectKey::parse_internal(&format!("{dir}/{temp_name}"))?,
            None => ObjectKey::parse_internal(&temp_name)?,
        };
        let temp_path = store.path(&temp)?;
        let multipart = store
            .inner()
            .put_multipart(&temp_path)
            .await
            .map_err(|e| StoreError::backend("upload", store.url_of(&temp), e))?;
        let writer = WriteMultipart::new_with_chunk_size(multipart, store.options().part_size_bytes.max(1));
        Ok(Upload { store, key, temp, temp_path, writer: Some(writer), written: 0 })
    }

    /// The final key.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// The temporary key the parts go to.
    pub fn temp_key(&self) -> &ObjectKey {
        &self.temp
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data`; waits while `max_parts_in_flight` parts are being sent, so memory stays
    /// bounded whatever the object's size.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let max = self.store.options().max_parts_in_flight.max(1);
        let url = self.store.url_of(&self.temp);
        let Some(writer) = self.writer.as_mut() else {
            return Err(StoreError::InvalidKey {
                key: self.temp.to_string(),
                reason: "upload already finished".into(),
            });
        };
        writer.wait_for_capacity(max).await.map_err(|e| StoreError::backend("upload", url, e))?;
        writer.write(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Completes the multipart upload of the temporary key, moves it to the final key and
    /// returns the final object's metadata. On error the temporary is removed (best effort)
    /// and the final key is as it was.
    pub async fn commit(mut self) -> Result<Meta, StoreError> {
        let url = self.store.url_of(&self.temp);
        let Some(writer) = self.writer.take() else {
            return Err(StoreError::InvalidKey {
                key: self.temp.to_string(),
                reason: "upload already finished".into(),
            });
        };
        // `finish` aborts the multipart upload itself when a part or the completion fails.
        writer.finish().await.map_err(|e| StoreError::backend("upload", url, e))?;
        if let Err(e) = self.store.rename(&self.temp, &self.key, self.written).await {
            self.remove_temp().await;
            return Err(e);
        }
        let final_url = self.store.url_of(&self.key);
        match self.store.head(&self.key).await? {
            Some(meta) if meta.size == self.written => Ok(meta),
            Some(meta) => {
                Err(StoreError::Incomplete { op: "upload", url: final_url, expected: self.written, got: meta.size })
            }
            None => Err(StoreError::NotFound { op: "upload (after rename)", url: final_url }),
        }
    }

    /// Gives the upload up: aborts the multipart upload and removes the temporary key if it
    /// was created. Errors are logged, not returned: there is nothing under the final key
    /// either way.
    pub async fn abort(mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.abort().await {
                tracing::warn!(url = %self.store.url_of(&self.temp), error = %e, "aborting an upload failed");
            }
        }
        self.remove_temp().await;
    }

    async fn remove_temp(&self) {
        match self.store.inner().delete(&self.temp_path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(url = %self.store.url_of(&self.temp), error = %e, "removing an upload temporary failed")
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Abort in the background when a runtime is there; without one, the writer's own
            // drop removes the local staging file and remote parts expire.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let url = self.store.url_of(&self.temp);
                rt.spawn(async move {
                    if let Err(e) = writer.abort().await {
                        tracing::warn!(url = %url, error = %e, "aborting a dropped upload failed");
                    }
                });
            }
        }
    }
}
