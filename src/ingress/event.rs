//! Trigger events → job requests. Three kinds of message are understood:
//!
//! * our own, versioned: `{"schema": "stylestream.job/1", "input": "in/a.mp4", "style":
//!   "udnie", "output": "out/a.udnie.mp4"}` (or `"input_prefix"` for stored frames, and
//!   `"output_prefix"` instead of `"output"`; or `"output_frames_prefix"`: the frames of an
//!   `input_prefix` styled back as frames with the same names), with optional `"id"`, `"crf"`,
//!   `"preset"`, `"fps"`, `"jpeg_quality"`;
//! * Azure Event Grid `Microsoft.Storage.BlobCreated` (one event or an array of them);
//! * S3 `ObjectCreated:*` notifications (`{"Records": [...]}`).
//!
//! Storage notifications are mapped to jobs by the config's routes (prefix → style → output
//! prefix; with a trigger name, the arrival of that object starts a job on its prefix), and only
//! when they come from the configured store ([`Source`]: its bucket or container, account and
//! root prefix).
//!
//! Every field is hostile until checked here: ids, styles, presets, formats and frame rates are
//! validated or mapped from fixed sets; keys are refused when they hold control characters or
//! are too long, and are checked again by the store (`storage::ObjectKey`) before any use.
//! Nothing here touches storage, the file system or ffmpeg.

use serde::Deserialize;

use crate::job::outcome::PoisonCode;

/// A storage notification rule: objects created under `prefix` are styled with `style` and
/// written under `output_prefix`. With `trigger`, only an object of that name starts a job: on
/// the frames uploaded under its prefix (the reference's trigger file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: String,
    pub style: String,
    /// Where videos go (`<output_prefix><name>.<style>.<ext>`).
    #[serde(default)]
    pub output_prefix: String,
    /// With a trigger: the frames go back as frames, under
    /// `<output_frames_prefix><the trigger's folder below prefix>/` (instead of one video).
    #[serde(default)]
    pub output_frames_prefix: Option<String>,
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
    #[error("{0}")]
    UnknownStyle(String),
    #[error("{0}")]
    InvalidKey(String),
    #[error("notification from another store: {0}")]
    ForeignSource(String),
}

impl Poison {
    /// The dead-letter reason (header value and metrics label).
    pub fn code(&self) -> PoisonCode {
        match self {
            Poison::MalformedJson(_) => PoisonCode::MalformedJson,
            Poison::UnknownSchema(_) => PoisonCode::UnknownSchema,
            Poison::Invalid(_) => PoisonCode::InvalidEvent,
            Poison::Oversized { .. } => PoisonCode::Oversized,
            Poison::NoRoute(_) => PoisonCode::NoRoute,
            Poison::UnknownStyle(_) => PoisonCode::UnknownStyle,
            Poison::InvalidKey(_) => PoisonCode::InvalidKey,
            Poison::ForeignSource(_) => PoisonCode::ForeignSource,
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
    /// Under a prefix: `<prefix><input stem>.<style>.<ext>` (a video).
    Prefix(String),
    /// Styled frames with the input frames' names and formats, under this prefix (a frame prefix
    /// input only).
    Frames(String),
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
    /// Quality of JPEG frames written back (1-100).
    pub jpeg_quality: Option<u8>,
}

pub const SCHEMA: &str = "stylestream.job/1";
/// A segment job of a cut video: `{"schema": SEGMENT_SCHEMA, "plan": ID, "segment": N}`.
pub const SEGMENT_SCHEMA: &str = "stylestream.segment/1";
/// The stitch of a cut video: `{"schema": STITCH_SCHEMA, "plan": ID}`.
pub const STITCH_SCHEMA: &str = "stylestream.stitch/1";

/// What a message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A job as its event describes it.
    Job(JobRequest),
    /// Segment `index` of the cut video whose plan is `plan` (everything else is in the plan).
    Segment { plan: String, index: u32 },
    /// The stitch of the cut video whose plan is `plan`.
    Stitch { plan: String },
}

impl Request {
    /// The job's id: the event's own, else `fallback` (a message's); a segment's and a
    /// stitch's derive from their plan.
    pub fn id(&self, fallback: &str) -> String {
        match self {
            Request::Job(j) => j.id.clone().unwrap_or_else(|| fallback.to_string()),
            Request::Segment { plan, index } => format!("{plan}.s{index}"),
            Request::Stitch { plan } => format!("{plan}.stitch"),
        }
    }

