//! Injectable faults: error statuses on login, REST and WebSocket upgrades,
//! silenced heartbeats and pongs, black-holed sockets, denied topics.
//!
//! Socket-level switches are atomics because every socket actor reads them
//! on every heartbeat tick and ping; the rest sits behind a small mutex of
//! its own so that fault checks never wait for event generation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize};

use crate::errors::ApiError;

/// Where an injected status applies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// `POST /oauth/token`
    Token,
    /// every `/api/v2/...` call
    Api,
    /// WebSocket upgrades on `/channels/{id}`
    WebSocket,
}

/// An injected status: returned on the next `remaining` calls (all calls
/// until cleared when `None`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Injected {
    pub status: u16,
    pub remaining: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct StatusFaults {
    pub token: Option<Injected>,
    pub api: Option<Injected>,
    pub websocket: Option<Injected>,
    /// `Retry-After` seconds sent with injected 429 and 503.
    pub retry_after_secs: u64,
    /// Overrides `--bad-credentials-status` when set.
    pub bad_credentials_status: Option<u16>,
    /// Topic name prefixes whose subscriptions are rejected with
    /// `missingPermissions`.
    pub deny_topics: Vec<String>,
    /// How long the analytics queries hold their answer after reading the
    /// state (ms): events generated meanwhile reach the sockets before the
    /// answer reaches the client, the race a snapshot must survive.
    pub analytics_delay_ms: u64,
    /// The analytics queries answer 200 with a partial body: results and
    /// conversations without their ids (a malformed answer a client must
    /// refuse, not forward).
    pub analytics_malformed: bool,
}

impl Default for StatusFaults {
    fn default() -> Self {
        StatusFaults {
            token: None,
            api: None,
            websocket: None,
            retry_after_secs: 1,
            bad_credentials_status: None,
            deny_topics: Vec::new(),
            analytics_delay_ms: 0,
            analytics_malformed: false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Faults {
    statuses: Mutex<StatusFaults>,
    heartbeats: AtomicBool,
    pong: AtomicBool,
    blackhole: AtomicBool,
}

/// Snapshot of all faults, as `GET /sim/faults` shows them.
#[derive(Debug, Serialize)]
pub(crate) struct FaultsView {
    #[serde(flatten)]
    pub statuses: StatusFaults,
    pub heartbeats: bool,
    pub pong: bool,
    pub blackhole: bool,
}

/// Body of `POST /sim/faults`: fields present are changed, absent ones kept;
/// `null` clears a status. Unknown fields are a 400 so that typos in tests
/// do not silently inject nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultPatch {
    #[serde(default, deserialize_with = "nullable")]
    pub token_status: Option<Option<u16>>,
    pub token_status_count: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    pub api_status: Option<Option<u16>>,
    pub api_status_count: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    pub ws_status: Option<Option<u16>>,
    pub ws_status_count: Option<u64>,
    pub retry_after: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    pub bad_credentials_status: Option<Option<u16>>,
    pub deny_topics: Option<Vec<String>>,
    pub analytics_delay_ms: Option<u64>,
    pub analytics_malformed: Option<bool>,
    pub heartbeats: Option<bool>,
    pub pong: Option<bool>,
    pub blackhole: Option<bool>,
}

/// Distinguishes `"field": null` (`Some(None)`) from an absent field (`None`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn apply_status(
    slot: &mut Option<Injected>,
    status: Option<Option<u16>>,
    count: Option<u64>,
    name: &str,
) -> Result<(), ApiError> {
    if let Some(status) = status {
        *slot = match status {
            Some(s) if (400..=599).contains(&s) => Some(Injected {
                status: s,
                remaining: count,
            }),
            Some(s) => {
                return Err(ApiError::bad_request(format!(
                    "{name} must be an HTTP error status (400-599), got {s}"
                )))
            }
            None => None,
        };
    } else if let Some(count) = count {
        match slot {
            Some(injected) => injected.remaining = Some(count),
            None => {
                return Err(ApiError::bad_request(format!(
                    "{name}_count needs {name} to be set"
                )))
            }
        }
    }
    if matches!(
        slot,
        Some(Injected {
            remaining: Some(0),
            ..
        })
    ) {
        *slot = None;
    }
    Ok(())
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            statuses: Mutex::new(StatusFaults::default()),
            heartbeats: AtomicBool::new(true),
            pong: AtomicBool::new(true),
            blackhole: AtomicBool::new(false),
        }
    }
}

impl Faults {
    fn statuses(&self) -> std::sync::MutexGuard<'_, StatusFaults> {
        // A panic elsewhere cannot leave these plain values inconsistent.
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Consumes one injected failure for `target`, if any is armed.
    pub fn take(&self, target: Target) -> Option<ApiError> {
        let mut faults = self.statuses();
        let retry_after = faults.retry_after_secs;
        let slot = match target {
            Target::Token => &mut faults.token,
            Target::Api => &mut faults.api,
            Target::WebSocket => &mut faults.websocket,
        };
        let injected = (*slot)?;
        match injected.remaining {
            Some(n) if n <= 1 => *slot = None,
            Some(n) => {
                if let Some(i) = slot.as_mut() {
                    i.remaining = Some(n - 1);
                }
            }
            None => {}
        }
        Some(ApiError::injected(injected.status, retry_after))
    }

