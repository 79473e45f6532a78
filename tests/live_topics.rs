//! Live topics, with real processes: queues created and deleted in the
//! simulator's directory while the bridge runs are subscribed and
//! unsubscribed on the open channels, on the refresh interval and at once
//! on SIGHUP; a start-up plan over the channel limit is refused (exit 78).
//!
//! Uses the simulator's run-time directory control API:
//! `POST /sim/directory/queues {"count":N}` → `{"ids":[…]}` and
//! `DELETE /sim/directory/queues/{id}` → `{"removed":id}`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::consumer::{self, Consumed};
use support::{eventually, http, Bridge, Broker, Simulator, Stack};

/// The refresh interval of the interval test.
const REFRESH: Duration = Duration::from_secs(5);

/// Topics subscribed on the simulator's channels that name `id`.
fn subscribed_naming(sim: &Simulator, id: &str) -> Vec<String> {
    sim.subscribed_topics()
        .into_iter()
        .filter(|t| t.contains(id))
        .collect()
}

fn add_queue(sim: &Simulator) -> String {
    let reply = sim.control("/sim/directory/queues", serde_json::json!({ "count": 1 }));
    reply["ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {reply}"))
        .to_owned()
}

fn remove_queue(sim: &Simulator, id: &str) {
    let reply = http::delete(&format!("{}/sim/directory/queues/{id}", sim.url)).unwrap();
    assert_eq!(
        reply.status, 200,
        "DELETE /sim/directory/queues/{id}: {}",
        reply.body
    );
    let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(reply["removed"], id, "{reply}");
}

/// Waits until Kafka's `topic` holds a record keyed `key` of `kind` (the
/// `gkb-kind` header; `None`: a notification); returns it.
fn wait_record_keyed(broker: &Broker, topic: &str, key: &str, kind: Option<&str>) -> Consumed {
    eventually(
        &format!("a record keyed {key} in {topic} ({kind:?})"),
        Duration::from_secs(60),
        || {
            consumer::read_all(&broker.bootstrap(), &[topic], Duration::from_secs(10))
                .into_iter()
                .find(|r| r.key.as_deref() == Some(key.as_bytes()) && r.header("gkb-kind") == kind)
        },
    )
}

fn sighup(bridge: &Bridge) {
    bridge.proc.signal(libc::SIGHUP);
}

/// Emits one event on `topic` and asserts it reached the bridge's socket.
fn emit_on(sim: &Simulator, topic: &str) {
    let reply = sim.generate_with(serde_json::json!({ "count": 1, "topics": [topic] }));
    assert_eq!(reply["delivered"], 1, "{reply}");
}

