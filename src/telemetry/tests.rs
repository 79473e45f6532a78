//! Telemetry's tests across areas: what `/metrics` shows after events of
//! every side.

use std::time::{Duration, SystemTime};

use super::*;

fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

#[test]
fn metrics_render_through_the_library_with_labels_and_histograms() {
    let t = Telemetry::default();
    t.connections.event_received();
    t.kafka.events_forwarded(3);
    t.connections.reconnecting(
        2,
        None,
        "socket dropped without a close frame (1006)",
        Duration::ZERO,
    );
    t.connections
        .reconnecting(2, None, "setup failed: HTTP 503", Duration::ZERO);
    t.connections
        .reconnecting(2, None, "setup failed: HTTP 503", Duration::ZERO);
    let end = SystemTime::now();
    let gap = crate::gap::GapRecord::new(
        2,
        end - Duration::from_millis(1500),
        end,
        "test",
        false,
        &["v2.users.1.presence".to_owned()],
    );
    t.gaps.socket_gap(&gap);
    t.kafka.dead_lettered(7, "genesys.events", "too large");
    t.token
        .granted(Duration::from_secs(600), Duration::from_secs(300));
    t.kafka.acknowledged(&[crate::now_ms() - 30]);
    observe_request(&t.token.request_seconds(), "create channel", 0.2);
    let text = t.render_metrics();
    println!("{text}");
    assert_eq!(sample(&text, "gkb_events_received_total"), Some("1"));
    assert_eq!(sample(&text, "gkb_events_forwarded_total"), Some("3"));
    assert_eq!(
        sample(
            &text,
            r#"gkb_reconnects_total{connection="2",reason="setup_failed"}"#
        ),
        Some("2")
    );
    assert_eq!(
        sample(
            &text,
            r#"gkb_reconnects_total{connection="2",reason="dropped"}"#
        ),
        Some("1")
    );
    // Every reason class exists at zero once the connection is known.
    assert_eq!(
        sample(
            &text,
            r#"gkb_reconnects_total{connection="2",reason="heartbeat_timeout"}"#
        ),
        Some("0")
    );
    assert_eq!(
        sample(&text, r#"gkb_socket_gaps_total{connection="2"}"#),
        Some("1")
    );
    assert_eq!(
        sample(&text, r#"gkb_socket_gap_seconds_total{connection="2"}"#),
        Some("1.5")
    );
    assert_eq!(
        sample(
            &text,
            r#"gkb_socket_gap_last_end_timestamp_seconds{connection="2"}"#
        ),
        Some(format!("{}", gap.end_ms as f64 / 1000.0).as_str())
    );
    let report = t.gaps.report();
    assert_eq!(report["this_run"]["gaps"], 1, "{report}");
    assert_eq!(report["recent"][0]["start"], gap.start.as_str(), "{report}");
    assert_eq!(
        sample(
            &text,
            r#"gkb_events_dead_lettered_total{topic="genesys.events"}"#
        ),
        Some("1")
    );
    assert!(text.contains("# TYPE gkb_receive_to_ack_seconds histogram"));
    assert_eq!(
        sample(&text, r#"gkb_receive_to_ack_seconds_bucket{le="0.025"}"#),
        Some("0")
    );
    assert_eq!(
        sample(&text, r#"gkb_receive_to_ack_seconds_bucket{le="0.05"}"#),
        Some("1")
    );
    assert_eq!(
        sample(&text, r#"gkb_receive_to_ack_seconds_bucket{le="+Inf"}"#),
        Some("1")
    );
    assert_eq!(sample(&text, "gkb_receive_to_ack_seconds_count"), Some("1"));
    assert_eq!(
        sample(
            &text,
            r#"gkb_genesys_request_seconds_bucket{call="create_channel",le="0.25"}"#
        ),
        Some("1")
    );
    let expiry: f64 = sample(&text, "gkb_token_expiry_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((590.0..=600.0).contains(&expiry), "{expiry}");
}
