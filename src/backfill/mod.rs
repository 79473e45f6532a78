//! The backfill actor: every conversation a gap missed, fetched from the
//! Analytics API once the data is there, and written to the buffer as a
//! backfill record (`record.rs`) behind whatever was received meanwhile.
//!
//! - `config.rs`: `[backfill]` (the user docs);
//! - `plan.rs`: what a gap asks for (families, steps, what is kept);
//! - `progress.rs`: a gap's progress, kept in the buffer;
//! - `record.rs`: the record a conversation becomes.
//!
//! **Durable work.** Every [`CHECK_EVERY`] the actor reads the recorded
//! gaps and their progress (on the blocking pool: sled), picks the oldest
//! gap that has conversation topics, is not done, whose end is older than
//! `data_lag_secs` and whose retry time has come, and runs it page by
//! page. After each page its records are queued to the buffer and
//! *written and flushed* before the progress that counts them is stored
//! (flushed too), so after a `kill -9` a gap resumes at the first page
//! whose progress was not stored: nothing is lost, and at most the records
//! of that one page are written twice. A failure (the API, a malformed
//! answer, the buffer) stores `failed` with its reason and a retry time
//! that backs off with jitter; the gap resumes from where it stopped.
//! All calls go through `token::rest` and the shared rate limiter.
//!
//! Only conversations are backfilled here; queue observations are
//! repaired by snapshots (`crate::snapshots`).

pub mod config;
pub mod plan;
pub mod progress;
pub mod record;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use config::BackfillConfig;
use plan::{plan, Plan};
pub use progress::{Progress, State};

use crate::backoff::Backoff;
use crate::buffer::{Buffer, BufferError, Kind};
use crate::cluster::leadership::Leadership;
use crate::gap::GapRecord;
use crate::genesys::analytics::{DetailsQuery, DETAILS_PAGE_SIZE};
use crate::genesys::api::GenesysApi;
use crate::telemetry::Telemetry;
use crate::token::{rest, TokenActor};

/// How often the gaps are looked at for work.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Longest wait for a page's records to be written and flushed.
const WRITE_WAIT: Duration = Duration::from_secs(60);
/// Most pages of one step (1,000,000 conversations): a bound on a loop
/// the service's `totalHits` drives.
const MAX_PAGES: u64 = 10_000;

pub struct BackfillActor {
    work: Work,
    busy: bool,
    /// In a cluster only the leader backfills (its records are forwarded
    /// by it; a standby's would only be dropped).
    leadership: Arc<Leadership>,
}

impl BackfillActor {
    pub fn new(
        buffer: Buffer,
        api: GenesysApi,
        tokens: Addr<TokenActor>,
        telemetry: Arc<Telemetry>,
        config: BackfillConfig,
        call_backoff: Backoff,
        leadership: Arc<Leadership>,
    ) -> Self {
        BackfillActor {
            work: Work {
                buffer,
                api,
                tokens,
                telemetry,
                config,
                call_backoff,
            },
            busy: false,
            leadership,
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.busy || !self.leadership.is_leader() {
            return;
        }
        self.busy = true;
        let work = self.work.clone();
        ctx.spawn(
            async move { work.run_once().await }
                .into_actor(self)
                .map(|again, act, ctx| {
                    act.busy = false;
                    if again {
                        act.check(ctx);
                    }
                }),
        );
    }
}

impl Actor for BackfillActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.work.telemetry.alive("backfill");
        ctx.run_interval(CHECK_EVERY, |act, ctx| {
            act.work.telemetry.alive("backfill");
            act.check(ctx);
        });
        self.check(ctx);
    }
}

impl Supervised for BackfillActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The run under way is gone with the context; its progress is in
        // the buffer.
        self.busy = false;
    }
}

/// What one look at the gaps needs (cloned into its future).
#[derive(Clone)]
struct Work {
    buffer: Buffer,
    api: GenesysApi,
    tokens: Addr<TokenActor>,
    telemetry: Arc<Telemetry>,
    config: BackfillConfig,
    call_backoff: Backoff,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Call(#[from] rest::CallError),
    #[error("buffer: {0}")]
    Buffer(#[from] BufferError),
    #[error("the blocking pool failed: {0}")]
    Blocking(String),
}

/// Runs `f` on the blocking pool (sled, fsync).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BufferError> + Send + 'static,
) -> Result<T, RunError> {
    match actix_rt::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(RunError::from),
        Err(e) => Err(RunError::Blocking(e.to_string())),
    }
}

