//! The token actor: holds the OAuth client-credentials token every REST
//! call needs, and asks for a new one before the current one expires.
//!
//! Genesys has no refresh tokens: "refresh" is a new client-credentials
//! grant. Token lifetimes are per OAuth client (300 s to 48 h), so the
//! refresh point is computed from each grant's `expires_in`.
//!
//! Its callers make their REST calls through [`rest::call`] (a token from
//! this actor, one retry after a 401, bounded retries with backoff).

pub mod rest;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::backoff::Backoff;
use crate::genesys::api::{GenesysApi, Grant};
use crate::secret::Secret;
use crate::telemetry::{Telemetry, LIVENESS_INTERVAL};

/// Asks for a valid token; answered at once when one is held, otherwise
/// as soon as the next grant arrives.
#[derive(Message)]
#[rtype(result = "Result<Secret, TokenUnavailable>")]
pub struct GetToken;

/// A REST call was refused with 401 using this token: drop it and get
/// another (unless a newer one is already held).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TokenRejected(pub Secret);

/// The service said a token was revoked (a `token_revoked` notice on a
/// socket whose channel this token created; `None`: not known): get a new
/// one now. Every socket of the token gets the notice: those after the
/// first must not throw away the token granted meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TokenRevoked(pub Option<Secret>);

/// A channel must be made with a token that outlives this one, which is
/// still current: grant the next one now instead of at the refresh point
/// (a refresh margin shorter than the channel's rollover lead). The
/// current token stays in use until then.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RenewToken(pub Secret);

/// When the token given expires, if the actor still knows it (the current
/// token, or the one it replaced). A notification channel lives at most as
/// long as the token that created it, so its connection rolls over to a
/// channel made with the next token before then.
#[derive(Message)]
#[rtype(result = "Option<Instant>")]
pub struct ExpiryOf(pub Secret);

/// The token actor restarted or stopped before a token could be had.
#[derive(Debug, thiserror::Error)]
#[error("no access token: the token actor restarted or stopped")]
pub struct TokenUnavailable;

pub struct TokenActor {
    api: GenesysApi,
    client_id: String,
    client_secret: Secret,
    refresh_margin: Duration,
    backoff: Backoff,
    telemetry: Arc<Telemetry>,
    current: Option<(Secret, Instant)>,
    /// The token `current` replaced: still valid until it expires, and
    /// channels created with it still need its expiry.
    previous: Option<(Secret, Instant)>,
    waiting: Vec<oneshot::Sender<Secret>>,
    requesting: bool,
    /// The one scheduled request (refresh or retry); replaced, never piled up.
    next_request: Option<SpawnHandle>,
}

impl TokenActor {
    pub fn new(
        api: GenesysApi,
        client_id: String,
        client_secret: Secret,
        refresh_margin: Duration,
        backoff: Backoff,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        TokenActor {
            api,
            client_id,
            client_secret,
            refresh_margin,
            backoff,
            telemetry,
            current: None,
            previous: None,
            waiting: Vec::new(),
            requesting: false,
            next_request: None,
        }
    }

    fn valid_token(&self) -> Option<Secret> {
        self.current
            .as_ref()
            .filter(|(_, expires)| Instant::now() < *expires)
            .map(|(token, _)| token.clone())
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if let Some(previous) = self.next_request.take() {
            ctx.cancel_future(previous);
        }
        self.next_request = Some(ctx.run_later(delay, |act, ctx| {
            act.next_request = None;
            act.request(ctx);
        }));
    }

    fn request(&mut self, ctx: &mut Context<Self>) {
        if self.requesting {
            return;
        }
        if let Some(scheduled) = self.next_request.take() {
            ctx.cancel_future(scheduled);
        }
        self.requesting = true;
        let api = self.api.clone();
        let client_id = self.client_id.clone();
        let secret = self.client_secret.clone();
        let grant = async move { api.request_token(&client_id, &secret).await };
        ctx.spawn(grant.into_actor(self).map(|result, act, ctx| {
            act.requesting = false;
            match result {
                Ok(grant) => act.granted(grant, ctx),
                Err(error) => {
                    let delay = error
                        .retry_after()
                        .unwrap_or_else(|| act.backoff.next_delay());
                    act.telemetry.token.failed(&error, delay);
                    act.schedule(ctx, delay);
                }
            }
        }));
    }

    fn granted(&mut self, grant: Grant, ctx: &mut Context<Self>) {
        self.backoff.reset();
        let lifetime = grant.expires_in;
        // Never wait past four fifths of a lifetime, however short it is.
        let refresh_in = lifetime.saturating_sub(self.refresh_margin.min(lifetime / 5));
        self.telemetry.token.granted(lifetime, refresh_in);
        let replaced = self
            .current
            .replace((grant.access_token.clone(), Instant::now() + lifetime));
        if replaced.is_some() {
            self.previous = replaced;
        }
        for waiter in self.waiting.drain(..) {
            let _ = waiter.send(grant.access_token.clone());
        }
        self.schedule(ctx, refresh_in);
    }
}

impl Actor for TokenActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.telemetry.alive("token");
        ctx.run_interval(LIVENESS_INTERVAL, |act, _| act.telemetry.alive("token"));
        self.request(ctx);
    }
}

impl Supervised for TokenActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.current = None;
        self.waiting.clear();
        self.requesting = false;
        self.next_request = None;
        self.backoff.reset();
    }
}

impl Handler<GetToken> for TokenActor {
    type Result = ResponseFuture<Result<Secret, TokenUnavailable>>;

    fn handle(&mut self, _: GetToken, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(token) = self.valid_token() {
            return Box::pin(async move { Ok(token) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        self.request(ctx);
        Box::pin(async move { rx.await.map_err(|_| TokenUnavailable) })
    }
}

impl Handler<ExpiryOf> for TokenActor {
    type Result = Option<Instant>;

    fn handle(&mut self, ExpiryOf(token): ExpiryOf, _: &mut Context<Self>) -> Option<Instant> {
        [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .find(|(held, _)| *held == token)
            .map(|(_, expires)| *expires)
    }
}

impl TokenActor {
    /// Stops handing out the current token if it is `token` (any token
    /// when `None`) and asks for a new one. The dropped token stays known
    /// to [`ExpiryOf`]: channels made with it still roll over on time.
    fn drop_current(&mut self, token: Option<&Secret>, ctx: &mut Context<Self>, why: &str) {
        let matches = self
            .current
            .as_ref()
            .is_some_and(|(t, _)| token.map_or(true, |given| t == given));
        if matches {
            tracing::warn!("{why}; requesting a new access token");
            self.previous = self.current.take();
            self.request(ctx);
        }
    }
}

impl Handler<TokenRejected> for TokenActor {
    type Result = ();

    fn handle(&mut self, TokenRejected(token): TokenRejected, ctx: &mut Context<Self>) {
        self.drop_current(Some(&token), ctx, "access token refused by the API");
    }
}

impl Handler<TokenRevoked> for TokenActor {
    type Result = ();

    fn handle(&mut self, TokenRevoked(token): TokenRevoked, ctx: &mut Context<Self>) {
        self.drop_current(token.as_ref(), ctx, "the service revoked an access token");
    }
}

impl Handler<RenewToken> for TokenActor {
    type Result = ();

    fn handle(&mut self, RenewToken(token): RenewToken, ctx: &mut Context<Self>) {
        if self.current.as_ref().is_some_and(|(t, _)| *t == token) {
            tracing::info!("renewing the access token early: a channel must outlive it");
            self.request(ctx);
        }
    }
}
