//! Object storage for the service: one `Store` over a local directory, an Azure Blob container
//! (or Azurite) or an S3 bucket, rooted at a prefix that no key can leave; streamed downloads
//! and atomic, streamed uploads; job manifests. Imports no other stylestream module.

mod blocking;
mod error;
mod key;
mod manifest;
mod open;
pub mod owner;
mod s3_copy;
mod upload;

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

pub use blocking::BlockingStore;
pub use error::StoreError;
pub use key::{ObjectKey, MAX_KEY_BYTES};
pub use manifest::{Manifest, MANIFEST_SCHEMA, MANIFEST_SUFFIX};
pub use open::Backend;
pub use upload::Upload;

/// Tuning of a store: retries (object_store's own, with exponential backoff), multipart
/// uploads and copies. An upload holds at most `part_size_bytes × (max_parts_in_flight + 1)` in
/// memory.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreOptions {
    /// Retries of one request on connection errors, timeouts, 5xx and 429.
    pub max_retries: usize,
    /// Give up retrying a request after this long.
    pub retry_timeout_secs: u64,
    /// First backoff; it doubles on every retry...
    pub initial_backoff_ms: u64,
    /// ... up to this.
    pub max_backoff_ms: u64,
    /// Size of an upload part (S3 needs at least 5 MiB except for the last).
    pub part_size_bytes: usize,
    /// Parts uploaded (or, on S3, copied) concurrently.
    pub max_parts_in_flight: usize,
    /// S3 only: an upload larger than this is committed (moved from its temporary key to the
    /// final one) by a multipart copy instead of one CopyObject, which S3 refuses above 5 GiB.
    /// The default stays under 5 GB with a margin.
    pub multipart_copy_threshold_bytes: u64,
    /// S3 only: size of a part of a multipart copy (5 MiB to 5 GiB; grown when an object would
    /// need more than 10,000 parts).
    pub multipart_copy_part_size_bytes: u64,
    /// Optional `KEY=VALUE` file (AZURE_STORAGE_*, AWS_*), read at open and by
    /// [`Store::reopen`]; its values override the environment's.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Who writes (a service instance id, `A-Z a-z 0-9 -`): upload temporaries are named
    /// `.<name>.<random>~<owner>.partial`, so a clean-up can tell a live owner's from a dead
    /// one's. Set by the program, never from configuration.
    #[serde(skip)]
    pub owner: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_retries: 5,
            retry_timeout_secs: 120,
            initial_backoff_ms: 100,
            max_backoff_ms: 15_000,
            part_size_bytes: 8 << 20,
            max_parts_in_flight: 4,
            multipart_copy_threshold_bytes: 4608 << 20, // 4.5 GiB
            multipart_copy_part_size_bytes: 512 << 20,
            credentials_file: None,
            owner: None,
        }
    }
}

/// What a store says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    /// Changes whenever the object's content is replaced (quoted on Azure and S3).
    pub etag: Option<String>,
    pub last_modified: DateTime<Utc>,
}

impl From<&ObjectMeta> for Meta {
    fn from(m: &ObjectMeta) -> Self {
        Meta { size: m.size, etag: m.e_tag.clone(), last_modified: m.last_modified }
    }
}

/// An object store rooted at a prefix. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    backend: Backend,
    prefix: Option<Path>,
    url: String,
    options: StoreOptions,
    /// S3 only: what a multipart copy needs.
    s3_copier: Option<s3_copy::S3Copier>,
    /// The configuration variables given at open (the credentials file's excluded), kept for
    /// [`Store::reopen`].
    vars: Arc<Vec<(String, String)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

impl Store {
    /// Opens `url`: `file:///abs/dir` or a plain path (a local directory, created if missing),
    /// `az://container/prefix` or `azure://container/prefix` (credentials from `AZURE_*`
    /// variables as `MicrosoftAzureBuilder::from_env` reads them; Azurite with
    /// `AZURE_STORAGE_USE_EMULATOR=true`), `s3://bucket/prefix` (`AWS_*` variables as
    /// `AmazonS3Builder::from_env` reads them). URLs carrying credentials (user info, query
    /// strings such as SAS tokens) are refused. Opening makes no request.
    pub fn open(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Store::open_with_vars(url, options, vars)
    }

