//! What users and scripts see while work runs: progress reporting.

pub mod progress;
pub mod metrics;