    /// The cut video it belongs to, if any.
    pub fn plan(&self) -> Option<&str> {
        match self {
            Request::Job(_) => None,
            Request::Segment { plan, .. } | Request::Stitch { plan } => Some(plan),
        }
    }
}

/// The message of segment `index` of plan `plan`.
pub fn segment_message(plan: &str, index: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "schema": SEGMENT_SCHEMA, "plan": plan, "segment": index }))
        .unwrap_or_default()
}

/// The message of the stitch of plan `plan`.
pub fn stitch_message(plan: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "schema": STITCH_SCHEMA, "plan": plan })).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartEvent {
    #[serde(rename = "schema")]
    _schema: String,
    plan: String,
    segment: Option<u32>,
}

/// Video containers a job may ask for (`format`, or an output key's extension).
pub const FORMATS: &[&str] = &["mp4", "mov", "mkv"];
/// x264/x265 speed presets a job may ask for (`placebo` is left out: it only burns GPU hours'
/// worth of CPU).
pub const PRESETS: &[&str] =
    &["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"];
/// Largest `crf` (x264 and x265 stop at 51).
pub const MAX_CRF: u32 = 51;
/// Longest key or prefix accepted from an event, bytes (the stores allow 1024).
pub const MAX_KEY_BYTES: usize = 1024;

/// Where storage notifications must come from: the media store's bucket or container (and,
/// for Azure, its storage account when known) and its root prefix. Keys in notifications are
/// made relative to that prefix; anything outside it is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// Bucket (S3) or container (Azure) that notifications must name; `None` refuses every
    /// storage notification (a local store has no notifications unless configured).
    pub bucket: Option<String>,
    /// Azure storage account (from the Event Grid `topic`), checked when set.
    pub account: Option<String>,
    /// The store's root prefix inside the bucket (`media` for `az://c/media`), without slashes.
    pub prefix: String,
}

impl Source {
    /// The key of `path` (a path inside the bucket) relative to the store's root prefix.
    fn relative<'a>(&self, path: &'a str) -> Result<&'a str, Poison> {
        if self.prefix.is_empty() {
            return Ok(path);
        }
        path.strip_prefix(self.prefix.as_str()).and_then(|p| p.strip_prefix('/')).ok_or_else(|| {
            Poison::ForeignSource(format!("object {path:?} is outside the store's prefix {:?}", self.prefix))
        })
    }

    fn check_bucket(&self, what: &str, name: Option<&str>) -> Result<(), Poison> {
        match (&self.bucket, name) {
            (Some(want), Some(got)) if want == got => Ok(()),
            (Some(want), Some(got)) => Err(Poison::ForeignSource(format!("{what} {got:?} is not the media store's {want:?}"))),
            (Some(_), None) => Err(Poison::Invalid(format!("the notification names no {what}"))),
            (None, _) => Err(Poison::ForeignSource(format!("storage notifications are not accepted: the media store has no {what} configured (storage.notification_source)"))),
        }
    }
}

/// A job id: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-` (it names log
/// objects).
pub fn check_id(id: &str) -> Result<(), Poison> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '-'])
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Poison::Invalid(format!(
            "`id` {:?} is not 1-128 of A-Z a-z 0-9 . _ - (not starting with . or -)",
            shorten(id)
        )))
    }
}

/// A style name: 1 to 64 of `A-Z a-z 0-9 _ -` (it names a model file).
pub fn check_style(style: &str) -> Result<(), Poison> {
    let ok = !style.is_empty()
        && style.len() <= 64
        && style.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Poison::UnknownStyle(format!(
            "style {:?} is not a model name (1-64 letters, digits, - and _)",
            shorten(style)
        )))
    }
}