#[test]
fn a_queue_added_while_running_is_subscribed_and_a_removed_one_unsubscribed() {
    let dir = tempfile::tempdir().unwrap();
    let refresh = REFRESH.as_secs().to_string();
    // Snapshots on: an added observation topic gets one.
    let stack = Stack::builder(dir.path())
        .queues(6)
        .env("GKB_TOPICS__REFRESH_INTERVAL_SECS", &refresh)
        .snapshot_keys("enabled = true\ninterval_secs = 0")
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);

    // Added: subscribed on the open channel, no reconnect.
    let sockets_before = sim.state()["sockets_opened"].clone();
    let added_at = Instant::now();
    let queue = add_queue(sim);
    let topics = eventually(
        "the new queue's topics to be subscribed",
        REFRESH * 3,
        || Some(subscribed_naming(sim, &queue)).filter(|t| t.len() == 2),
    );
    let subscribed_after = added_at.elapsed();
    let observations = format!("v2.analytics.queues.{queue}.observations");
    assert!(topics.contains(&observations), "{topics:?}");

    // Its events reach Kafka.
    emit_on(sim, &observations);
    let record = wait_record_keyed(broker, "genesys.queue-observations", &queue, None);
    let in_kafka_after = added_at.elapsed();
    // An added observation topic gets a snapshot of its queue.
    let snapshot = wait_record_keyed(
        broker,
        "genesys.queue-observations",
        &queue,
        Some("snapshot"),
    );
    assert_eq!(
        snapshot.header("genesys-topic"),
        Some(observations.as_str())
    );
    assert_eq!(record.topic, "genesys.queue-observations");
    let sockets_after = sim.state()["sockets_opened"].clone();
    assert_eq!(
        sockets_before, sockets_after,
        "a topic change must not reconnect"
    );

    // Removed: unsubscribed within the interval.
    let removed_at = Instant::now();
    remove_queue(sim, &queue);
    eventually(
        "the removed queue's topics to be unsubscribed",
        REFRESH * 3,
        || Some(subscribed_naming(sim, &queue)).filter(Vec::is_empty),
    );
    let unsubscribed_after = removed_at.elapsed();

    let metrics = bridge.metrics().unwrap();
    println!(
        "live topics (refresh every {}s): queue added → subscribed {:.2}s, its event in Kafka {:.2}s; \
         removed → unsubscribed {:.2}s; gkb_topics_added_total {}, gkb_topics_removed_total {}, \
         gkb_topics_planned {}",
        REFRESH.as_secs(),
        subscribed_after.as_secs_f64(),
        in_kafka_after.as_secs_f64(),
        unsubscribed_after.as_secs_f64(),
        support::metric(&metrics, "gkb_topics_added_total").unwrap_or(f64::NAN),
        support::metric(&metrics, "gkb_topics_removed_total").unwrap_or(f64::NAN),
        support::metric(&metrics, "gkb_topics_planned").unwrap_or(f64::NAN),
    );
    // A refresh is due at most one interval after the change, and a
    // listing plus a subscription call take well under one more.
    assert!(subscribed_after < REFRESH * 2, "{subscribed_after:?}");
    assert!(unsubscribed_after < REFRESH * 2, "{unsubscribed_after:?}");
    assert_eq!(support::metric(&metrics, "gkb_topics_planned"), Some(12.0));
}

#[test]
fn sighup_lists_the_org_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // 0: no interval; only SIGHUP lists the org again.
    let stack = Stack::builder(dir.path())
        .queues(4)
        .env("GKB_TOPICS__REFRESH_INTERVAL_SECS", "0")
        .start();
    let (sim, bridge) = (&stack.sim, &stack.bridge);
    let queue = add_queue(sim);
    let signalled = Instant::now();
    sighup(bridge);
    eventually(
        "the new queue to be subscribed after SIGHUP",
        Duration::from_secs(30),
        || Some(subscribed_naming(sim, &queue)).filter(|t| t.len() == 2),
    );
    let added_after = signalled.elapsed();

    remove_queue(sim, &queue);
    let signalled = Instant::now();
    sighup(bridge);
    eventually(
        "the removed queue to be unsubscribed after SIGHUP",
        Duration::from_secs(30),
        || Some(subscribed_naming(sim, &queue)).filter(Vec::is_empty),
    );
    let removed_after = signalled.elapsed();
    println!(
        "SIGHUP: added queue subscribed {:.2}s after the signal, removed queue unsubscribed {:.2}s after",
        added_after.as_secs_f64(),
        removed_after.as_secs_f64()
    );
    // The process is still the same one: SIGHUP does not end it.
    bridge.wait_ready();
    assert!(bridge.proc.log_text().contains("SIGHUP"));

    // A topic the service refuses later is reported; the rest stay.
    let queue = add_queue(sim);
    let refused = format!("v2.analytics.queues.{queue}.observations");
    sim.control(
        "/sim/faults",
        serde_json::json!({ "deny_topics": [refused] }),
    );
    sighup(bridge);
    let metrics = bridge.wait_for_metrics(
        "the refused topic to be reported",
        Duration::from_secs(30),
        |m| m.get("gkb_topics_refused") == 1.0,
    );
    let topics = subscribed_naming(sim, &queue);
    assert_eq!(
        topics,
        [format!("v2.routing.queues.{queue}.conversations")],
        "the queue's other topic is subscribed"
    );
    let all = subscribed_naming(sim, "v2.").len();
    assert_eq!(all, 4 * 2 + 1, "the other queues' topics stay subscribed");
    let status = bridge.status().unwrap();
    let rejected: u64 = status["connections"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["rejected_topics"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(rejected, 1, "{status}");
    assert!(bridge.proc.log_text().contains("refused"));
    println!(
        "refused later: gkb_topics_refused {}, /status rejected_topics {rejected}, topics still subscribed {all}",
        metrics.get("gkb_topics_refused")
    );
}

#[test]
fn check_config_refuses_names_over_twenty_channels() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..20_001)
        .map(|i| {
            format!(
                "\"v2.detail.events.conversation.{:08x}-0000-4000-8000-000000000000.acw\"",
                i
            )
        })
        .collect();
    let config = format!(
        r#"
[genesys]
region = "eu-west-1"
client_id = "abc"

[topics]
names = [{}]

[kafka]
bootstrap_servers = "127.0.0.1:9092"
default_topic = "genesys.events"
"#,
        names.join(",")
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &config).unwrap();
    let check = |path: &std::path::Path| {
        let out = Command::new(support::BRIDGE)
            .arg("check-config")
            .arg("--config")
            .arg(path)
            .env("GENESYS_CLIENT_SECRET", "s")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = check(&path);
    println!(
        "check-config over the limit: exit {code:?}: {}",
        stderr.trim()
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("topics"), "names the key: {stderr}");
    assert!(
        stderr.contains("needs 21 channels for 20001 topics"),
        "{stderr}"
    );

    // Within the limit: valid, and the offline plan says what is left.
    let fits = config.replace(&format!(",{}", names[20_000]), "");
    std::fs::write(&path, fits).unwrap();
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("# topic plan: 20000 fixed topic names need 20 of 20 channels"),
        "{stdout}"
    );
}

