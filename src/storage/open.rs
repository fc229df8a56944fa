//! Opening a store from a URL: `file://` or a plain path (local directory), `az://` or
//! `azure://` (Azure Blob, Azurite), `s3://` (S3 and compatibles). Credentials come from the
//! environment or a credentials file, never from the URL.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::{HttpConnector, ReqwestConnector};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::key::ObjectKey;
use super::s3_copy::S3Copier;
use super::{StoreError, StoreOptions};

/// Which kind of backend a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    Azure,
    S3,
}

/// What `Store::open` builds: the object_store, its kind, the root prefix inside it and the
/// URL used in messages (without credentials, which URLs never carry); on S3 what a
/// multipart copy needs.
pub(crate) struct Opened {
    pub inner: Arc<dyn ObjectStore>,
    pub backend: Backend,
    pub prefix: Option<Path>,
    pub url: String,
    pub s3_copier: Option<S3Copier>,
}

/// Longest a single part of a multipart copy may take (S3 copies inside the service; a 512 MiB
/// part usually takes seconds).
const PART_COPY_TIMEOUT_SECS: u64 = 600;

/// The variables `open` reads (others in an environment are not kept).
pub(crate) fn is_store_variable(name: &str) -> bool {
    name.starts_with("AZURE_") || name.starts_with("AWS_") || name == "MSI_ENDPOINT"
}

pub(crate) fn open(url: &str, options: &StoreOptions, vars: &[(String, String)]) -> Result<Opened, StoreError> {
    let bad = |reason: &str| StoreError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    let Some((scheme, rest)) = url.split_once("://") else {
        return open_local(url, FsPath::new(url));
    };
    match scheme {
        "file" => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(bad("a file URL needs an absolute path: file:///abs/dir"));
            }
            if path.contains(['?', '#']) {
                return Err(bad("a file URL takes no query or fragment"));
            }
            open_local(url, FsPath::new(path))
        }
        "az" | "azure" | "s3" => {
            if rest.contains(['?', '#']) {
                return Err(bad("no query or fragment allowed: credentials (SAS tokens, keys) come from the environment or a credentials file, never from URLs"));
            }
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.contains('@') || host.contains(':') {
                return Err(bad(
                    "no user, password or port allowed: credentials come from the environment or a credentials file",
                ));
            }
            if host.is_empty()
                || !host.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(bad("the container/bucket name must be lowercase letters, digits, '-' or '.'"));
            }
            let prefix = path.trim_end_matches('/');
            let prefix = if prefix.is_empty() {
                None
            } else {
                let key = ObjectKey::parse(prefix).map_err(|e| bad(&format!("prefix: {e}")))?;
                Some(Path::parse(key.as_str()).map_err(|e| bad(&e.to_string()))?)
            };
            let retry = retry_config(options);
            let clean_url = match &prefix {
                Some(p) => format!("{scheme}://{host}/{p}"),
                None => format!("{scheme}://{host}"),
            };
            let open_err = |source| StoreError::Open { url: clean_url.clone(), source };
            let mut s3_copier = None;
            let (inner, backend): (Arc<dyn ObjectStore>, Backend) = if scheme == "s3" {
                let mut b = AmazonS3Builder::new();
                // The multipart copy's own requests use the same client settings (AWS_ALLOW_HTTP,
                // proxies, ...) as object_store's.
                let mut client = ClientOptions::new();
                for (k, v) in vars.iter().filter(|(k, _)| k.starts_with("AWS_")) {
                    if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        if let AmazonS3ConfigKey::Client(c) = key {
                            client = client.with_config(c, v);
                        }
                        b = b.with_config(key, v);
                    }
                }
                let s3 = Arc::new(b.with_bucket_name(host).with_retry(retry).build().map_err(open_err)?);
                let http = ReqwestConnector::default()
                    .connect(&client.with_timeout(Duration::from_secs(PART_COPY_TIMEOUT_SECS)))
                    .map_err(open_err)?;
                s3_copier = Some(S3Copier { s3: s3.clone(), http, bucket: host.to_string() });
                (s3, Backend::S3)
            } else {
                if host.contains('.') {
                    return Err(bad("an Azure container name has no '.'"));
                }
                let mut b = MicrosoftAzureBuilder::new();
                for (k, v) in vars {
                    if k.starts_with("AZURE_") {
                        if let Ok(key) = k.to_ascii_lowercase().parse() {
                            b = b.with_config(key, v);
                        }
                    } else if k == "MSI_ENDPOINT" {
                        b = b.with_msi_endpoint(v);
                    }
                }
                let az = b.with_container_name(host).with_retry(retry).build().map_err(open_err)?;
                (Arc::new(az), Backend::Azure)
            };
            Ok(Opened { inner, backend, prefix, url: clean_url, s3_copier })
        }
        other => Err(bad(&format!("unknown scheme {other:?}: use file://, az://, azure:// or s3://"))),
    }
}