impl Work {
    /// Looks at the gaps, runs the first due one; `true` when it ran one
    /// to its end (look again at once).
    async fn run_once(self) -> bool {
        // Gaps without their topic names, and each distinct list once: a
        // connection's list rarely changes, so thousands of gaps name a
        // few lists (read every look, they would be hundreds of MB).
        let b = self.buffer.clone();
        let listed = blocking(move || {
            let gaps = b.gaps(None, false)?;
            let mut lists: HashMap<String, Arc<Vec<String>>> = HashMap::new();
            for gap in &gaps {
                if !lists.contains_key(&gap.topics_id) {
                    let topics = b.gap_topics(&gap.topics_id)?;
                    lists.insert(gap.topics_id.clone(), Arc::new(topics));
                }
            }
            Ok((gaps, lists, b.backfill_progresses()?))
        })
        .await;
        let (gaps, lists, stored) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                self.telemetry.repair.backfill_unreadable(&e);
                return false;
            }
        };
        let carries: HashMap<&String, bool> = lists
            .iter()
            .map(|(id, topics)| (id, plan::carries_conversations(topics)))
            .collect();
        let stored: HashMap<Vec<u8>, Progress> = stored
            .into_iter()
            .filter_map(|(k, v)| Some((k, Progress::decode(&v)?)))
            .collect();
        let now = crate::now_ms();
        let lag = self.config.data_lag_secs * 1000;
        let mut counts: HashMap<&'static str, u64> = HashMap::new();
        let mut due: Option<(GapRecord, Progress)> = None;
        for gap in gaps {
            if !carries.get(&gap.topics_id).copied().unwrap_or(false) {
                continue;
            }
            let progress = stored.get(&gap.key()[..]).cloned().unwrap_or_default();
            let waiting = gap.end_ms + lag > now;
            *counts
                .entry(if waiting && progress.state == State::Pending {
                    "waiting"
                } else {
                    progress.state.as_str()
                })
                .or_default() += 1;
            let ready = progress.state != State::Done
                && !waiting
                && progress.next_retry_ms.map_or(true, |at| at <= now);
            if ready && due.is_none() {
                due = Some((gap, progress));
            }
        }
        self.telemetry.repair.backfill_gaps(&counts);
        let Some((gap, mut progress)) = due else {
            return false;
        };
        let Some(plan) = plan(&gap, &lists[&gap.topics_id], &self.config) else {
            return false;
        };
        match self.run_gap(&gap, &plan, &mut progress).await {
            Ok(()) => {
                self.telemetry
                    .repair
                    .backfill_done(&gap.start, gap.connection, progress.records);
                true
            }
            Err(e) => {
                progress.state = State::Failed;
                progress.attempts += 1;
                let mut backoff = retry_backoff();
                let delay = (0..progress.attempts)
                    .map(|_| backoff.next_delay())
                    .last()
                    .unwrap_or_default();
                progress.last_error = Some(e.to_string());
                progress.next_retry_ms = Some(crate::now_ms() + delay.as_millis() as u64);
                progress.updated_ms = crate::now_ms();
                self.telemetry
                    .repair
                    .backfill_failed(&gap.start, gap.connection, &e, delay);
                let (b, key, value) = (self.buffer.clone(), gap.key(), progress.encode());
                if let Err(e) = blocking(move || b.set_backfill_progress(&key, &value)).await {
                    self.telemetry.repair.backfill_unreadable(&e);
                }
                false
            }
        }
    }

    async fn run_gap(
        &self,
        gap: &GapRecord,
        plan: &Plan,
        progress: &mut Progress,
    ) -> Result<(), RunError> {
        progress.state = State::Running;
        progress.steps = plan.steps.len();
        progress.page = progress.page.max(1);
        let key = gap.key();
        let mut seen: HashSet<String> = HashSet::new();
        while progress.step < plan.steps.len() {
            let step = &plan.steps[progress.step];
            let query = DetailsQuery {
                interval: format!(
                    "{}/{}",
                    crate::rfc3339_ms(step.start_ms),
                    crate::rfc3339_ms(step.end_ms)
                ),
                queue_ids: step.queue_ids.clone(),
                user_ids: step.user_ids.clone(),
                page_number: progress.page,
            };
            let api = self.api.clone();
            let page = rest::call(
                "conversation details query",
                &self.tokens,
                &self.telemetry,
                &self.call_backoff,
                move |t| {
                    let api = api.clone();
                    let query = query.clone();
                    async move { api.query_conversation_details(&t, &query).await }
                },
            )
            .await?;
            let records: Vec<(String, Vec<u8>)> = page
                .conversations
                .iter()
                .filter(|c| plan.keeps(step, c))
                .filter(|c| {
                    c["conversationId"]
                        .as_str()
                        .is_some_and(|id| seen.insert(id.to_owned()))
                })
                .filter_map(|c| record::backfill_record(c, gap))
                .collect();
            let full = page.conversations.len() as u64 >= DETAILS_PAGE_SIZE;
            if full
                && progress.page * DETAILS_PAGE_SIZE < page.total_hits
                && progress.page < MAX_PAGES
            {
                progress.page += 1;
            } else {
                progress.step += 1;
                progress.page = 1;
            }
            let written = records.len() as u64;
            progress.records += written;
            progress.updated_ms = crate::now_ms();
            let (b, value) = (self.buffer.clone(), progress.encode());
            blocking(move || {
                let now = crate::now_ms();
                for (topic, payload) in records {
                    b.submit_made(Kind::Backfill, now, &topic, payload)?;
                }
                if !b.wait_written(WRITE_WAIT) {
                    return Err(BufferError::Flush(
                        "the page's records were not written in time".into(),
                    ));
                }
                b.set_backfill_progress(&key, &value)
            })
            .await?;
            self.telemetry.repair.backfill_records(written);
        }
        progress.state = State::Done;
        progress.attempts = 0;
        progress.last_error = None;
        progress.next_retry_ms = None;
        progress.updated_ms = crate::now_ms();
        let (b, value) = (self.buffer.clone(), progress.encode());
        blocking(move || b.set_backfill_progress(&key, &value)).await
    }
}

/// The delays between a failing gap's attempts: 5 s doubling to 10 min,
/// with jitter.
fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(5), Duration::from_secs(600))
        .expect("constant bounds are valid")
}
