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

mod notifications;
#[cfg(test)]
mod tests;

use notifications::{event_grid, s3};
