//! Trigger events → job requests. Three kinds of message are understood:
//!
//! * our own, versioned: `{"schema": "stylestream.job/1", "input": "in/a.mp4", "style":
//!   "udnie", "output": "out/a.udnie.mp4"}` (or `"input_prefix"` for stored frames, and
//!   `"output_prefix"` instead of `"output"`), with optional `"id"`, `"crf"`, `"preset"`,
//!   `"fps"`;
//! * Azure Event Grid `Microsoft.Storage.BlobCreated` (one event or an array of them);
//! * S3 `ObjectCreated:*` notifications (`{"Records": [...]}`).
//!
//! Storage notifications are mapped to jobs by the config's routes (prefix → style → output
//! prefix; with a trigger name, the arrival of that object starts a job on its prefix).
//! Nothing here touches storage; keys are checked by the store when used.

use serde::Deserialize;

/// A storage notification rule: objects created under `prefix` are styled with `style` and
/// written under `output_prefix`. With `trigger`, only an object of that name starts a job: on
/// the frames uploaded under its prefix (the reference's trigger file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: String,
    pub style: String,
    pub output_prefix: String,
    /// Name of the trigger object, e.g. `_READY`.
    pub trigger: Option<String>,
    /// Frame rate of triggered frame prefixes (else the prefix's fps.txt).
    pub fps: Option<f64>,
    /// Extension of video outputs (default: the input's, mp4 for frames).
    pub format: Option<String>,
}



/// Why a message can never become a job (it is dead-lettered with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unknown schema {0:?} (this service reads stylestream.job/1)")]
    UnknownSchema(String),
    #[error("invalid event: {0}")]
    Invalid(String),
    #[error("message of {size} bytes is over the limit of {max}")]
    Oversized { size: usize, max: usize },
    #[error("no route matches object {0:?}")]
    NoRoute(String),
}

impl Poison {
    /// Short machine-readable reason (header value and metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            Poison::MalformedJson(_) => "malformed-json",
            Poison::UnknownSchema(_) => "unknown-schema",
            Poison::Invalid(_) => "invalid-event",
            Poison::Oversized { .. } => "oversized",
            Poison::NoRoute(_) => "no-route",
        }
    }
}

/// What a job reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One video object.
    Object(String),
    /// Image frames stored under a prefix (name order).
    Prefix(String),
}

/// Where a job writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// One video object (the extension picks the container).
    Object(String),
    /// Under a prefix: `<prefix><input stem>.<style>.<ext>` for videos; PNG frames for a frame
    /// prefix input.
    Prefix(String),
}

/// A job as the event asks for it (not yet checked against storage or the models).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub id: Option<String>,
    pub input: Input,
    pub style: String,
    pub output: Output,
    pub crf: Option<u32>,
    pub preset: Option<String>,
    pub fps: Option<f64>,
    /// Extension for a video output under a prefix.
    pub format: Option<String>,
}

pub const SCHEMA: &str = "stylestream.job/1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnEvent {
    #[serde(rename = "schema")]
    _schema: String,
    id: Option<String>,
    input: Option<String>,
    input_prefix: Option<String>,
    style: String,
    output: Option<String>,
    output_prefix: Option<String>,
    crf: Option<u32>,
    preset: Option<String>,
    fps: Option<f64>,
    format: Option<String>,
}

/// Parses a message body into the jobs it asks for (a notification may name several objects;
/// objects no route wants, such as frames before their trigger, give no job).
pub fn parse(body: &[u8], max_bytes: usize, routes: &[Route]) -> Result<Vec<JobRequest>, Poison> {
    if body.len() > max_bytes {
        return Err(Poison::Oversized { size: body.len(), max: max_bytes });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Poison::MalformedJson(e.to_string()))?;
    if let Some(schema) = value.get("schema") {
        let schema = schema.as_str().unwrap_or_default().to_string();
        if schema != SCHEMA {
            return Err(Poison::UnknownSchema(schema));
        }
        let e: OwnEvent = serde_json::from_value(value).map_err(|e| Poison::Invalid(e.to_string()))?;
        return own(e).map(|j| vec![j]);
    }
    if value.get("Records").is_some() {
        return s3(&value, routes);
    }
    let events: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    if events.iter().all(|e| e.get("eventType").is_some()) && !events.is_empty() {
        return event_grid(&events, routes);
    }
    Err(Poison::UnknownSchema("none: expected a `schema` field, an Event Grid event or S3 Records".into()))
}

fn own(e: OwnEvent) -> Result<JobRequest, Poison> {
    let input = match (e.input, e.input_prefix) {
        (Some(i), None) => Input::Object(i),
        (None, Some(p)) => Input::Prefix(with_slash(p)),
        _ => return Err(Poison::Invalid("give exactly one of `input` and `input_prefix`".into())),
    };
    let output = match (e.output, e.output_prefix) {
        (Some(o), None) => Output::Object(o),
        (None, Some(p)) => Output::Prefix(with_slash(p)),
        _ => return Err(Poison::Invalid("give exactly one of `output` and `output_prefix`".into())),
    };
    if e.style.is_empty() {
        return Err(Poison::Invalid("`style` is empty".into()));
    }
    if e.crf.is_some_and(|c| c > 63) {
        return Err(Poison::Invalid("`crf` must be 0..=63".into()));
    }
    if e.fps.is_some_and(|f| !(f > 0.0 && f <= 1000.0)) {
        return Err(Poison::Invalid("`fps` must be in (0, 1000]".into()));
    }
    Ok(JobRequest { id: e.id, input, style: e.style, output, crf: e.crf, preset: e.preset, fps: e.fps, format: e.format })
}

fn with_slash(p: String) -> String {
    if p.ends_with('/') {
        p
    } else {
        format!("{p}/")
    }
}

