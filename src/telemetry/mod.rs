//! What users, scripts and operators see while work runs: progress reporting, Prometheus
//! metrics, the job board, and the HTTP endpoints that serve them (metrics, health, readiness,
//! jobs, the status page).

pub mod http;
pub mod jobs;
pub mod metrics;
pub mod page;
pub mod progress;
pub mod stages;

pub use http::{serve_http, HttpError, HttpOptions};
pub use jobs::{BoardSnapshot, Canceller, FinishedJob, JobBoard, JobInProgress};
pub use metrics::Metrics;

/// Logs to stderr at `filter` (an `EnvFilter` directive; `warn` when it does not parse): JSON
/// lines, or plain text coloured when stderr is a terminal.
pub fn init_logging(filter: &str, json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if json {
        builder.json().init()
    } else {
        builder.without_time().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init()
    }
}