fn open_local(url: &str, dir: &FsPath) -> Result<Opened, StoreError> {
    let local_err = |source| StoreError::Local { op: "open", url: url.to_string(), path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(local_err)?;
    let dir: PathBuf = std::fs::canonicalize(dir).map_err(local_err)?;
    let clean_url = format!("file://{}", dir.display());
    let fs = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|source| StoreError::Open { url: clean_url.clone(), source })?
        .with_automatic_cleanup(true)
        .with_fsync(true);
    Ok(Opened { inner: Arc::new(fs), backend: Backend::Local, prefix: None, url: clean_url, s3_copier: None })
}

/// object_store's retries, explicit: exponential backoff from `initial_backoff_ms` doubling up
/// to `max_backoff_ms`, at most `max_retries` times and `retry_timeout_secs` in all.
fn retry_config(o: &StoreOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(o.initial_backoff_ms),
            max_backoff: Duration::from_millis(o.max_backoff_ms),
            base: 2.0,
        },
        max_retries: o.max_retries,
        retry_timeout: Duration::from_secs(o.retry_timeout_secs),
    }
}

/// `KEY=VALUE` lines (blank lines and `#` comments ignored; `export ` prefixes allowed).
pub(crate) fn read_credentials_file(path: &FsPath) -> Result<Vec<(String, String)>, StoreError> {
    let err = |reason: String| StoreError::Credentials { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or_else(|| err(format!("line {}: expected KEY=VALUE", i + 1)))?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        vars.push((k.trim().to_string(), v.to_string()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        match open(url, &StoreOptions::default(), &[]) {
            Ok(o) => panic!("{url} opened as {}", o.url),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_credentials_and_junk_in_urls() {
        assert!(refused("az://c/p?sv=2020&sig=abc").contains("never from URLs"));
        assert!(refused("s3://key:secret@bucket/p").contains("no user, password"));
        assert!(refused("az://c/../x").contains("`..` segment"));
        assert!(refused("az://Bad_Name/x").contains("lowercase"));
        assert!(refused("gs://b/x").contains("unknown scheme"));
        assert!(refused("file://relative/dir").contains("absolute path"));
    }

    #[test]
    fn azure_url_sets_container_and_prefix() {
        let vars = [("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string())];
        let o = open("azure://media/in/2024/", &StoreOptions::default(), &vars).unwrap();
        assert_eq!((o.url.as_str(), o.backend), ("azure://media/in/2024", Backend::Azure));
        assert_eq!(o.prefix.unwrap().as_ref(), "in/2024");
    }

    #[test]
    fn credentials_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds.env");
        std::fs::write(
            &f,
            "# azure\nexport AZURE_STORAGE_ACCOUNT_NAME=acct\nAZURE_STORAGE_SAS_TOKEN=\"sv=1&sig=x=\"\n\n",
        )
        .unwrap();
        let vars = read_credentials_file(&f).unwrap();
        assert_eq!(
            vars,
            [
                ("AZURE_STORAGE_ACCOUNT_NAME".into(), "acct".into()),
                ("AZURE_STORAGE_SAS_TOKEN".into(), "sv=1&sig=x=".into())
            ]
        );
        std::fs::write(&f, "oops\n").unwrap();
        assert!(read_credentials_file(&f).unwrap_err().to_string().contains("line 1: expected KEY=VALUE"));
    }
}
