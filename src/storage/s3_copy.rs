//! S3 multipart copy: moves an object larger than a single CopyObject can take (5 GiB) with
//! CreateMultipartUpload + UploadPartCopy (byte ranges) + CompleteMultipartUpload. The object
//! appears under the destination key only at CompleteMultipartUpload, whole.
//!
//! object_store 0.14.2 creates, completes and aborts multipart uploads
//! ([`MultipartStore`]) but has no call that sends UploadPartCopy. Its [`Signer`] can sign one
//! (`signed_url_opts` folds `partNumber`, `uploadId` and the `x-amz-copy-source*` headers into
//! a SigV4 signature), so each part is one presigned `PUT` sent with object_store's own HTTP
//! client: same endpoint, addressing style and credentials as every other request, no SigV4 code
//! of ours.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::client::{HttpClient, HttpRequestBody};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{HeaderValue, MultipartId};

use super::{StoreError, StoreOptions};

/// S3 refuses copy parts above 5 GiB and uploads of more than 10,000 parts.
const MAX_PART_BYTES: u64 = 5 << 30;
const MIN_PART_BYTES: u64 = 5 << 20;
const MAX_PARTS: u64 = 10_000;
/// How long one part's presigned request stays valid (it is signed just before it is sent).
const SIGNATURE_SECS: u64 = 3600;

/// What a multipart copy needs of an S3 store: the store itself (multipart calls and signing),
/// an HTTP client for the signed part copies, and the bucket the keys live in.
#[derive(Clone, Debug)]
pub(crate) struct S3Copier {
    pub s3: Arc<AmazonS3>,
    pub http: HttpClient,
    pub bucket: String,
}

/// The byte ranges (inclusive) of the parts of a `size`-byte copy with parts of about
/// `part_bytes`: larger when `size` would need more than 10,000 parts.
pub(crate) fn part_ranges(size: u64, part_bytes: u64) -> Vec<(u64, u64)> {
    let part = part_bytes.max(size.div_ceil(MAX_PARTS)).clamp(MIN_PART_BYTES, MAX_PART_BYTES);
    (0..size.div_ceil(part)).map(|i| (i * part, ((i + 1) * part).min(size) - 1)).collect()
}

impl S3Copier {
    /// Copies `from` (`size` bytes) to `to` in parts of `multipart_copy_part_size_bytes`,
    /// `max_parts_in_flight` at a time. On failure the multipart upload is aborted (best
    /// effort) and `to` is as it was.
    pub async fn copy(
        &self,
        from: &Path,
        to: &Path,
        size: u64,
        options: &StoreOptions,
        url: &str,
    ) -> Result<(), StoreError> {
        let err = |e| StoreError::backend("multipart copy", url.to_string(), e);
        let upload_id = self.s3.create_multipart(to).await.map_err(err)?;
        let parts = part_ranges(size, options.multipart_copy_part_size_bytes);
        let copied = futures::stream::iter(parts.iter().enumerate())
            .map(|(i, &range)| self.copy_part_with_retries(from, to, &upload_id, i + 1, range, options, url))
            .buffered(options.max_parts_in_flight.max(1))
            .try_collect::<Vec<PartId>>()
            .await;
        let done = match copied {
            Ok(ids) => self.s3.complete_multipart(to, &upload_id, ids).await.map_err(err),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            if let Err(abort) = self.s3.abort_multipart(to, &upload_id).await {
                tracing::warn!(url = %url, error = %abort, "aborting a failed multipart copy failed");
            }
            return Err(e);
        }
        Ok(())
    }

    /// One UploadPartCopy, retried like object_store retries its own requests: transient
    /// failures (connection errors, 5xx, 429, S3's "200 with an error inside") back off
    /// exponentially, at most `max_retries` times within `retry_timeout_secs`.
    #[allow(clippy::too_many_arguments)]
    async fn copy_part_with_retries(
        &self,
        from: &Path,
        to: &Path,
        upload_id: &MultipartId,
        number: usize,
        range: (u64, u64),
        options: &StoreOptions,
        url: &str,
    ) -> Result<PartId, StoreError> {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(options.initial_backoff_ms);
        let mut attempt = 0;
        loop {
            match self.copy_part(from, to, upload_id, number, range).await {
                Ok(id) => return Ok(id),
                Err(e) => {
                    let e = StoreError::backend("multipart copy", url.to_string(), e);
                    attempt += 1;
                    let late = started.elapsed() + backoff > Duration::from_secs(options.retry_timeout_secs);
                    if !e.is_transient() || attempt > options.max_retries || late {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(options.max_backoff_ms));
                }
            }
        }
    }