/// Maps a created object's key to a job through the routes.
fn route(key: &str, routes: &[Route]) -> Result<Option<JobRequest>, Poison> {
    let Some(r) = routes.iter().find(|r| key.starts_with(&r.prefix)) else {
        return Err(Poison::NoRoute(key.to_string()));
    };
    let job = |input| JobRequest {
        id: None,
        input,
        style: r.style.clone(),
        output: Output::Prefix(with_slash(r.output_prefix.clone())),
        crf: None,
        preset: None,
        fps: r.fps,
        format: r.format.clone(),
    };
    match &r.trigger {
        Some(t) => {
            let (dir, name) = key.rsplit_once('/').map_or(("", key), |(d, n)| (d, n));
            if name != t {
                return Ok(None); // a frame, waiting for its trigger
            }
            Ok(Some(job(Input::Prefix(format!("{dir}/")))))
        }
        None => Ok(Some(job(Input::Object(key.to_string())))),
    }
}

fn event_grid(events: &[&serde_json::Value], routes: &[Route]) -> Result<Vec<JobRequest>, Poison> {
    let mut jobs = Vec::new();
    for e in events {
        let kind = e.get("eventType").and_then(|v| v.as_str()).unwrap_or_default();
        if kind != "Microsoft.Storage.BlobCreated" {
            return Err(Poison::Invalid(format!("Event Grid event type {kind:?} is not Microsoft.Storage.BlobCreated")));
        }
        // subject: /blobServices/default/containers/<container>/blobs/<path>
        let subject = e.get("subject").and_then(|v| v.as_str()).unwrap_or_default();
        let Some((_, path)) = subject.split_once("/blobs/") else {
            return Err(Poison::Invalid(format!("Event Grid subject {subject:?} names no blob")));
        };
        jobs.extend(route(path, routes)?);
    }
    Ok(jobs)
}

fn s3(value: &serde_json::Value, routes: &[Route]) -> Result<Vec<JobRequest>, Poison> {
    let records = value.get("Records").and_then(|r| r.as_array()).ok_or_else(|| Poison::Invalid("`Records` is not an array".into()))?;
    let mut jobs = Vec::new();
    for r in records {
        let name = r.get("eventName").and_then(|v| v.as_str()).unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            return Err(Poison::Invalid(format!("S3 event {name:?} is not ObjectCreated")));
        }
        let key = r.pointer("/s3/object/key").and_then(|v| v.as_str()).ok_or_else(|| Poison::Invalid("S3 record without s3.object.key".into()))?;
        jobs.extend(route(&s3_key(key)?, routes)?);
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
                out.push(hex.ok_or_else(|| Poison::Invalid(format!("bad escape in S3 key {key:?}")))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Poison::Invalid(format!("S3 key {key:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        vec![
            Route { prefix: "incoming/udnie/".into(), style: "udnie".into(), output_prefix: "styled/udnie/".into(), trigger: None, fps: None, format: None },
            Route { prefix: "frames/".into(), style: "wave".into(), output_prefix: "styled/frames/".into(), trigger: Some("_READY".into()), fps: Some(25.0), format: None },
        ]
    }

    #[test]
    fn our_own_events_parse_and_bad_ones_say_why() {
        let j = parse(br#"{"schema":"stylestream.job/1","input":"in/a.mp4","style":"udnie","output":"out/a.mp4","crf":20}"#, 4096, &[]).unwrap();
        assert_eq!(j[0].input, Input::Object("in/a.mp4".into()));
        assert_eq!(j[0].output, Output::Object("out/a.mp4".into()));
        assert_eq!(j[0].crf, Some(20));
        let e = |b: &[u8]| parse(b, 4096, &[]).unwrap_err().code();
        assert_eq!(e(b"{not json"), "malformed-json");
        assert_eq!(e(br#"{"schema":"stylestream.job/9","input":"a","style":"s","output":"o"}"#), "unknown-schema");
        assert_eq!(e(br#"{"schema":"stylestream.job/1","style":"s","output":"o"}"#), "invalid-event");
        assert_eq!(e(br#"{"schema":"stylestream.job/1","input":"a","style":"s","output":"o","evil":1}"#), "invalid-event");
        assert_eq!(e(br#"{"hello":"world"}"#), "unknown-schema");
        assert_eq!(parse(&vec![b' '; 5000], 4096, &[]).unwrap_err().code(), "oversized");
    }

    #[test]
    fn storage_notifications_follow_the_routes() {
        let grid = br#"[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/media/blobs/incoming/udnie/a b.mp4","data":{}}]"#;
        let j = parse(grid, 4096, &routes()).unwrap();
        assert_eq!(j[0].input, Input::Object("incoming/udnie/a b.mp4".into()));
        assert_eq!((j[0].style.as_str(), &j[0].output), ("udnie", &Output::Prefix("styled/udnie/".into())));
        let s3 = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"incoming/udnie/a+b%2B.mp4"}}}]}"#;
        assert_eq!(parse(s3, 4096, &routes()).unwrap()[0].input, Input::Object("incoming/udnie/a b+.mp4".into()));
        // Frames wait for their trigger; the trigger starts a job on the prefix.
        let frame = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"frames/shot1/00001.png"}}}]}"#;
        assert!(parse(frame, 4096, &routes()).unwrap().is_empty());
        let trigger = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"frames/shot1/_READY"}}}]}"#;
        let j = parse(trigger, 4096, &routes()).unwrap();
        assert_eq!(j[0].input, Input::Prefix("frames/shot1/".into()));
        assert_eq!(j[0].fps, Some(25.0));
        let stray = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"elsewhere/x.mp4"}}}]}"#;
        assert_eq!(parse(stray, 4096, &routes()).unwrap_err().code(), "no-route");
    }
}
