//! A gap's backfill progress as kept in the buffer (`buffer::backfill`),
//! JSON: what `gaps` shows, and where a restart resumes.

use serde::{Deserialize, Serialize};

/// Where a gap's backfill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not started (or asked to run again).
    #[default]
    Pending,
    /// Under way: `step` and `page` say what comes next.
    Running,
    /// Every step done; `records` written.
    Done,
    /// The last attempt failed (`last_error`); tried again at
    /// `next_retry_ms`, from where it stopped.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Progress {
    pub state: State,
    /// The next step of the gap's plan to run (see `plan.rs`).
    pub step: usize,
    /// The plan's steps (0 until it starts).
    pub steps: usize,
    /// The next page of the step (from 1).
    pub page: u64,
    /// Backfill records written (durably) so far.
    pub records: u64,
    /// Attempts that failed in a row.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_ms: Option<u64>,
    pub updated_ms: u64,
}

impl Progress {
    pub fn decode(bytes: &[u8]) -> Option<Progress> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("progress serialises")
    }

    /// One line for `gaps`: `backfill done, 37 records`.
    pub fn summary(&self) -> String {
        match self.state {
            State::Pending => "backfill pending".to_owned(),
            State::Running => format!(
                "backfill running (step {} of {}, page {}), {} records",
                self.step + 1,
                self.steps,
                self.page,
                self.records
            ),
            State::Done => format!("backfilled, {} records", self.records),
            State::Failed => format!(
                "backfill failed {} times ({}), next try {}, {} records so far",
                self.attempts,
                self.last_error.as_deref().unwrap_or("no reason"),
                self.next_retry_ms
                    .map_or_else(|| "soon".to_owned(), crate::rfc3339_ms),
                self.records
            ),
        }
    }
}