    /// Like [`Store::open`], with the configuration variables given instead of read from the
    /// environment (the credentials file, if any, still overrides them). Never pass values
    /// taken from events.
    pub fn open_with_vars(
        url: &str,
        options: &StoreOptions,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Store, StoreError> {
        let given: Vec<(String, String)> = vars.into_iter().filter(|(k, _)| open::is_store_variable(k)).collect();
        let mut vars = given.clone();
        if let Some(file) = &options.credentials_file {
            vars.extend(open::read_credentials_file(file)?);
        }
        let o = open::open(url, options, &vars)?;
        Ok(Store {
            inner: o.inner,
            backend: o.backend,
            prefix: o.prefix,
            url: o.url,
            options: options.clone(),
            s3_copier: o.s3_copier,
            vars: Arc::new(given),
        })
    }

    /// Opens this store again with the same URL, options and variables, reading
    /// `credentials_file` anew: for credentials that were rotated (a renewed SAS token, new
    /// keys) after [`StoreError::is_auth_failure`]. Makes no request; the old store keeps
    /// working with the old credentials until dropped.
    pub fn reopen(&self) -> Result<Store, StoreError> {
        Store::open_with_vars(&self.url, &self.options, self.vars.iter().cloned())
    }

    /// The store's URL (`az://container/prefix`, `file:///dir`), without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL of `key`, as errors and logs name it.
    pub fn url_of(&self, key: &ObjectKey) -> String {
        format!("{}/{}", self.url, key)
    }

    pub(crate) fn path(&self, key: &ObjectKey) -> Result<Path, StoreError> {
        let full = match &self.prefix {
            Some(p) => format!("{p}/{key}"),
            None => key.to_string(),
        };
        Path::parse(&full).map_err(|e| StoreError::InvalidKey { key: key.to_string(), reason: e.to_string() })
    }

    /// The key of a listed object, relative to the root prefix (`None` for names that are not
    /// valid keys, written by other tools).
    fn key_of(&self, path: &Path) -> Option<ObjectKey> {
        let text = path.as_ref();
        let rel = match &self.prefix {
            Some(p) => text.strip_prefix(p.as_ref())?.strip_prefix('/')?,
            None => text,
        };
        ObjectKey::parse_internal(rel).ok()
    }

    /// Size, ETag and modification time of `key`, or `None` if there is no such object.
    pub async fn head(&self, key: &ObjectKey) -> Result<Option<Meta>, StoreError> {
        match self.inner.head(&self.path(key)?).await {
            Ok(m) => Ok(Some(Meta::from(&m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StoreError::backend("head", self.url_of(key), e)),
        }
    }

    /// Streams `key` into a temporary file beside `local_path` (chunk by chunk: memory stays
    /// flat), checks its length, syncs it and renames it to `local_path`. On any error nothing
    /// is left under `local_path` (an existing file there is untouched) and the temporary is
    /// removed. Returns the metadata of the object that was read (its ETag identifies the
    /// version downloaded).
    pub async fn download(&self, key: &ObjectKey, local_path: &FsPath) -> Result<Meta, StoreError> {
        let url = self.url_of(key);
        let local = |path: &FsPath, source| StoreError::Local {
            op: "download",
            url: url.clone(),
            path: path.to_path_buf(),
            source,
        };
        let dir = match local_path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = local_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let got =
            self.inner.get(&self.path(key)?).await.map_err(|e| StoreError::backend("download", url.clone(), e))?;
        let meta = Meta::from(&got.meta);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| local(&dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(key::PARTIAL_SUFFIX)
            .tempfile_in(&dir)
            .map_err(|e| local(&dir, e))?;
        let (file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut stream = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StoreError::backend("download", url.clone(), e))?;
            file.write_all(&chunk).await.map_err(|e| local(&tmp_path, e))?;
            written += chunk.len() as u64;
        }
        if written != meta.size {
            return Err(StoreError::Incomplete { op: "download", url, expected: meta.size, got: written });
        }
        file.flush().await.map_err(|e| local(&tmp_path, e))?;
        file.sync_all().await.map_err(|e| local(&tmp_path, e))?;
        drop(file);
        tmp_path.persist(local_path).map_err(|e| local(local_path, e.error))?;
        Ok(meta)
    }

    /// Starts a streamed upload to `key` (see [`Upload`]): data goes to a temporary key
    /// `<dir>/.<name>.<random>.partial` and appears under `key` only on
    /// [`Upload::commit`].
    pub async fn begin_upload(&self, key: &ObjectKey) -> Result<Upload, StoreError> {
        Upload::begin(self.clone(), key.clone()).await
    }

    /// Uploads the local file at `local_path` to `key`, streamed in parts of
    /// `part_size_bytes`, through a temporary key: readers see either no object / the old one
    /// under `key`, or the complete new one. Returns the new object's metadata.
    pub async fn upload_atomic(&self, local_path: &FsPath, key: &ObjectKey) -> Result<Meta, StoreError> {
        let url = self.url_of(key);
        let local =
            |source| StoreError::Local { op: "upload", url: url.clone(), path: local_path.to_path_buf(), source };
        let mut file = tokio::fs::File::open(local_path).await.map_err(local)?;
        let expected = file.metadata().await.map_err(local)?.len();
        let mut upload = self.begin_upload(key).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    upload.abort().await;
                    return Err(local(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = upload.write(&buf[..n]).await {
                upload.abort().await;
                return Err(e);
            }
        }
        if upload.written() != expected {
            let got = upload.written();
            upload.abort().await;
            return Err(StoreError::Incomplete { op: "upload", url, expected, got });
        }
        upload.commit().await
    }

    /// Writes a small object (manifests, logs) in one request, which is atomic on every backend:
    /// the local store writes a staging file and renames it, Azure's Put Blob and S3's
    /// PutObject commit all or nothing.
    pub async fn put_bytes_atomic(&self, key: &ObjectKey, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        let bytes: Bytes = bytes.into();
        self.inner
            .put(&self.path(key)?, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| StoreError::backend("put", self.url_of(key), e))
    }

    /// Reads a whole object of at most `max_len` bytes; a larger one is refused before its
    /// content is read.
    pub async fn get_bytes(&self, key: &ObjectKey, max_len: u64) -> Result<Vec<u8>, StoreError> {
        let url = self.url_of(key);
        let got = self.inner.get(&self.path(key)?).await.map_err(|e| StoreError::backend("get", url.clone(), e))?;
        let size = got.meta.size;
        if size > max_len {
            return Err(StoreError::TooLarge { url, size, max: max_len });
        }
        let mut out = Vec::with_capacity(size as usize);
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StoreError::backend("get", url.clone(), e))?;
            if out.len() as u64 + chunk.len() as u64 > max_len {
                return Err(StoreError::TooLarge { url, size: out.len() as u64 + chunk.len() as u64, max: max_len });
            }
            out.extend_from_slice(&chunk);
        }
        if out.len() as u64 != size {
            return Err(StoreError::Incomplete { op: "get", url, expected: size, got: out.len() as u64 });
        }
        Ok(out)
    }

    /// Keys under `prefix` (a key prefix ending at a segment boundary: `out` lists `out/...`;
    /// `""` lists the whole store), sorted, upload temporaries left out.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let mut keys: Vec<ObjectKey> =
            self.list_meta(prefix).await?.into_iter().map(|(k, _)| k).filter(|k| !k.is_partial()).collect();
        keys.sort();
        Ok(keys)
    }

    /// As [`Store::list`], with each object's metadata (size, etag), sorted by key.
    pub async fn list_with_meta(&self, prefix: &str) -> Result<Vec<(ObjectKey, Meta)>, StoreError> {
        let mut found: Vec<(ObjectKey, Meta)> =
            self.list_meta(prefix).await?.into_iter().filter(|(k, _)| !k.is_partial()).collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Upload temporaries under `prefix` with their metadata, oldest first, for cleaning up
    /// after crashed uploads (`delete` them when older than any upload could take).
    pub async fn list_partials(&self, prefix: &str) -> Result<Vec<(ObjectKey, Meta)>, StoreError> {
        let mut found: Vec<(ObjectKey, Meta)> =
            self.list_meta(prefix).await?.into_iter().filter(|(k, _)| k.is_partial()).collect();
        found.sort_by_key(|(_, m)| m.last_modified);
        Ok(found)
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<(ObjectKey, Meta)>, StoreError> {
        let (path, url) = if prefix.is_empty() {
            (self.prefix.clone(), self.url.clone())
        } else {
            let key = ObjectKey::parse(prefix.trim_end_matches('/'))?;
            (Some(self.path(&key)?), self.url_of(&key))
        };
        let mut stream = self.inner.list(path.as_ref());
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let m = item.map_err(|e| StoreError::backend("list", url.clone(), e))?;
            match self.key_of(&m.location) {
                Some(k) => out.push((k, Meta::from(&m))),
                None => {
                    tracing::warn!(url = %url, name = %m.location, "skipping an object whose name is not a valid key")
                }
            }
        }
        Ok(out)
    }

    /// Deletes `key`; `Ok(false)` if the store reported no such object (S3 never does).
    pub async fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        match self.inner.delete(&self.path(key)?).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StoreError::backend("delete", self.url_of(key), e)),
        }
    }

    /// Moves `from` (`size` bytes) to `to`, replacing it: a rename on the local store, copy +
    /// delete on Azure and S3. On S3 an object over `multipart_copy_threshold_bytes` is copied
    /// with a multipart copy (one CopyObject stops at 5 GiB); it appears under `to` whole, at
    /// the copy's completion. Once the copy is done the move has happened: failing to delete
    /// `from` afterwards is logged, not returned (`list_partials` finds what is left).
    pub(crate) async fn rename(&self, from: &ObjectKey, to: &ObjectKey, size: u64) -> Result<(), StoreError> {
        let url = format!("{} -> {}", self.url_of(from), self.url_of(to));
        let (from_path, to_path) = (self.path(from)?, self.path(to)?);
        if self.backend == Backend::Local {
            return self.inner.rename(&from_path, &to_path).await.map_err(|e| StoreError::backend("rename", url, e));
        }
        match &self.s3_copier {
            Some(copier) if size > self.options.multipart_copy_threshold_bytes => {
                copier.copy(&from_path, &to_path, size, &self.options, &url).await?;
            }
            _ => {
                self.inner.copy(&from_path, &to_path).await.map_err(|e| StoreError::backend("rename (copy)", url, e))?
            }
        }
        match self.inner.delete(&from_path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(url = %self.url_of(from), error = %e, "removing an upload temporary failed"),
        }
        Ok(())
    }

    pub(crate) fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub(crate) fn options(&self) -> &StoreOptions {
        &self.options
    }
}
