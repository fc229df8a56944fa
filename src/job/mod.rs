//! A job's ends, apart from how it is scheduled: opening its input and output.

pub mod open;

pub use open::{open_job, open_job_with, OpenError};
