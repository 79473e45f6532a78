//! Access tokens: issuing them, the bearer check with its per-token rate
//! limit, expiry and revocation. Which channels end with a token is the
//! caller's business (see `SimState`): this table only says which tokens
//! are still valid.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use super::counters::Counters;
use super::settings::{ExpiredTokenCode, RateLimitForm, Settings};
use crate::errors::ApiError;

/// Most access tokens valid at once. Tokens live `--token-ttl` (a day by
/// default): a client logging in in a loop would otherwise grow the table
/// without end. Beyond it the oldest token is revoked (its next call: 401).
pub(crate) const MAX_TOKENS: usize = 100_000;

/// The rate limit window one REST call was counted in, for the
/// `inin-ratelimit-*` headers of its response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimitInfo {
    pub allowed: u32,
    pub count: u32,
    /// Seconds until the oldest counted request leaves the window.
    pub reset_secs: u64,
}

/// The sliding window of the per-token rate limit.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Who is calling: the OAuth client and the token it used.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    pub client_id: String,
    pub token: String,
}

#[derive(Debug)]
struct TokenRecord {
    client_id: String,
    expires: SystemTime,
    /// When its REST calls within the last minute came (at most the rate
    /// limit's worth: the bound of this queue).
    recent_requests: VecDeque<Instant>,
}

/// The valid tokens, and the recently expired ones (they answer
/// `credentials.expired` rather than `bad.credentials`).
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    tokens: HashMap<String, TokenRecord>,
    /// Issued tokens, oldest first (may still name removed ones).
    token_order: VecDeque<String>,
    /// Tokens that expired (not revoked), newest last, at most
    /// `MAX_TOKENS`: they answer `credentials.expired` rather than
    /// `bad.credentials`.
    expired_tokens: HashSet<String>,
    expired_order: VecDeque<String>,
    /// 401s answered for expired tokens (chooses the code when alternating).
    expired_answers: u64,
    /// 429s answered so far (chooses the form when alternating).
    rate_limited: u64,
}

