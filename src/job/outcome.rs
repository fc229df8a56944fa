//! How a job ends, and the one set of words for it. Every consumer — the broker (dead-letter
//! reasons), metrics (label values), job logs, the status page and `/jobs` — takes its words
//! from the enums here; where two consumers spell an outcome differently (metric label values
//! keep `already_done`), the table below holds both.
//!
//! A leaf module: it imports nothing of the crate, so the event parser (`ingress`) and the
//! telemetry can use its words without depending on the rest of `job`.

use std::fmt;

/// Why a message or a job can never succeed: the `x-stylestream-reason` of its dead letter and
/// the `reason` label of `stylestream_dead_lettered_total`. An interface: never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoisonCode {
    /// The message is not JSON.
    MalformedJson,
    /// Its `schema` is not one this service reads.
    UnknownSchema,
    /// A field outside its set or range.
    InvalidEvent,
    /// Over `broker.max_message_bytes`.
    Oversized,
    /// A key or prefix the store refuses.
    InvalidKey,
    /// No model of that name.
    UnknownStyle,
    /// A storage notification from another bucket, container, account or prefix.
    ForeignSource,
    /// A storage notification no route matches.
    NoRoute,
    /// The input does not exist (or holds no frames).
    MissingInput,
    /// Over `max_input_bytes`, the disk, or `[service.media_limits]`.
    OversizedInput,
    /// A container outside the allowlist.
    UnsupportedInput,
    /// The input cannot be decoded.
    CorruptInput,
    /// The store refuses access to this object (while it accepts the service's credentials).
    AccessDenied,
    /// The store refuses the output (a write that can never succeed).
    OutputRejected,
    /// Failing for passing reasons for longer than `broker.retry_budget_secs`.
    RetryBudgetSpent,
    /// Cancelled (`stylestream cancel`, `DELETE /jobs/<id>`).
    Cancelled,
    /// Ran longer than `service.job_timeout_secs`.
    TimedOut,
    /// A segment or stitch message names a plan that does not exist.
    UnknownPlan,
}

impl PoisonCode {
    /// Every code, in the order the README lists them.
    pub const ALL: [PoisonCode; 18] = [
        PoisonCode::MalformedJson,
        PoisonCode::UnknownSchema,
        PoisonCode::InvalidEvent,
        PoisonCode::Oversized,
        PoisonCode::InvalidKey,
        PoisonCode::UnknownStyle,
        PoisonCode::ForeignSource,
        PoisonCode::NoRoute,
        PoisonCode::MissingInput,
        PoisonCode::OversizedInput,
        PoisonCode::UnsupportedInput,
        PoisonCode::CorruptInput,
        PoisonCode::AccessDenied,
        PoisonCode::OutputRejected,
        PoisonCode::RetryBudgetSpent,
        PoisonCode::Cancelled,
        PoisonCode::TimedOut,
        PoisonCode::UnknownPlan,
    ];

    /// The reason as the broker's header and the metric label carry it.
    pub const fn as_str(self) -> &'static str {
        match self {
            PoisonCode::MalformedJson => "malformed-json",
            PoisonCode::UnknownSchema => "unknown-schema",
            PoisonCode::InvalidEvent => "invalid-event",
            PoisonCode::Oversized => "oversized",
            PoisonCode::InvalidKey => "invalid-key",
            PoisonCode::UnknownStyle => "unknown-style",
            PoisonCode::ForeignSource => "foreign-source",
            PoisonCode::NoRoute => "no-route",
            PoisonCode::MissingInput => "missing-input",
            PoisonCode::OversizedInput => "oversized-input",
            PoisonCode::UnsupportedInput => "unsupported-input",
            PoisonCode::CorruptInput => "corrupt-input",
            PoisonCode::AccessDenied => "access-denied",
            PoisonCode::OutputRejected => "output-rejected",
            PoisonCode::RetryBudgetSpent => "retry-budget-spent",
            PoisonCode::Cancelled => "cancelled",
            PoisonCode::TimedOut => "timed-out",
            PoisonCode::UnknownPlan => "unknown-plan",
        }
    }
}

impl fmt::Display for PoisonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job failed for a passing reason: the `cause` label of `stylestream_retries_total` and
/// `stylestream_trouble`, and the heading of its `/readyz` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// The store is unreachable, timing out or failing (5xx, 429).
    Store,
    /// The local work directory is full or failing.
    Disk,
    /// The store refuses the service's credentials as a whole.
    Credentials,
    /// Anything else (a GPU failure, a busy output).
    Other,
}

impl Cause {
    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::Store => "store",
            Cause::Disk => "disk",
            Cause::Credentials => "credentials",
            Cause::Other => "other",
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Styled and committed.
    Done { output: String, frames: u64 },
    /// Its output was already complete for this input, model and settings: no GPU work.
    AlreadyDone { output: String },
    /// Cut into `segments` segment jobs, which any replica may take (their messages are
    /// published before this one is settled).
    Planned { output: String, segments: usize },
    /// Can never succeed: dead-letter it with this reason.
    Poison { code: PoisonCode, reason: String },
    /// May succeed later (store unreachable, disk full, a GPU failure): retry it later, within
    /// the retry budget.
    Transient { cause: Cause, reason: String },
    /// The store refuses the service's credentials: the service is unready and the job waits
    /// (without spending its retry budget) until they work again.
    Held { reason: String },
    /// Stopped by shutdown: hand it back.
    Interrupted,
}