/// A key or prefix from an event: at most [`MAX_KEY_BYTES`], no control characters (NUL
/// included). The store checks the rest (`..`, empty segments, escapes) before use.
fn check_key(what: &str, key: &str) -> Result<(), Poison> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(Poison::InvalidKey(format!(
            "`{what}` {:?} is empty, over {MAX_KEY_BYTES} bytes or holds control characters",
            shorten(key)
        )));
    }
    Ok(())
}

/// A container from the fixed set, lower-cased (a leading dot is dropped).
pub fn map_format(format: &str) -> Result<String, Poison> {
    let f = format.trim_start_matches('.').to_ascii_lowercase();
    if FORMATS.contains(&f.as_str()) {
        Ok(f)
    } else {
        Err(Poison::Invalid(format!("`format` {:?} is not one of {}", shorten(format), FORMATS.join(", "))))
    }
}

/// The first 64 characters of a hostile value, for messages.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

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
    output_frames_prefix: Option<String>,
    jpeg_quality: Option<u8>,
    crf: Option<u32>,
    preset: Option<String>,
    fps: Option<f64>,
    format: Option<String>,
}

/// The schema of control messages (`{"schema": "stylestream.control/1", "cancel": "<job id>"}`).
pub const CONTROL_SCHEMA: &str = "stylestream.control/1";

/// A control message: what to do to jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Cancel the job with this id, running or not yet started.
    Cancel(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlEvent {
    #[allow(dead_code)]
    schema: String,
    cancel: String,
}

/// Whether a body is a control message (by its schema); checked cheaply, before `parse_control`.
pub fn is_control(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("schema").and_then(|s| s.as_str().map(|s| s == CONTROL_SCHEMA)))
        .unwrap_or(false)
}

/// Parses a control message.
pub fn parse_control(body: &[u8], max_bytes: usize) -> Result<Control, Poison> {
    if body.len() > max_bytes {
        return Err(Poison::Oversized { size: body.len(), max: max_bytes });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Poison::MalformedJson(e.to_string()))?;
    let schema = value.get("schema").and_then(|s| s.as_str()).unwrap_or_default().to_string();
    if schema != CONTROL_SCHEMA {
        return Err(Poison::UnknownSchema(schema));
    }
    let e: ControlEvent = serde_json::from_value(value).map_err(|e| Poison::Invalid(e.to_string()))?;
    check_id(&e.cancel)?;
    Ok(Control::Cancel(e.cancel))
}

/// Parses a message body into the jobs it asks for (a notification may name several objects;
/// objects no route wants, such as frames before their trigger, give no job).
pub fn parse(body: &[u8], max_bytes: usize, routes: &[Route], source: &Source) -> Result<Vec<Request>, Poison> {
    parse_jobs(body, max_bytes, routes, source)
}

fn parse_jobs(body: &[u8], max_bytes: usize, routes: &[Route], source: &Source) -> Result<Vec<Request>, Poison> {
    if body.len() > max_bytes {
        return Err(Poison::Oversized { size: body.len(), max: max_bytes });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Poison::MalformedJson(e.to_string()))?;
    if let Some(schema) = value.get("schema") {
        let schema = schema.as_str().unwrap_or_default().to_string();
        if schema == SEGMENT_SCHEMA || schema == STITCH_SCHEMA {
            let e: PartEvent = serde_json::from_value(value).map_err(|e| Poison::Invalid(e.to_string()))?;
            check_id(&e.plan)
                .map_err(|_| Poison::Invalid(format!("`plan` {:?} is not a plan id", shorten(&e.plan))))?;
            return match (schema == SEGMENT_SCHEMA, e.segment) {
                (true, Some(index)) => Ok(vec![Request::Segment { plan: e.plan, index }]),
                (false, None) => Ok(vec![Request::Stitch { plan: e.plan }]),
                (true, None) => Err(Poison::Invalid("a segment message needs `segment`".into())),
                (false, Some(_)) => Err(Poison::Invalid("a stitch message has no `segment`".into())),
            };
        }
        if schema != SCHEMA {
            return Err(Poison::UnknownSchema(schema));
        }
        let e: OwnEvent = serde_json::from_value(value).map_err(|e| Poison::Invalid(e.to_string()))?;
        return own(e).map(|j| vec![Request::Job(j)]);
    }
    if value.get("Records").is_some() {
        return s3(&value, routes, source).map(|v| v.into_iter().map(Request::Job).collect());
    }
    let events: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    if events.iter().all(|e| e.get("eventType").is_some()) && !events.is_empty() {
        return event_grid(&events, routes, source).map(|v| v.into_iter().map(Request::Job).collect());
    }
    Err(Poison::UnknownSchema("none: expected a `schema` field, an Event Grid event or S3 Records".into()))
}

