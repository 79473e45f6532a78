//! The client-side rate limit against the simulator's per-token limit of
//! 300 requests per minute: a bridge with 5,000 topics (2,500 queues × 2
//! templates: 25 listing pages, 5 channels, 5 subscription calls) starts,
//! then lists the org every second, which unpaced would ask for far more
//! than 300 calls a minute (25 pages a listing). Its limiter (`genesys.api_requests_per_minute`,
//! 240 by default) paces them: the simulator must count no 429 for the
//! bridge's token, during start-up or after.
//!
//! Uses the simulator's `--rate-limit-per-minute` and the 429 count it
//! reports in `/sim/state`; the test gets a token of its own from the
//! simulator's login listener to show the limit is really enforced.

mod support;

use std::time::{Duration, Instant};

use support::{http, Simulator, Stack};

const QUEUES: usize = 2_500;
/// Listings to watch after start-up: 14 × 25 pages = 350 calls, more than
/// the simulator allows a token in a minute; unpaced they take about 25 s
/// and get 429s (checked with `genesys.api_requests_per_minute = 3000`).
const REFRESHES: f64 = 14.0;

/// The simulator's count of 429s answered so far (both forms).
fn sim_429s(sim: &Simulator) -> u64 {
    let state = sim.state();
    [
        "rate_limited_with_retry_after",
        "rate_limited_without_retry_after",
    ]
    .iter()
    .map(|key| {
        state[key]
            .as_u64()
            .unwrap_or_else(|| panic!("/sim/state reports no {key}: {state}"))
    })
    .sum()
}

#[test]
fn five_thousand_topics_start_and_run_without_a_429() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let stack = Stack::builder(dir.path())
        .queues(QUEUES)
        .simulator_args(&["--rate-limit-per-minute", "300"])
        .env("GKB_TOPICS__REFRESH_INTERVAL_SECS", "1")
        .start();
    let (sim, bridge, secret) = (&stack.sim, &stack.bridge, stack.secret.as_str());
    let ready_after = started.elapsed();
    let at_start = bridge.wait_for_metrics("the start-up plan", Duration::from_secs(60), |m| {
        m.get("gkb_topics_planned") == 5_000.0 && m.get("gkb_connections_open") == 5.0
    });
    let during_start_up = sim_429s(sim);
    let refreshes_at_start = at_start.get("gkb_topic_refreshes_total");

    let running = Instant::now();
    let after = bridge.wait_for_metrics(
        "fourteen refreshes after start-up",
        Duration::from_secs(180),
        |m| m.get("gkb_topic_refreshes_total") >= refreshes_at_start + REFRESHES,
    );
    let ran_for = running.elapsed();
    let after_start_up = sim_429s(sim) - during_start_up;
    let waited = after.get("gkb_api_rate_limit_wait_seconds_total");
    let bridge_saw = after.get("gkb_api_rate_limited_total");
    println!(
        "rate limit: {QUEUES} queues, 5,000 topics on {} channels, ready in {:.2}s; \
         429s during start-up {during_start_up}, after start-up {after_start_up} \
         ({REFRESHES} listings of 25 pages in {:.1}s, calls waited {waited:.1}s in total for the limiter); \
         429s the bridge saw {bridge_saw}",
        after.get("gkb_topic_channels"),
        ready_after.as_secs_f64(),
        ran_for.as_secs_f64(),
    );
    assert_eq!(during_start_up, 0, "429s during start-up");
    assert_eq!(after_start_up, 0, "429s after start-up");
    assert_eq!(bridge_saw, 0.0);
    // The limiter did pace the listings (otherwise the test proves nothing).
    assert!(waited > 1.0, "the limiter never made a call wait: {waited}");

    // And the simulator's limit is real: a token of the test's own, used
    // without pacing, is refused within 301 calls.
    let token = own_token(&sim.url.login, secret);
    let mut refused_at = None;
    for call in 1..=310 {
        let status = get_with_token(
            &format!("{}/api/v2/routing/queues?pageSize=1", sim.url),
            &token,
        );
        if status == 429 {
            refused_at = Some(call);
            break;
        }
        assert_eq!(status, 200);
    }
    let refused_at = refused_at.expect("the simulator never answered 429");
    println!("rate limit: an unpaced client was refused at call {refused_at}");
    assert!(sim_429s(sim) > during_start_up + after_start_up);
    bridge.wait_ready();
}

fn own_token(login_url: &str, secret: &str) -> String {
    use base64::Engine;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let reply = http::send(
        "POST",
        &format!("{login_url}/oauth/token"),
        &[
            (
                "Authorization",
                format!("Basic {}", encode(&format!("e2e-client:{secret}"))),
            ),
            ("Content-Type", "application/x-www-form-urlencoded".into()),
        ],
        "grant_type=client_credentials",
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    reply["access_token"].as_str().unwrap().to_owned()
}

fn get_with_token(url: &str, token: &str) -> u16 {
    http::send(
        "GET",
        url,
        &[("Authorization", format!("Bearer {token}"))],
        "",
    )
    .unwrap()
    .status
}