    async fn copy_part(
        &self,
        from: &Path,
        to: &Path,
        upload_id: &MultipartId,
        number: usize,
        (first, last): (u64, u64),
    ) -> Result<PartId, object_store::Error> {
        let generic = |text: String| object_store::Error::Generic { store: "S3", source: text.into() };
        let source = format!("/{}/{}", self.bucket, encode_key(from.as_ref()));
        let range = format!("bytes={first}-{last}");
        let header =
            |v: &str| HeaderValue::from_str(v).map_err(|e| generic(format!("UploadPartCopy header {v:?}: {e}")));
        let (source_value, range_value) = (header(&source)?, header(&range)?);
        let signing = SignedUrlOptions::new()
            .with_query([("partNumber", number.to_string()), ("uploadId", upload_id.clone())])
            .with_signed_header(http::HeaderName::from_static("x-amz-copy-source"), source_value.clone())
            .with_signed_header(http::HeaderName::from_static("x-amz-copy-source-range"), range_value.clone());
        let signed =
            self.s3.signed_url_opts(http::Method::PUT, to, Duration::from_secs(SIGNATURE_SECS), &signing).await?;
        let request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(signed.as_str())
            .header("x-amz-copy-source", source_value)
            .header("x-amz-copy-source-range", range_value)
            .header(http::header::CONTENT_LENGTH, "0")
            .body(HttpRequestBody::empty())
            .map_err(|e| generic(format!("UploadPartCopy request: {e}")))?;
        let what = format!("UploadPartCopy part {number} ({range}) of {to}");
        let response =
            self.http.execute(request).await.map_err(|e| generic(format!("Error performing {what}: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| generic(format!("Error reading the answer to {what}: {e}")))?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            let source = format!("{what}: Server returned non-2xx status code: {status}: {}", text.trim()).into();
            return Err(match status.as_u16() {
                404 => object_store::Error::NotFound { path: from.to_string(), source },
                403 => object_store::Error::PermissionDenied { path: to.to_string(), source },
                401 => object_store::Error::Unauthenticated { path: to.to_string(), source },
                _ => object_store::Error::Generic { store: "S3", source },
            });
        }
        match xml_text(&text, "ETag") {
            Some(etag) if text.contains("<CopyPartResult") => Ok(PartId { content_id: etag }),
            // S3 may answer 200 and report a failure in the body (InternalError, SlowDown):
            // transient, like the 5xx it stands for.
            _ => Err(generic(format!("{what}: Server returned status code: 500 inside a 200 answer: {}", text.trim()))),
        }
    }
}

/// `key` as an `x-amz-copy-source` path: every byte other than unreserved characters and `/`
/// percent-encoded.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<tag>…</tag>` in `xml`, with the five predefined entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    let raw = &xml[start..start + len];
    Some(
        raw.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_object_in_order() {
        const MIB: u64 = 1 << 20;
        assert_eq!(part_ranges(6 * MIB, 5 * MIB), [(0, 5 * MIB - 1), (5 * MIB, 6 * MIB - 1)]);
        assert_eq!(part_ranges(10 * MIB, 5 * MIB), [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1)]);
        // Below S3's 5 MiB minimum, parts are 5 MiB anyway.
        assert_eq!(part_ranges(7 * MIB, MIB).len(), 2);
        // 8 GiB in 512 MiB parts: 16 parts, contiguous, ending at the last byte.
        let size = 8u64 << 30;
        let parts = part_ranges(size, 512 * MIB);
        assert_eq!(parts.len(), 16);
        assert!(parts.windows(2).all(|w| w[0].1 + 1 == w[1].0));
        assert_eq!((parts[0].0, parts[15].1), (0, size - 1));
        // 5 TiB (S3's largest object) in 5 MiB parts would be a million parts: grown to fit 10,000.
        let huge = 5u64 << 40;
        let parts = part_ranges(huge, 5 * MIB);
        assert!(parts.len() as u64 <= MAX_PARTS && parts.last().unwrap().1 == huge - 1);
    }

    #[test]
    fn copy_source_and_xml() {
        assert_eq!(encode_key("out/.a b.mp4.00ff.partial"), "out/.a%20b.mp4.00ff.partial");
        assert_eq!(encode_key("x/é+&"), "x/%C3%A9%2B%26");
        let xml = "<?xml version=\"1.0\"?><CopyPartResult><LastModified>2026</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_text(xml, "ETag").as_deref(), Some("\"9b2cf535f27731c974343645a3985328\""));
        assert_eq!(xml_text("<Error><Code>InternalError</Code></Error>", "ETag"), None);
    }
}
