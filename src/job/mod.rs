//! A job's ends, apart from how it is scheduled: opening its input and output; stored frame
//! sequences styled back to storage (`frames`).

pub mod frames;
pub mod open;

pub use open::{open_job, open_job_with, OpenError};
