//! `cluster status` and `cluster handover`: an operator's view of the
//! coordination topic, and the request that makes the leader hand over
//! (a planned move without stopping it). Both read the topic themselves
//! with the bridge's Kafka settings; neither needs a running member on
//! the host where it runs, nor the Genesys client secret.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::client;
use super::log::Fold;
use super::message::{Envelope, Message};

/// Records read back from the end of the topic.
const READ_BACK: i64 = 10_000;

/// The topic folded up to its end now.
pub fn read(properties: &BTreeMap<String, String>, topic: &str) -> Result<Fold, String> {
    let consumer = client::consumer(properties, "cluster-tool")?;
    read_with(&consumer, topic, Duration::from_secs(30))
}

fn read_with(consumer: &BaseConsumer, topic: &str, limit: Duration) -> Result<Fold, String> {
    let timeout = Duration::from_secs(10);
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, timeout)
        .map_err(|e| format!("cannot read the coordination topic {topic}: {e}"))?;
    let mut fold = Fold::new();
    let start = (high - READ_BACK).max(low);
    if high <= start {
        return Ok(fold);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(start))
        .map_err(|e| e.to_string())?;
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    while fold.position + 1 < high {
        if Instant::now() >= deadline {
            return Err(format!(
                "the coordination topic {topic} was not read to its end within {limit:?}"
            ));
        }
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let m = result.map_err(|e| e.to_string())?;
            match m.payload().and_then(Message::decode) {
                Some(message) => {
                    fold.apply(m.offset(), &message);
                }
                None => fold.position = fold.position.max(m.offset()),
            }
        }
    }
    Ok(fold)
}

/// `cluster status`: one JSON object, or text.
pub fn status_json(fold: &Fold, topic: &str) -> serde_json::Value {
    let leader = fold.leader.as_ref().filter(|_| !fold.released);
    serde_json::json!({
        "topic": topic,
        "epoch": fold.epoch,
        "leader": leader.map(|l| &l.member),
        "leader_since": leader.map(|l| crate::rfc3339_ms(l.since_ms)),
        "released": fold.released,
        "takeovers_in_view": fold.takeovers,
        "members": fold.members.iter().map(|(name, seen)| serde_json::json!({
            "member": name,
            "role": if leader.is_some_and(|l| &l.member == name) { "leader" } else if seen.role == "leader" { "standby" } else { seen.role.as_str() },
            "ready": seen.ready,
            "behind": seen.behind,
            "last_seen": crate::rfc3339_ms(seen.at_ms),
        })).collect::<Vec<_>>(),
    })
}

pub fn status_text(fold: &Fold, topic: &str) -> String {
    let mut out = format!("coordination topic {topic}: epoch {}", fold.epoch);
    match fold.leader.as_ref() {
        Some(l) if !fold.released => out.push_str(&format!(
            ", leader {} since {}\n",
            l.member,
            crate::rfc3339_ms(l.since_ms)
        )),
        Some(l) => out.push_str(&format!(
            ", released by {}: no leader until a member claims\n",
            l.member
        )),
        None => out.push_str(", nobody ever led\n"),
    }
    for (name, seen) in &fold.members {
        out.push_str(&format!(
            "  {name}: last seen {} as {}{}, {} events behind\n",
            crate::rfc3339_ms(seen.at_ms),
            seen.role,
            if seen.ready { "" } else { " (not ready)" },
            seen.behind
        ));
    }
    out
}

/// `cluster handover`: asks the current leader to hand over and waits up
/// to `limit` for another member to lead. Returns the new leader.
pub fn handover(
    properties: &BTreeMap<String, String>,
    topic: &str,
    limit: Duration,
) -> Result<String, String> {
    let consumer = client::consumer(properties, "cluster-tool")?;
    let fold = read_with(&consumer, topic, Duration::from_secs(30))?;
    let Some(leader) = fold.leader.clone().filter(|_| !fold.released) else {
        return Err(format!(
            "nobody leads epoch {} now: nothing to hand over",
            fold.epoch
        ));
    };
    if fold.members.len() < 2 {
        return Err(format!(
            "{} is the only member seen: nobody could take over",
            leader.member
        ));
    }
    let producer = client::producer(properties, 10_000)?;
    let request = Message::Handover {
        from: Envelope {
            member: format!("cli@{}", hostname()),
            incarnation: String::new(),
            at_ms: crate::now_ms(),
        },
        epoch: fold.epoch,
    }
    .encode();
    producer
        .send(
            BaseRecord::<str, [u8]>::to(topic)
                .partition(0)
                .key("cli")
                .payload(&request),
        )
        .map_err(|(e, _)| format!("cannot write the request: {e}"))?;
    producer
        .flush(Duration::from_secs(10))
        .map_err(|e| format!("the request did not reach Kafka: {e}"))?;
    let deadline = Instant::now() + limit;
    let mut fold = fold;
    let asked = fold.epoch;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if let Some(message) = m.payload().and_then(Message::decode) {
                fold.apply(m.offset(), &message);
            }
        }
        if fold.epoch > asked && fold.led() {
            let new = fold
                .leader
                .as_ref()
                .map(|l| l.member.clone())
                .unwrap_or_default();
            return Ok(new);
        }
    }
    Err(format!(
        "no member took over within {limit:?} (epoch {}{})",
        fold.epoch,
        if fold.released { ", released" } else { "" }
    ))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
