//! The storage layer's errors: each names the object (as a URL) or the local file, and says
//! whether trying again may help ([`StoreError::is_transient`]) or the credentials were
//! refused ([`StoreError::is_auth_failure`]).

use std::path::PathBuf;

/// Errors of the object store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot open store {url}: {source}")]
    Open { url: String, source: object_store::Error },
    #[error("cannot read credentials file {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("{op} {url}: no such object")]
    NotFound { op: &'static str, url: String },
    #[error("{op} {url}: access denied: {source}")]
    Denied { op: &'static str, url: String, source: object_store::Error },
    #[error("{op} {url}: {source}")]
    Backend { op: &'static str, url: String, source: object_store::Error },
    #[error("{op} {url}: {path}: {source}")]
    Local { op: &'static str, url: String, path: PathBuf, source: std::io::Error },
    #[error("{url} is {size} bytes, more than the limit of {max} bytes")]
    TooLarge { url: String, size: u64, max: u64 },
    #[error("{op} {url}: expected {expected} bytes, got {got} (the object changed or the transfer was cut)")]
    Incomplete { op: &'static str, url: String, expected: u64, got: u64 },
    #[error("{url}: invalid manifest: {reason}")]
    Manifest { url: String, reason: String },
}

impl StoreError {
    /// Whether the same operation may succeed if tried again later: network failures, timeouts,
    /// throttling and server errors (after object_store's own retries were spent), a transfer
    /// cut short, local I/O that ran out of room or time (disk full, quota, interrupted, busy).
    /// Permanent: bad keys or URLs, missing objects, denied access or bad credentials (see
    /// [`StoreError::is_auth_failure`]), precondition failures, objects over a size limit,
    /// local file errors such as a missing source file or a directory that cannot be written.
    pub fn is_transient(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            StoreError::Backend { source, .. } | StoreError::Open { source, .. } => backend_is_transient(source),
            StoreError::Incomplete { .. } => true,
            StoreError::Local { source, .. } => matches!(
                source.kind(),
                K::Interrupted
                    | K::TimedOut
                    | K::WouldBlock
                    | K::StorageFull
                    | K::QuotaExceeded
                    | K::ResourceBusy
                    | K::OutOfMemory
            ),
            StoreError::InvalidKey { .. }
            | StoreError::InvalidUrl { .. }
            | StoreError::Credentials { .. }
            | StoreError::NotFound { .. }
            | StoreError::Denied { .. }
            | StoreError::TooLarge { .. }
            | StoreError::Manifest { .. } => false,
        }
    }

    /// Whether this is a missing object.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// Whether the backend refused the store's credentials (HTTP 401 or 403: a wrong key, an
    /// expired SAS token, missing permissions) or the credentials file could not be read. Not
    /// transient (retrying with the same credentials fails the same way): re-read them with
    /// [`Store::reopen`](super::Store::reopen) / [`BlockingStore::reopen`](super::BlockingStore::reopen)
    /// once they were renewed, then retry.
    pub fn is_auth_failure(&self) -> bool {
        use object_store::Error as E;
        match self {
            StoreError::Denied { .. } | StoreError::Credentials { .. } => true,
            StoreError::Open { source, .. } | StoreError::Backend { source, .. } => match source {
                E::PermissionDenied { .. } | E::Unauthenticated { .. } => true,
                E::Generic { .. } => matches!(http_status(&error_chain_text(source)), Some(401 | 403)),
                _ => false,
            },
            _ => false,
        }
    }

    /// Wraps an object_store error of operation `op` on `url`.
    pub(crate) fn backend(op: &'static str, url: String, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound { op, url },
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                StoreError::Denied { op, url, source }
            }
            source => StoreError::Backend { op, url, source },
        }
    }
}

/// object_store maps 404/403/401/409/412/304 to typed variants; what reaches `Generic` is a
/// request that failed after its retries (connection errors, timeouts, 5xx, 429) or another
/// HTTP status. The status is only visible in the error text (object_store's `RetryError`
/// is not public), so: transient unless the text carries a 4xx status other than 408 or 429.
fn backend_is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::Generic { .. } | E::JoinError { .. } => match http_status(&error_chain_text(e)) {
            Some(status) => !(400..500).contains(&status) || status == 408 || status == 429,
            None => true,
        },
        _ => false,
    }
}

