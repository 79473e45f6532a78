//! The background generation jobs running: how to stop each. The job actor
//! itself is `generator::job`; the state holds only a [`Recipient`] of
//! [`StopJob`] per job, so it needs nothing from the generator.

use std::collections::HashMap;

use actix::{Message, Recipient};

/// Stops a background generation job.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopJob;

#[derive(Debug, Default)]
pub(crate) struct Jobs {
    running: HashMap<u64, Recipient<StopJob>>,
    last_id: u64,
}

impl Jobs {
    /// A fresh job id (the first is 1).
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    pub fn insert(&mut self, id: u64, job: Recipient<StopJob>) {
        self.running.insert(id, job);
    }

    /// The job `id` stopped.
    pub fn remove(&mut self, id: u64) {
        self.running.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Forgets every job; returns how to stop them.
    pub fn take_all(&mut self) -> Vec<Recipient<StopJob>> {
        self.running.drain().map(|(_, job)| job).collect()
    }
}