#[test]
fn a_start_up_plan_over_twenty_channels_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 10,001 queues × 2 templates = 20,002 topics: 21 channels.
    let setup = Stack::builder(dir.path()).queues(10_001);
    let sim = setup.start_simulator();
    // No broker: the plan is refused before Kafka is needed.
    let mut bridge = setup.start_bridge(&sim, "127.0.0.1:1");
    let secret = setup.secret();
    let started = Instant::now();
    let status = eventually("the bridge to exit", Duration::from_secs(120), || {
        bridge.proc.child.try_wait().unwrap()
    });
    let log = bridge.proc.log_text();
    println!(
        "refusal: exit {:?} after {:.2}s",
        status.code(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains("needs 21 channels for 20002 topics"),
        "the message names the counts: {log}"
    );
    assert!(log.contains("× 10001 queues"), "{log}");
    assert!(!log.contains(secret), "the secret leaked: {log}");
    // Nothing was subscribed on the way out.
    let state = sim.state();
    assert_eq!(state["channels_created"], 0, "{state}");
}

#[test]
fn combined_user_topics_arrive_under_their_expanded_names() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::builder(dir.path())
        .queues(2)
        .simulator_args(&["--users", "3"])
        .env(
            "GKB_TOPICS__PER_USER",
            r#"["v2.users.{id}.presence", "v2.users.{id}.routingStatus"]"#,
        )
        .env("GKB_TOPICS__COMBINE_USER_TOPICS", "true")
        .start();
    let (broker, sim, bridge) = (&stack.broker, &stack.sim, &stack.bridge);
    // 2 queues × 2 templates + 3 users × 1 combined topic.
    let metrics = bridge.metrics().unwrap();
    assert_eq!(support::metric(&metrics, "gkb_topics_planned"), Some(7.0));
    // The service subscribes each combined topic's sub-topics.
    let user_topics = eventually("the users' sub-topics", Duration::from_secs(30), || {
        Some(subscribed_naming(sim, "v2.users.")).filter(|t| t.len() == 6)
    });
    let presence = user_topics
        .iter()
        .find(|t| t.ends_with(".presence"))
        .unwrap()
        .clone();
    let user = presence.split('.').nth(2).unwrap().to_owned();
    emit_on(sim, &presence);
    let record = wait_record_keyed(broker, "genesys.events", &user, None);
    let value: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
    println!(
        "combined user topics: 7 planned topics for 10 sub-topics; event on {presence} in Kafka topic {} keyed by the user",
        record.topic
    );
    assert_eq!(value["topicName"], presence.as_str());
    let metrics = bridge.metrics().unwrap();
    assert_eq!(support::metric(&metrics, "gkb_topics_refused"), Some(0.0));
}