fn error_chain_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// The HTTP status in object_store's request error text ("... status code: 503 Service ...").
pub(crate) fn http_status(text: &str) -> Option<u16> {
    let rest = &text[text.find("status code: ")? + "status code: ".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() == 3 {
        digits.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic { store: "test", source: text.to_string().into() }
    }

    #[test]
    fn classifies_backend_errors() {
        let url = || "az://c/k".to_string();
        let transient = |e| StoreError::backend("get", url(), e).is_transient();
        assert!(transient(generic(
            "Error performing GET: Server returned non-2xx status code: 503 Service Unavailable: busy"
        )));
        assert!(transient(generic("Error performing GET: Server returned non-2xx status code: 429 Too Many Requests")));
        assert!(transient(generic(
            "Error performing GET http://127.0.0.1:1/x in 1.2s, after 3 retries: error sending request"
        )));
        assert!(!transient(generic("Server returned non-2xx status code: 400 Bad Request: InvalidHeaderValue")));
        let nf =
            StoreError::backend("get", url(), object_store::Error::NotFound { path: "k".into(), source: "404".into() });
        assert!(nf.is_not_found() && !nf.is_transient());
        assert_eq!(nf.to_string(), "get az://c/k: no such object");
        let denied = StoreError::backend(
            "put",
            url(),
            object_store::Error::PermissionDenied { path: "k".into(), source: "403".into() },
        );
        assert!(matches!(denied, StoreError::Denied { .. }) && !denied.is_transient());
        let exists = StoreError::backend(
            "copy",
            url(),
            object_store::Error::AlreadyExists { path: "k".into(), source: "409".into() },
        );
        assert!(!exists.is_transient());
        assert_eq!(http_status("x status code: 404 Not Found"), Some(404));
        assert_eq!(http_status("no status here"), None);
    }

    #[test]
    fn auth_failures_are_told_apart() {
        let url = || "s3://b/k".to_string();
        let auth = |e| StoreError::backend("get", url(), e);
        for e in [
            auth(object_store::Error::PermissionDenied { path: "k".into(), source: "403 AuthorizationFailure".into() }),
            auth(object_store::Error::Unauthenticated { path: "k".into(), source: "401".into() }),
            auth(generic(
                "Error performing PUT: Server returned non-2xx status code: 403 Forbidden: SignatureDoesNotMatch",
            )),
            StoreError::Credentials { path: "/etc/creds.env".into(), reason: "No such file or directory".into() },
        ] {
            assert!(e.is_auth_failure() && !e.is_transient() && !e.is_not_found(), "{e:?}");
        }
        for e in [
            auth(object_store::Error::NotFound { path: "k".into(), source: "404".into() }),
            auth(generic("Server returned non-2xx status code: 503 Service Unavailable")),
            auth(generic("Server returned non-2xx status code: 400 Bad Request")),
            auth(generic("error sending request: connection refused")),
        ] {
            assert!(!e.is_auth_failure(), "{e:?}");
        }
    }

    #[test]
    fn local_errors_out_of_room_or_time_are_transient() {
        let local = |e: std::io::Error| StoreError::Local {
            op: "download",
            url: "s3://b/k".into(),
            path: "/work/k".into(),
            source: e,
        };
        // The errno a write gets on a full disk or an exhausted quota (Linux values).
        for errno in [28 /* ENOSPC */, 122 /* EDQUOT */, 4 /* EINTR */, 16 /* EBUSY */] {
            let e = local(std::io::Error::from_raw_os_error(errno));
            assert!(e.is_transient() && !e.is_auth_failure(), "errno {errno}: {e:?}");
        }
        for errno in [2 /* ENOENT */, 13 /* EACCES */, 21 /* EISDIR */, 30 /* EROFS */] {
            let e = local(std::io::Error::from_raw_os_error(errno));
            assert!(!e.is_transient(), "errno {errno}: {e:?}");
        }
    }
}
