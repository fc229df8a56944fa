//! Why a job did not finish, and the one mapping from every such error to an [`Outcome`]: what
//! is the input's fault (poison), what may pass (the store, the local disk, a GPU), what a stop
//! was.

use std::path::Path;

use super::outcome::{Cause, Outcome, PoisonCode};
use crate::dataflow::PipelineError;
use crate::media::MediaError;
use crate::stop::StopReason;
use crate::storage::StoreError;

/// Why a job did not finish. Its text is what a user of the command line reads; a service
/// maps it to an [`Outcome`] with [`JobError::outcome`].
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The request can never run as asked (a bad key, a missing input, over a limit).
    #[error("{reason}")]
    Refused { code: PoisonCode, reason: String },
    /// A store request failed. When the failure is not passing, it is `code`'s fault
    /// (`missing-input` for reads, `output-rejected` for the output's writes).
    #[error("{source}")]
    Store { code: PoisonCode, source: StoreError },
    /// Reading or writing media (the input's content, or the local output files).
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The dataflow ended the job (a stop, a GPU failure, a frame missing).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The local work directory: full now, or failing.
    #[error("{0}")]
    Disk(String),
    /// Its output is being made by another job of this process.
    #[error("{0}")]
    Busy(String),
    /// The input and output do not go together (a video into one image, an output that is
    /// the input).
    #[error("{0}")]
    Usage(String),
    /// Anything else that went wrong on this machine (a thread or runtime that would not start).
    #[error("{0}")]
    Other(String),
}

impl JobError {
    pub fn refused(code: PoisonCode, reason: impl Into<String>) -> Self {
        JobError::Refused { code, reason: reason.into() }
    }

    /// A failed read of the input.
    pub fn read(source: StoreError) -> Self {
        JobError::Store { code: PoisonCode::MissingInput, source }
    }

    /// A failed write of the output.
    pub fn write(source: StoreError) -> Self {
        JobError::Store { code: PoisonCode::OutputRejected, source }
    }

    /// What the error means for the job: poison, passing trouble, held credentials or a stop.
    /// `input` names the input in the reason of media errors; `staging` is the local directory
    /// whose paths are left out of reasons (messages name objects, never staging files).
    pub fn outcome(&self, input: &str, staging: Option<&Path>) -> Outcome {
        let strip = |text: String| match staging {
            Some(dir) => text.replace(&format!("{}/", dir.display()), ""),
            None => text,
        };
        match self {
            JobError::Refused { code, reason } => Outcome::poison(*code, reason.clone()),
            JobError::Store { code, source } => store_outcome(*code, source),
            JobError::Media(m) | JobError::Pipeline(PipelineError::Media(m)) => {
                let text = strip(format!("{input}: {m}"));
                match m {
                    // Writing local files (a full disk): passing, for videos and frames alike.
                    MediaError::Write { .. } => Outcome::transient(Cause::Disk, text),
                    MediaError::ContainerNotAllowed { .. } => Outcome::poison(PoisonCode::UnsupportedInput, text),
                    m if m.is_over_limit() => Outcome::poison(PoisonCode::OversizedInput, text),
                    _ => Outcome::poison(PoisonCode::CorruptInput, text),
                }
            }
            JobError::Pipeline(PipelineError::Stopped(why)) => stopped(*why),
            JobError::Pipeline(e @ PipelineError::Reorder(_)) => {
                Outcome::poison(PoisonCode::CorruptInput, format!("{input}: {e}"))
            }
            JobError::Pipeline(e) => Outcome::transient(Cause::Other, e.to_string()),
            JobError::Disk(reason) => Outcome::transient(Cause::Disk, reason.clone()),
            JobError::Busy(reason) | JobError::Other(reason) => Outcome::transient(Cause::Other, reason.clone()),
            JobError::Usage(reason) => Outcome::poison(PoisonCode::InvalidEvent, strip(reason.clone())),
        }
    }
}

/// Store errors: refused credentials hold the job, passing trouble (the store or the local disk)
/// retries it later, anything else is `code`.
fn store_outcome(code: PoisonCode, e: &StoreError) -> Outcome {
    if e.is_auth_failure() {
        Outcome::Held { reason: e.to_string() }
    } else if let StoreError::Local { .. } = e {
        Outcome::transient(Cause::Disk, e.to_string())
    } else if e.is_transient() {
        Outcome::transient(Cause::Store, e.to_string())
    } else {
        Outcome::poison(code, e.to_string())
    }
}

/// The outcome of a job stopped by `why`.
pub fn stopped(why: StopReason) -> Outcome {
    match why {
        StopReason::Interrupted => Outcome::Interrupted,
        StopReason::Cancelled => {
            Outcome::poison(PoisonCode::Cancelled, "cancelled while it ran: nothing was published")
        }
        StopReason::TimedOut => {
            Outcome::poison(PoisonCode::TimedOut, "ran longer than service.job_timeout_secs: nothing was published")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_local_write_is_passing_disk_trouble_and_bad_content_is_poison() {
        let write = JobError::Media(MediaError::Write {
            path: "/work/stage/output.mp4".into(),
            reason: "No space left".into(),
        });
        let o = write.outcome("in/a.mp4", Some(Path::new("/work/stage")));
        assert_eq!(o, Outcome::transient(Cause::Disk, "in/a.mp4: cannot write output.mp4: No space left"));
        // The same write failure inside the dataflow means the same.
        let piped =
            JobError::Pipeline(PipelineError::Media(MediaError::Write { path: "x".into(), reason: "full".into() }));
        assert_eq!(piped.outcome("in", None).cause(), Some(Cause::Disk));
        let bad = JobError::Media(MediaError::Decode {
            path: "/work/stage/input.media".into(),
            reason: "invalid data".into(),
        });
        assert!(
            matches!(bad.outcome("in/a.mp4", Some(Path::new("/work/stage"))), Outcome::Poison { code: PoisonCode::CorruptInput, reason } if reason == "in/a.mp4: input.media: invalid data")
        );
        let stop = JobError::Pipeline(PipelineError::Stopped(StopReason::Cancelled));
        assert_eq!(stop.outcome("in", None).kind(), super::super::OutcomeKind::Cancelled);
        assert_eq!(
            JobError::Pipeline(PipelineError::Stopped(StopReason::Interrupted)).outcome("in", None),
            Outcome::Interrupted
        );
    }
}
