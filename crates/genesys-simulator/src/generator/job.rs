//! Background generation jobs (`--rate`, `POST /sim/generate` with
//! `rate_per_sec`): one actor per job, generating at its rate until its
//! count runs out, it is stopped (`state::StopJob`) or the server stops.

use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext, Context, Handler};
use actix_web::web;

use super::emit::{emit, GenerateOptions, NoTopics};
use crate::state::{SimState, StopJob};

/// Most events one tick of a background job generates.
const MAX_PER_TICK: u64 = 20_000;
/// Tick of background jobs.
const TICK: Duration = Duration::from_millis(20);

/// A background generation job: `rate` events per second, until `remaining`
/// runs out (forever when `None`), the job is stopped, or the server stops.
pub(crate) struct GeneratorJob {
    state: web::Data<SimState>,
    id: u64,
    rate: f64,
    remaining: Option<u64>,
    opts: GenerateOptions,
    /// Events due but not generated yet (token bucket).
    budget: f64,
    last_tick: Instant,
}

impl Actor for GeneratorJob {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(job = self.id, rate = self.rate, count = ?self.remaining, "generator started");
        self.last_tick = Instant::now();
        ctx.run_interval(TICK, |job, ctx| job.tick(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::info!(job = self.id, "generator stopped");
        self.state.lock().jobs.remove(self.id);
    }
}

impl Handler<StopJob> for GeneratorJob {
    type Result = ();

    fn handle(&mut self, _msg: StopJob, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl GeneratorJob {
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.state.shutting_down() || self.remaining == Some(0) {
            ctx.stop();
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        // After a stall, catch up by at most one second's worth of events.
        self.budget = (self.budget + self.rate * elapsed).min(self.rate + 1.0);
        // Bounded per tick, so one tick never holds the arbiter for long.
        let mut due = (self.budget.floor() as u64).min(MAX_PER_TICK);
        if let Some(remaining) = self.remaining {
            due = due.min(remaining);
        }
        if due == 0 {
            return;
        }
        match emit(&self.state, due, &self.opts) {
            Ok(outcome) => {
                self.budget -= outcome.emitted as f64;
                if let Some(remaining) = &mut self.remaining {
                    *remaining -= outcome.emitted.min(*remaining);
                }
            }
            // Nobody subscribed: nothing is owed for the idle time.
            Err(NoTopics) => self.budget = 0.0,
        }
    }
}

/// Starts a background job on the current arbiter; returns its id.
pub(crate) fn start_job(
    state: web::Data<SimState>,
    rate: f64,
    count: Option<u64>,
    opts: GenerateOptions,
) -> u64 {
    let id = state.lock().jobs.next_id();
    let job = GeneratorJob {
        state: state.clone(),
        id,
        rate,
        remaining: count,
        opts,
        budget: 0.0,
        last_tick: Instant::now(),
    };
    let addr = job.start();
    state.lock().jobs.insert(id, addr.recipient());
    id
}

/// Stops every background job; returns how many there were.
pub(crate) fn stop_jobs(state: &SimState) -> usize {
    let jobs = state.lock().jobs.take_all();
    for job in &jobs {
        job.do_send(StopJob);
    }
    jobs.len()
}