impl Outcome {
    pub fn poison(code: PoisonCode, reason: impl Into<String>) -> Self {
        Outcome::Poison { code, reason: reason.into() }
    }

    pub fn transient(cause: Cause, reason: impl Into<String>) -> Self {
        Outcome::Transient { cause, reason: reason.into() }
    }

    /// Its kind, which names it for every consumer.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Done { .. } => OutcomeKind::Succeeded,
            Outcome::AlreadyDone { .. } => OutcomeKind::AlreadyDone,
            Outcome::Planned { .. } => OutcomeKind::Planned,
            Outcome::Poison { code: PoisonCode::Cancelled, .. } => OutcomeKind::Cancelled,
            Outcome::Poison { code: PoisonCode::TimedOut, .. } => OutcomeKind::TimedOut,
            Outcome::Poison { .. } => OutcomeKind::Failed,
            Outcome::Transient { .. } | Outcome::Held { .. } => OutcomeKind::HandedBack,
            Outcome::Interrupted => OutcomeKind::Interrupted,
        }
    }

    /// What went wrong, for outcomes that are not a success.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Poison { reason, .. } | Outcome::Transient { reason, .. } | Outcome::Held { reason } => {
                Some(reason)
            }
            _ => None,
        }
    }

    /// The cause of a passing failure (refused credentials included).
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Outcome::Transient { cause, .. } => Some(*cause),
            Outcome::Held { .. } => Some(Cause::Credentials),
            _ => None,
        }
    }
}

/// The kinds of outcome, each with its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    Succeeded,
    AlreadyDone,
    Planned,
    Failed,
    Cancelled,
    TimedOut,
    HandedBack,
    Interrupted,
}

impl OutcomeKind {
    /// Every kind.
    pub const ALL: [OutcomeKind; 8] = [
        OutcomeKind::Succeeded,
        OutcomeKind::AlreadyDone,
        OutcomeKind::Planned,
        OutcomeKind::Failed,
        OutcomeKind::Cancelled,
        OutcomeKind::TimedOut,
        OutcomeKind::HandedBack,
        OutcomeKind::Interrupted,
    ];

    /// The words of each kind: (status page and `/jobs`, job log, `stylestream_jobs_total`'s
    /// `outcome` label). The one table of them.
    const fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            OutcomeKind::Succeeded => ("succeeded", "succeeded", "succeeded"),
            OutcomeKind::AlreadyDone => ("already-done", "already-done", "already_done"),
            OutcomeKind::Planned => ("planned", "planned", "planned"),
            OutcomeKind::Failed => ("failed", "failed", "failed"),
            OutcomeKind::Cancelled => ("cancelled", "failed", "failed"),
            OutcomeKind::TimedOut => ("timed-out", "failed", "failed"),
            OutcomeKind::HandedBack => ("handed-back", "handed-back", "retried"),
            OutcomeKind::Interrupted => ("interrupted", "interrupted", "interrupted"),
        }
    }

    /// As the status page and `/jobs` show it.
    pub const fn as_str(self) -> &'static str {
        self.words().0
    }

    /// As the job log (`logs/<id>.json`, `outcome`) records it.
    pub const fn log_word(self) -> &'static str {
        self.words().1
    }

    /// The `outcome` label value of `stylestream_jobs_total` (an interface: never renamed).
    pub const fn metric_label(self) -> &'static str {
        self.words().2
    }

    /// Whether the job ended without its output and will not be retried: not succeeded,
    /// already done, or handed back to the queue.
    pub const fn is_failure(self) -> bool {
        !matches!(
            self,
            OutcomeKind::Succeeded | OutcomeKind::AlreadyDone | OutcomeKind::Planned | OutcomeKind::HandedBack
        )
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_kebab_case_words() {
        let mut seen = std::collections::BTreeSet::new();
        for c in PoisonCode::ALL {
            let s = c.as_str();
            assert!(s.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'), "{s}");
            assert!(seen.insert(s), "{s} twice");
        }
        let labels: std::collections::BTreeSet<_> = OutcomeKind::ALL.iter().map(|k| k.metric_label()).collect();
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            ["already_done", "failed", "interrupted", "planned", "retried", "succeeded"]
        );
    }

    #[test]
    fn kinds_follow_the_outcome() {
        assert_eq!(Outcome::poison(PoisonCode::Cancelled, "x").kind(), OutcomeKind::Cancelled);
        assert_eq!(Outcome::poison(PoisonCode::TimedOut, "x").kind().log_word(), "failed");
        assert_eq!(Outcome::Held { reason: "r".into() }.cause(), Some(Cause::Credentials));
        assert!(OutcomeKind::Cancelled.is_failure() && !OutcomeKind::HandedBack.is_failure());
        assert_eq!(OutcomeKind::AlreadyDone.metric_label(), "already_done");
        assert_eq!(OutcomeKind::AlreadyDone.as_str(), "already-done");
    }
}