fn own(e: OwnEvent) -> Result<JobRequest, Poison> {
    if let Some(id) = &e.id {
        check_id(id)?;
    }
    for (what, v) in [
        ("input", &e.input),
        ("input_prefix", &e.input_prefix),
        ("output", &e.output),
        ("output_prefix", &e.output_prefix),
        ("output_frames_prefix", &e.output_frames_prefix),
    ] {
        if let Some(v) = v {
            check_key(what, v)?;
        }
    }
    check_style(&e.style)?;
    let format = e.format.as_deref().map(map_format).transpose()?;
    if let Some(o) = &e.output {
        let ext = o.rsplit('/').next().and_then(|n| n.rsplit_once('.')).map(|(_, x)| x).unwrap_or_default();
        map_format(ext).map_err(|_| {
            Poison::Invalid(format!("`output` {:?} does not end in .{}", shorten(o), FORMATS.join(", .")))
        })?;
    }
    if let Some(p) = &e.preset {
        if !PRESETS.contains(&p.as_str()) {
            return Err(Poison::Invalid(format!("`preset` {:?} is not one of {}", shorten(p), PRESETS.join(", "))));
        }
    }
    let input = match (e.input, e.input_prefix) {
        (Some(i), None) => Input::Object(i),
        (None, Some(p)) => Input::Prefix(with_slash(p)),
        _ => return Err(Poison::Invalid("give exactly one of `input` and `input_prefix`".into())),
    };
    let output = match (e.output, e.output_prefix, e.output_frames_prefix) {
        (Some(o), None, None) => Output::Object(o),
        (None, Some(p), None) => Output::Prefix(with_slash(p)),
        (None, None, Some(p)) if matches!(input, Input::Prefix(_)) => Output::Frames(with_slash(p)),
        (None, None, Some(_)) => {
            return Err(Poison::Invalid("`output_frames_prefix` needs an `input_prefix` of frames".into()))
        }
        _ => {
            return Err(Poison::Invalid(
                "give exactly one of `output`, `output_prefix` and `output_frames_prefix`".into(),
            ))
        }
    };
    if e.jpeg_quality.is_some_and(|q| !(1..=100).contains(&q)) {
        return Err(Poison::Invalid("`jpeg_quality` must be 1..=100".into()));
    }
    if e.crf.is_some_and(|c| c > MAX_CRF) {
        return Err(Poison::Invalid(format!("`crf` must be 0..={MAX_CRF}")));
    }
    if e.fps.is_some_and(|f| !(f.is_finite() && f > 0.0 && f <= 1000.0)) {
        return Err(Poison::Invalid("`fps` must be in (0, 1000]".into()));
    }
    Ok(JobRequest {
        id: e.id,
        input,
        style: e.style,
        output,
        crf: e.crf,
        preset: e.preset,
        fps: e.fps,
        format,
        jpeg_quality: e.jpeg_quality,
    })
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

fn event_grid(events: &[&serde_json::Value], routes: &[Route], source: &Source) -> Result<Vec<JobRequest>, Poison> {
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

fn s3(value: &serde_json::Value, routes: &[Route], source: &Source) -> Result<Vec<JobRequest>, Poison> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The job requests of a message (segment and stitch messages have their own test).
    fn parse(body: &[u8], max_bytes: usize, routes: &[Route], source: &Source) -> Result<Vec<JobRequest>, Poison> {
        super::parse(body, max_bytes, routes, source).map(|v| {
            v.into_iter()
                .map(|r| match r {
                    Request::Job(j) => j,
                    other => panic!("not a job: {other:?}"),
                })
                .collect()
        })
    }

    #[test]
    fn segment_and_stitch_messages_name_a_checked_plan() {
        let p = |b: &[u8]| super::parse(b, 4096, &[], &Source::default());
        assert_eq!(p(&segment_message("video-1", 3)).unwrap(), [Request::Segment { plan: "video-1".into(), index: 3 }]);
        assert_eq!(p(&stitch_message("video-1")).unwrap(), [Request::Stitch { plan: "video-1".into() }]);
        assert_eq!(Request::Segment { plan: "v".into(), index: 2 }.id("x"), "v.s2");
        for bad in [
            r#"{"schema":"stylestream.segment/1","plan":"../../etc","segment":1}"#,
            r#"{"schema":"stylestream.segment/1","plan":"v"}"#,
            r#"{"schema":"stylestream.stitch/1","plan":"v","segment":1}"#,
            r#"{"schema":"stylestream.segment/1","plan":"v","segment":-1}"#,
            r#"{"schema":"stylestream.segment/1","plan":"v","segment":1,"input":"x"}"#,
        ] {
            assert_eq!(p(bad.as_bytes()).unwrap_err().code(), PoisonCode::InvalidEvent, "{bad}");
        }
    }

    fn media() -> Source {
        Source { bucket: Some("media".into()), account: None, prefix: String::new() }
    }

    fn routes() -> Vec<Route> {
        vec![
            Route {
                prefix: "incoming/udnie/".into(),
                style: "udnie".into(),
                output_prefix: "styled/udnie/".into(),
                output_frames_prefix: None,
                trigger: None,
                fps: None,
                format: None,
            },
            Route {
                prefix: "frames/".into(),
                style: "wave".into(),
                output_prefix: "styled/frames/".into(),
                output_frames_prefix: None,
                trigger: Some("_READY".into()),
                fps: Some(25.0),
                format: None,
            },
        ]
    }

    #[test]
    fn control_messages_name_a_valid_job_id() {
        let ok = br#"{"schema":"stylestream.control/1","cancel":"job-7"}"#;
        assert!(is_control(ok));
        assert_eq!(parse_control(ok, 4096), Ok(Control::Cancel("job-7".into())));
        assert!(!is_control(br#"{"schema":"stylestream.job/1"}"#));
        let bad = br#"{"schema":"stylestream.control/1","cancel":"../x"}"#;
        assert_eq!(parse_control(bad, 4096).unwrap_err().code().as_str(), "invalid-event");
        let extra = br#"{"schema":"stylestream.control/1","cancel":"a","rm":"-rf"}"#;
        assert_eq!(parse_control(extra, 4096).unwrap_err().code().as_str(), "invalid-event");
    }

    #[test]
    fn our_own_events_parse_and_bad_ones_say_why() {
        let j = parse(
            br#"{"schema":"stylestream.job/1","input":"in/a.mp4","style":"udnie","output":"out/a.mp4","crf":20}"#,
            4096,
            &[],
            &Source::default(),
        )
        .unwrap();
        assert_eq!(j[0].input, Input::Object("in/a.mp4".into()));
        assert_eq!(j[0].output, Output::Object("out/a.mp4".into()));
        assert_eq!(j[0].crf, Some(20));
        let e = |b: &[u8]| parse(b, 4096, &[], &Source::default()).unwrap_err().code().as_str();
        assert_eq!(e(b"{not json"), "malformed-json");
        assert_eq!(e(br#"{"schema":"stylestream.job/9","input":"a","style":"s","output":"o"}"#), "unknown-schema");
        assert_eq!(e(br#"{"schema":"stylestream.job/1","style":"s","output":"o"}"#), "invalid-event");
        assert_eq!(
            e(br#"{"schema":"stylestream.job/1","input":"a","style":"s","output":"o","evil":1}"#),
            "invalid-event"
        );
        assert_eq!(e(br#"{"hello":"world"}"#), "unknown-schema");
        assert_eq!(parse(&vec![b' '; 5000], 4096, &[], &Source::default()).unwrap_err().code().as_str(), "oversized");
    }

    #[test]
    fn storage_notifications_follow_the_routes() {
        let grid = br#"[{"eventType":"Microsoft.Storage.BlobCreated","subject":"/blobServices/default/containers/media/blobs/incoming/udnie/a b.mp4","data":{}}]"#;
        let j = parse(grid, 4096, &routes(), &media()).unwrap();
        assert_eq!(j[0].input, Input::Object("incoming/udnie/a b.mp4".into()));
        assert_eq!((j[0].style.as_str(), &j[0].output), ("udnie", &Output::Prefix("styled/udnie/".into())));
        let s3 = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"incoming/udnie/a+b%2B.mp4"}}}]}"#;
        assert_eq!(
            parse(s3, 4096, &routes(), &media()).unwrap()[0].input,
            Input::Object("incoming/udnie/a b+.mp4".into())
        );
        // Frames wait for their trigger; the trigger starts a job on the prefix.
        let frame = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"frames/shot1/00001.png"}}}]}"#;
        assert!(parse(frame, 4096, &routes(), &media()).unwrap().is_empty());
        let trigger = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"frames/shot1/_READY"}}}]}"#;
        let j = parse(trigger, 4096, &routes(), &media()).unwrap();
        assert_eq!(j[0].input, Input::Prefix("frames/shot1/".into()));
        assert_eq!(j[0].fps, Some(25.0));
        let stray = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"elsewhere/x.mp4"}}}]}"#;
        assert_eq!(parse(stray, 4096, &routes(), &media()).unwrap_err().code().as_str(), "no-route");
    }

    #[test]
    fn frames_go_back_as_frames_from_events_and_routes() {
        let j = parse(br#"{"schema":"stylestream.job/1","input_prefix":"in/shot","style":"udnie","output_frames_prefix":"out/shot","jpeg_quality":80}"#, 4096, &[], &Source::default()).unwrap();
        assert_eq!(
            (&j[0].input, &j[0].output, j[0].jpeg_quality),
            (&Input::Prefix("in/shot/".into()), &Output::Frames("out/shot/".into()), Some(80))
        );
        let e = |b: &[u8]| parse(b, 4096, &[], &Source::default()).unwrap_err().to_string();
        assert!(e(br#"{"schema":"stylestream.job/1","input":"a.mp4","style":"udnie","output_frames_prefix":"o/"}"#)
            .contains("needs an `input_prefix`"));
        assert!(e(br#"{"schema":"stylestream.job/1","input_prefix":"a/","style":"udnie","output_frames_prefix":"o/","jpeg_quality":0}"#).contains("jpeg_quality"));
        assert!(e(br#"{"schema":"stylestream.job/1","input_prefix":"a/","style":"udnie","output_prefix":"o/","output_frames_prefix":"o/"}"#).contains("exactly one"));
        let route = Route {
            prefix: "up/".into(),
            style: "wave".into(),
            output_prefix: String::new(),
            output_frames_prefix: Some("styled".into()),
            trigger: Some("_READY".into()),
            fps: None,
            format: None,
        };
        let trigger = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"up/a/shot1/_READY"}}}]}"#;
        let j = parse(trigger, 4096, &[route], &media()).unwrap();
        assert_eq!(
            (&j[0].input, &j[0].output),
            (&Input::Prefix("up/a/shot1/".into()), &Output::Frames("styled/a/shot1/".into()))
        );
    }

    fn own(fields: &str) -> String {
        format!(r#"{{"schema":"stylestream.job/1",{fields}}}"#)
    }

    #[test]
    fn every_field_of_our_schema_is_checked_or_mapped() {
        let ok = |f: &str| parse(own(f).as_bytes(), 65536, &[], &Source::default());
        let code = |f: &str| ok(f).unwrap_err().code().as_str();
        let base = r#""input":"in/a.mp4","style":"udnie","output_prefix":"out/""#;
        assert!(ok(base).is_ok());
        // ids name log objects: only a fixed alphabet.
        for id in ["../../etc/passwd", "/abs", "a/b", ".hidden", "-x", "a\u{0}b", "é", "", &"x".repeat(129)] {
            let f = format!(r#"{base},"id":{}"#, serde_json::to_string(id).unwrap());
            assert_eq!(code(&f), "invalid-event", "id {id:?}");
        }
        assert!(ok(&format!(r#"{base},"id":"job-1.a_b""#)).is_ok());
        // styles name model files.
        for style in ["../udnie", "/etc/passwd", "udnie.safetensors", "a b", "u\u{0}", "\u{202e}evil", ""] {
            let f = format!(
                r#""input":"in/a.mp4","style":{},"output_prefix":"out/""#,
                serde_json::to_string(style).unwrap()
            );
            assert_eq!(code(&f), "unknown-style", "style {style:?}");
        }
        // keys: control characters and overlong values are refused here, the rest by the store.
        for key in ["in/\u{0}a.mp4", "in/a\nb.mp4", &format!("in/{}.mp4", "a".repeat(1100))] {
            let f =
                format!(r#""input":{},"style":"udnie","output_prefix":"out/""#, serde_json::to_string(key).unwrap());
            assert_eq!(code(&f), "invalid-key", "key {key:?}");
        }
        // formats, presets, crf and fps from fixed sets and ranges.
        for bad in [
            r#""format":"../../x""#,
            r#""format":"m3u8""#,
            r#""format":"tee""#,
            r#""preset":"placebo""#,
            r#""preset":"fast -x264opts""#,
            r#""crf":52"#,
            r#""fps":0"#,
            r#""fps":1e300"#,
            r#""fps":-1"#,
        ] {
            assert_eq!(code(&format!("{base},{bad}")), "invalid-event", "{bad}");
        }
        assert_eq!(ok(&format!(r#"{base},"format":".MKV""#)).unwrap()[0].format.as_deref(), Some("mkv"));
        for out in ["out/a.m3u8", "out/a", "out/list.txt", "out/a.mp4/"] {
            let f = format!(r#""input":"in/a.mp4","style":"udnie","output":"{out}""#);
            assert!(matches!(code(&f), "invalid-event"), "{out}");
        }
        // Unknown fields (a typo or an attack) are refused, not ignored.
        assert_eq!(code(&format!(r#"{base},"codec":"rawvideo""#)), "invalid-event");
    }

    #[test]
    fn notifications_from_another_store_are_refused() {
        let s3 = |bucket: &str, key: &str| {
            format!(
                r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{bucket}"}},"object":{{"key":"{key}"}}}}}}]}}"#
            )
        };
        let code = |b: &str, src: &Source| parse(b.as_bytes(), 4096, &routes(), src).unwrap_err().code().as_str();
        assert_eq!(code(&s3("other", "incoming/udnie/a.mp4"), &media()), "foreign-source");
        assert_eq!(code(&s3("media", "incoming/udnie/a.mp4"), &Source::default()), "foreign-source");
        let prefixed = Source { bucket: Some("media".into()), account: None, prefix: "root".into() };
        assert_eq!(code(&s3("media", "incoming/udnie/a.mp4"), &prefixed), "foreign-source");
        let j = parse(s3("media", "root/incoming/udnie/a.mp4").as_bytes(), 4096, &routes(), &prefixed).unwrap();
        assert_eq!(j[0].input, Input::Object("incoming/udnie/a.mp4".into()));
        let grid = |container: &str, account: &str| {
            format!(
                r#"{{"eventType":"Microsoft.Storage.BlobCreated","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{account}","subject":"/blobServices/default/containers/{container}/blobs/incoming/udnie/a.mp4"}}"#
            )
        };
        let azure = Source { bucket: Some("media".into()), account: Some("acct".into()), prefix: String::new() };
        assert!(parse(grid("media", "acct").as_bytes(), 4096, &routes(), &azure).is_ok());
        assert_eq!(code(&grid("media", "evil"), &azure), "foreign-source");
        assert_eq!(code(&grid("other", "acct"), &azure), "foreign-source");
        // Encoded traversal in an S3 key decodes to a key the store refuses; NUL is refused here.
        assert_eq!(code(&s3("media", "incoming/udnie/%00.mp4"), &media()), "invalid-key");
    }
}
