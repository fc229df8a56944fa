//! Storage notifications (Azure Event Grid `BlobCreated`, S3 `ObjectCreated:*`) mapped to jobs
//! through the config's routes, only when they come from the media store.

use super::{check_key, shorten, with_slash, Input, JobRequest, Output, Poison, Route, Source};

/// Maps a created object's key to a job through the routes.
fn route(key: &str, routes: &[Route]) -> Result<Option<JobRequest>, Poison> {
    check_key("key", key)?;
    let Some(r) = routes.iter().find(|r| key.starts_with(&r.prefix)) else {
        return Err(Poison::NoRoute(key.to_string()));
    };
    let job = |input, output| JobRequest {
        id: None,
        input,
        style: r.style.clone(),
        output,
        crf: None,
        preset: None,
        fps: r.fps,
        format: r.format.clone(),
        jpeg_quality: None,
    };
    let video_out = || Output::Prefix(with_slash(r.output_prefix.clone()));
    match &r.trigger {
        Some(t) => {
            let (dir, name) = key.rsplit_once('/').map_or(("", key), |(d, n)| (d, n));
            if name != t {
                return Ok(None); // a frame, waiting for its trigger
            }
            let output = match &r.output_frames_prefix {
                // The trigger's folder below the route's prefix, under the frames prefix.
                Some(fp) => {
                    let folder = format!("{dir}/");
                    let below = folder.strip_prefix(r.prefix.as_str()).unwrap_or_default().trim_start_matches('/');
                    let out = format!("{}{below}", with_slash(fp.clone()));
                    check_key("output_frames_prefix", &out)?;
                    Output::Frames(with_slash(out))
                }
                None => video_out(),
            };
            Ok(Some(job(Input::Prefix(format!("{dir}/")), output)))
        }
        None => Ok(Some(job(Input::Object(key.to_string()), video_out()))),
    }
}

pub(super) fn event_grid(
    events: &[&serde_json::Value],
    routes: &[Route],
    source: &Source,
) -> Result<Vec<JobRequest>, Poison> {
    let mut jobs = Vec::new();
    for e in events {
        let kind = e.get("eventType").and_then(|v| v.as_str()).unwrap_or_default();
        if kind != "Microsoft.Storage.BlobCreated" {
            return Err(Poison::Invalid(format!(
                "Event Grid event type {kind:?} is not Microsoft.Storage.BlobCreated"
            )));
        }
        // subject: /blobServices/default/containers/<container>/blobs/<path>
        let subject = e.get("subject").and_then(|v| v.as_str()).unwrap_or_default();
        let parsed = subject.strip_prefix("/blobServices/default/containers/").and_then(|s| s.split_once("/blobs/"));
        let Some((container, path)) = parsed else {
            return Err(Poison::Invalid(format!(
                "Event Grid subject {:?} names no container and blob",
                shorten(subject)
            )));
        };
        source.check_bucket("container", Some(container))?;
        if let Some(account) = &source.account {
            // topic: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<account>
            let topic = e.get("topic").and_then(|v| v.as_str()).unwrap_or_default();
            let got = topic.rsplit_once("/storageAccounts/").map(|(_, a)| a);
            if got != Some(account.as_str()) {
                return Err(Poison::ForeignSource(format!(
                    "Event Grid topic {:?} is not storage account {account:?}",
                    shorten(topic)
                )));
            }
        }
        jobs.extend(route(source.relative(path)?, routes)?);
    }
    Ok(jobs)
}

pub(super) fn s3(value: &serde_json::Value, routes: &[Route], source: &Source) -> Result<Vec<JobRequest>, Poison> {
    let records = value
        .get("Records")
        .and_then(|r| r.as_array())
        .ok_or_else(|| Poison::Invalid("`Records` is not an array".into()))?;
    let mut jobs = Vec::new();
    for r in records {
        let name = r.get("eventName").and_then(|v| v.as_str()).unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            return Err(Poison::Invalid(format!("S3 event {name:?} is not ObjectCreated")));
        }
        source.check_bucket("bucket", r.pointer("/s3/bucket/name").and_then(|v| v.as_str()))?;
        let key = r
            .pointer("/s3/object/key")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Poison::Invalid("S3 record without s3.object.key".into()))?;
        let key = s3_key(key)?;
        jobs.extend(route(source.relative(&key)?, routes)?);
    }
    Ok(jobs)
}

/// S3 notification keys are URL-encoded, with `+` for spaces.
fn s3_key(key: &str) -> Result<String, Poison> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = key.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or_else(|| Poison::Invalid(format!("bad escape in S3 key {:?}", shorten(key))))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Poison::Invalid(format!("S3 key {:?} is not UTF-8", shorten(key))))
}