    pub fn bad_credentials_status(&self) -> Option<u16> {
        self.statuses().bad_credentials_status
    }

    pub fn analytics_malformed(&self) -> bool {
        self.statuses().analytics_malformed
    }

    pub fn analytics_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.statuses().analytics_delay_ms)
    }

    pub fn deny_topics(&self) -> Vec<String> {
        self.statuses().deny_topics.clone()
    }

    pub fn heartbeats(&self) -> bool {
        self.heartbeats.load(Ordering::Relaxed)
    }

    pub fn pong(&self) -> bool {
        self.pong.load(Ordering::Relaxed)
    }

    pub fn blackhole(&self) -> bool {
        self.blackhole.load(Ordering::Relaxed)
    }

    /// Applies a patch atomically: on a validation error nothing changes.
    pub fn apply(&self, patch: FaultPatch) -> Result<FaultsView, ApiError> {
        {
            let mut current = self.statuses();
            let mut next = current.clone();
            apply_status(
                &mut next.token,
                patch.token_status,
                patch.token_status_count,
                "token_status",
            )?;
            apply_status(
                &mut next.api,
                patch.api_status,
                patch.api_status_count,
                "api_status",
            )?;
            apply_status(
                &mut next.websocket,
                patch.ws_status,
                patch.ws_status_count,
                "ws_status",
            )?;
            if let Some(secs) = patch.retry_after {
                next.retry_after_secs = secs;
            }
            if let Some(status) = patch.bad_credentials_status {
                if matches!(status, Some(s) if s != 400 && s != 401) {
                    return Err(ApiError::bad_request(
                        "bad_credentials_status must be 400 or 401",
                    ));
                }
                next.bad_credentials_status = status;
            }
            if let Some(prefixes) = patch.deny_topics {
                next.deny_topics = prefixes;
            }
            if let Some(ms) = patch.analytics_delay_ms {
                if ms > 600_000 {
                    return Err(ApiError::bad_request(
                        "analytics_delay_ms must be at most 600000",
                    ));
                }
                next.analytics_delay_ms = ms;
            }
            if let Some(on) = patch.analytics_malformed {
                next.analytics_malformed = on;
            }
            *current = next;
        }
        if let Some(on) = patch.heartbeats {
            self.heartbeats.store(on, Ordering::Relaxed);
        }
        if let Some(on) = patch.pong {
            self.pong.store(on, Ordering::Relaxed);
        }
        if let Some(on) = patch.blackhole {
            self.blackhole.store(on, Ordering::Relaxed);
        }
        Ok(self.view())
    }

    pub fn clear(&self) {
        *self.statuses() = StatusFaults::default();
        self.heartbeats.store(true, Ordering::Relaxed);
        self.pong.store(true, Ordering::Relaxed);
        self.blackhole.store(false, Ordering::Relaxed);
    }

    pub fn view(&self) -> FaultsView {
        FaultsView {
            statuses: self.statuses().clone(),
            heartbeats: self.heartbeats(),
            pong: self.pong(),
            blackhole: self.blackhole(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> FaultPatch {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn counted_faults_run_out() {
        let f = Faults::default();
        f.apply(patch(r#"{"api_status":503,"api_status_count":2}"#))
            .unwrap();
        assert_eq!(f.take(Target::Api).unwrap().status.as_u16(), 503);
        assert!(f.take(Target::Token).is_none());
        assert!(f.take(Target::Api).is_some());
        assert!(f.take(Target::Api).is_none());
    }

    #[test]
    fn uncounted_faults_last_until_cleared() {
        let f = Faults::default();
        f.apply(patch(r#"{"token_status":429,"retry_after":7}"#))
            .unwrap();
        for _ in 0..5 {
            let err = f.take(Target::Token).unwrap();
            assert_eq!(err.retry_after, Some(7));
            assert_eq!(err.code, "too.many.requests.retry.after");
        }
        f.apply(patch(r#"{"token_status":null}"#)).unwrap();
        assert!(f.take(Target::Token).is_none());
    }

    #[test]
    fn invalid_patches_change_nothing() {
        let f = Faults::default();
        assert!(f
            .apply(patch(r#"{"api_status":503,"token_status":200}"#))
            .is_err());
        assert!(f.take(Target::Api).is_none());
        assert!(f.apply(patch(r#"{"ws_status_count":3}"#)).is_err());
        assert!(serde_json::from_str::<FaultPatch>(r#"{"api_stauts":503}"#).is_err());
    }

    #[test]
    fn socket_switches_and_clear() {
        let f = Faults::default();
        f.apply(patch(
            r#"{"heartbeats":false,"pong":false,"blackhole":true}"#,
        ))
        .unwrap();
        assert!(!f.heartbeats() && !f.pong() && f.blackhole());
        f.clear();
        assert!(f.heartbeats() && f.pong() && !f.blackhole());
    }
}
