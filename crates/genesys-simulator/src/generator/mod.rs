//! Event generation: [`emit()`] generates a batch now (under the state lock,
//! in chunks); background jobs ([`start_job`]) generate at a rate.

mod emit;
mod job;

pub(crate) use emit::{emit, GenerateOptions, NoTopics};
pub(crate) use job::{start_job, stop_jobs};
