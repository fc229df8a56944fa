//! A synchronous facade over [`Store`] for callers without an async runtime (CLI code, timely
//! workers): each call runs on the facade's own tokio runtime. Do not call it from inside a
//! tokio runtime (that panics); use [`Store`] there.

use std::path::Path as FsPath;

use super::{Manifest, Meta, ObjectKey, Store, StoreError, StoreOptions};

/// [`Store`] with blocking methods.
pub struct BlockingStore {
    /// Replaced by `reopen` while other threads may be using it.
    store: std::sync::RwLock<Store>,
    rt: tokio::runtime::Runtime,
}

impl BlockingStore {
    /// Opens `url` (see [`Store::open`]) with a small multi-threaded runtime of its own.
    pub fn open(url: &str, options: &StoreOptions) -> Result<BlockingStore, StoreError> {
        BlockingStore::new(Store::open(url, options)?)
    }

    pub fn new(store: Store) -> Result<BlockingStore, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-io")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Local {
                op: "start runtime",
                url: store.url().to_string(),
                path: ".".into(),
                source,
            })?;
        Ok(BlockingStore { store: std::sync::RwLock::new(store), rt })
    }

    /// The async store underneath (as it is now: `reopen` may replace it).
    pub fn store(&self) -> Store {
        match self.store.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-opens the store ([`Store::reopen`]): the credentials file is read again, so renewed
    /// credentials take effect. On error the store in use is kept.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let fresh = self.store().reopen()?;
        match self.store.write() {
            Ok(mut s) => *s = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    pub fn head(&self, key: &ObjectKey) -> Result<Option<Meta>, StoreError> {
        self.rt.block_on(self.store().head(key))
    }

    pub fn download(&self, key: &ObjectKey, local_path: &FsPath) -> Result<Meta, StoreError> {
        self.rt.block_on(self.store().download(key, local_path))
    }

    pub fn upload_atomic(&self, local_path: &FsPath, key: &ObjectKey) -> Result<Meta, StoreError> {
        self.rt.block_on(self.store().upload_atomic(local_path, key))
    }

    pub fn put_bytes_atomic(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.rt.block_on(self.store().put_bytes_atomic(key, bytes))
    }

    pub fn get_bytes(&self, key: &ObjectKey, max_len: u64) -> Result<Vec<u8>, StoreError> {
        self.rt.block_on(self.store().get_bytes(key, max_len))
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        self.rt.block_on(self.store().list(prefix))
    }

    pub fn list_with_meta(&self, prefix: &str) -> Result<Vec<(ObjectKey, Meta)>, StoreError> {
        self.rt.block_on(self.store().list_with_meta(prefix))
    }

    pub fn list_partials(&self, prefix: &str) -> Result<Vec<(ObjectKey, Meta)>, StoreError> {
        self.rt.block_on(self.store().list_partials(prefix))
    }

    pub fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        self.rt.block_on(self.store().delete(key))
    }

    pub fn write_manifest(&self, manifest: &Manifest) -> Result<ObjectKey, StoreError> {
        self.rt.block_on(self.store().write_manifest(manifest))
    }

    pub fn read_manifest(&self, output_key: &ObjectKey) -> Result<Option<Manifest>, StoreError> {
        self.rt.block_on(self.store().read_manifest(output_key))
    }

    pub fn is_done(
        &self,
        output_key: &ObjectKey,
        input_etag: &str,
        model_sha256: &str,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        self.rt.block_on(self.store().is_done(output_key, input_etag, model_sha256, settings))
    }
}
