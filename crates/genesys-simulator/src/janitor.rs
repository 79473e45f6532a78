//! Periodic housekeeping: expires channels (closing their sockets) and
//! forgets expired tokens, so that expiry happens even when nobody calls.

use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context};
use actix_web::web;

use crate::state::SimState;

/// Expiry precision: a channel's socket closes at most this late.
const SWEEP_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Janitor {
    pub state: web::Data<SimState>,
}

impl Actor for Janitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_EVERY, |janitor, ctx| {
            if janitor.state.shutting_down() {
                ctx.stop();
            } else {
                janitor.state.sweep();
            }
        });
    }
}
