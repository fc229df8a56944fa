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