impl Tokens {
    /// Whether `token` is valid (issued, not expired as far as the last
    /// sweep or call knows, not revoked).
    pub fn is_live(&self, token: &str) -> bool {
        self.tokens.contains_key(token)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Tokens not past their expiry at `now`.
    pub fn active(&self, now: SystemTime) -> usize {
        self.tokens.values().filter(|t| t.expires > now).count()
    }

    /// Adds `token` for `client_id`. Beyond [`MAX_TOKENS`] the oldest are
    /// revoked; says whether any was (their channels must then end).
    pub fn issue(&mut self, token: String, client_id: &str, expires: SystemTime) -> bool {
        self.tokens.insert(
            token.clone(),
            TokenRecord {
                client_id: client_id.to_owned(),
                expires,
                recent_requests: VecDeque::new(),
            },
        );
        self.token_order.push_back(token);
        let mut evicted = false;
        while self.tokens.len() > MAX_TOKENS {
            let Some(oldest) = self.token_order.pop_front() else {
                break;
            };
            evicted |= self.tokens.remove(&oldest).is_some();
        }
        evicted
    }

    /// A valid token past its expiry at `now` is removed and remembered as
    /// expired; says whether `token` was one (its channels must then end).
    pub fn expire_if_due(&mut self, token: &str, now: SystemTime) -> bool {
        match self.tokens.get(token) {
            Some(record) if record.expires <= now => {
                self.tokens.remove(token);
                self.remember_expired(token.to_owned());
                true
            }
            _ => false,
        }
    }

    /// Resolves a bearer token (unknown and expired ones are 401) and
    /// counts the call against the token's rate limit (beyond it: 429).
    /// A token past its expiry must have gone through
    /// [`Tokens::expire_if_due`] first.
    pub fn authenticate(
        &mut self,
        token: &str,
        now: Instant,
        settings: &Settings,
        counters: &mut Counters,
    ) -> Result<(Auth, Option<RateLimitInfo>), ApiError> {
        let limit = settings.rate_limit_per_minute;
        if !self.tokens.contains_key(token) && self.expired_tokens.contains(token) {
            return Err(self.expired_error(settings));
        }
        let Some(record) = self.tokens.get_mut(token) else {
            return Err(ApiError::bad_credentials());
        };
        let auth = Auth {
            client_id: record.client_id.clone(),
            token: token.to_owned(),
        };
        if limit == 0 {
            return Ok((auth, None));
        }
        while record
            .recent_requests
            .front()
            .is_some_and(|&t| now.duration_since(t) >= RATE_WINDOW)
        {
            record.recent_requests.pop_front();
        }
        let reset_secs = record.recent_requests.front().map_or(60, |&oldest| {
            RATE_WINDOW
                .saturating_sub(now.duration_since(oldest))
                .as_secs()
                .max(1)
        });
        if record.recent_requests.len() >= limit as usize {
            // Refused calls do not count: the window frees up on its own.
            let with_retry_after = match settings.rate_limit_form {
                RateLimitForm::RetryAfter => true,
                RateLimitForm::NoRetryAfter => false,
                RateLimitForm::Alternate => self.rate_limited % 2 == 1,
            };
            self.rate_limited += 1;
            let err = if with_retry_after {
                counters.rate_limited_with_retry_after += 1;
                ApiError::rate_limited(Some(reset_secs), limit)
            } else {
                counters.rate_limited_without_retry_after += 1;
                ApiError::rate_limited(None, limit)
            };
            return Err(err);
        }
        record.recent_requests.push_back(now);
        let count = record.recent_requests.len() as u32;
        Ok((
            auth,
            Some(RateLimitInfo {
                allowed: limit,
                count,
                reset_secs,
            }),
        ))
    }

    /// Revokes the one live token equal to `token`, or starting with
    /// `prefix`; `Err` says why nothing was revoked.
    pub fn revoke_one(
        &mut self,
        token: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<(), ApiError> {
        let matches: Vec<String> = match (token, prefix) {
            (Some(t), None) => self.tokens.keys().filter(|k| *k == t).cloned().collect(),
            (None, Some(p)) if !p.is_empty() => self
                .tokens
                .keys()
                .filter(|k| k.starts_with(p))
                .take(2)
                .cloned()
                .collect(),
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of token and token_prefix (non-empty)",
                ))
            }
        };
        let victim = match matches.as_slice() {
            [one] => one.clone(),
            [] => return Err(ApiError::not_found("No live token matches")),
            _ => {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::CONFLICT,
                    "conflict",
                    "More than one live token has this prefix: give a longer one",
                ))
            }
        };
        self.tokens.remove(&victim);
        Ok(())
    }

    /// Makes every issued token invalid (as if revoked); returns how many
    /// there were.
    pub fn revoke_all(&mut self) -> usize {
        let n = self.tokens.len();
        self.tokens.clear();
        self.token_order.clear();
        n
    }

    /// Removes the tokens past their expiry at `now` (remembered as
    /// expired); says whether there were any (their channels must then
    /// end).
    pub fn sweep(&mut self, now: SystemTime) -> bool {
        let gone: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, t)| t.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for token in &gone {
            self.tokens.remove(token);
            self.remember_expired(token.clone());
        }
        if self.token_order.len() > 2 * self.tokens.len() + 1024 {
            let Tokens {
                tokens,
                token_order,
                ..
            } = self;
            token_order.retain(|t| tokens.contains_key(t));
        }
        !gone.is_empty()
    }

    /// Remembers that `token` expired (bounded: the oldest are forgotten
    /// and then answer `bad.credentials`, as unknown tokens do).
    fn remember_expired(&mut self, token: String) {
        if self.expired_tokens.insert(token.clone()) {
            self.expired_order.push_back(token);
        }
        while self.expired_order.len() > MAX_TOKENS {
            if let Some(old) = self.expired_order.pop_front() {
                self.expired_tokens.remove(&old);
            }
        }
    }

    /// The 401 for an expired token, per `--expired-token-code`.
    fn expired_error(&mut self, settings: &Settings) -> ApiError {
        let expired_code = match settings.expired_token_code {
            ExpiredTokenCode::CredentialsExpired => true,
            ExpiredTokenCode::BadCredentials => false,
            ExpiredTokenCode::Alternate => self.expired_answers % 2 == 0,
        };
        self.expired_answers += 1;
        if expired_code {
            ApiError::credentials_expired()
        } else {
            ApiError::bad_credentials()
        }
    }
}
