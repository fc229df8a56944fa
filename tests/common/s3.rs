//! The local S3 server (moto) for tests: started through scripts/s3.sh when not running, one
//! fresh bucket per test (created with a plain REST call: object_store cannot create buckets,
//! and moto does not check signatures).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub const S3_ADDR: &str = "127.0.0.1:9000";

/// Starts the S3 server with the project's script (idempotent, safe from parallel test binaries).
pub fn s3() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3.sh");
        let out = std::process::Command::new("bash").arg(&script).arg("start").output().unwrap();
        assert!(
            out.status.success(),
            "scripts/s3.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The variables a store needs to reach the test server (path-style requests over plain HTTP;
/// moto accepts any key pair).
pub fn s3_vars() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT", format!("http://{S3_ADDR}")),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "stylestream-test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "stylestream-test-secret".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A bucket name no other test (or earlier run) uses.
pub fn unique_bucket() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{:x}-{}-{}", nanos & 0xffff_ffff_ffff, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Creates `name` on the test server (S3 CreateBucket; in us-east-1 it takes no body).
pub fn create_bucket(name: &str) {
    let request = format!("PUT /{name} HTTP/1.1\r\nHost: {S3_ADDR}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let mut conn = TcpStream::connect(S3_ADDR).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "creating bucket {name} failed:\n{response}"
    );
}

/// Incomplete multipart uploads in `bucket` (ListMultipartUploads), as `(key, upload id)`.
pub fn multipart_uploads(bucket: &str) -> Vec<(String, String)> {
    let request = format!("GET /{bucket}?uploads HTTP/1.1\r\nHost: {S3_ADDR}\r\nConnection: close\r\n\r\n");
    let mut conn = TcpStream::connect(S3_ADDR).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.contains(" 200 "), "listing uploads in {bucket} failed:\n{response}");
    let between = |s: &str, open: &str, close: &str| -> Option<String> {
        let start = s.find(open)? + open.len();
        Some(s[start..start + s[start..].find(close)?].to_string())
    };
    response
        .split("<Upload>")
        .skip(1)
        .map(|u| {
            (
                between(u, "<Key>", "</Key>").unwrap_or_default(),
                between(u, "<UploadId>", "</UploadId>").unwrap_or_default(),
            )
        })
        .collect()
}
