//! The Kafka clients of the cluster: a consumer that reads partitions it
//! assigns itself (no consumer group: the test broker's group coordinator
//! does not hand a dead member's partition over, and nothing here needs
//! one), and the producer of coordination records. Both take the bridge's
//! connection settings (bootstrap, security, SASL, SSL) and none of its
//! producer tuning.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};

/// Property prefixes about reaching the cluster, which every client takes.
const CONNECTION: &[&str] = &[
    "bootstrap.servers",
    "security.",
    "sasl.",
    "ssl.",
    "ssl_",
    "socket.",
    "broker.",
    "client.",
    "metadata.",
    "reconnect.",
    "api.version",
    "enable.ssl",
    "debug",
];

fn connection(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        if CONNECTION.iter().any(|p| k.starts_with(p)) {
            config.set(k, v);
        }
    }
    config
}

/// A consumer for partitions assigned by hand; `purpose` names it in
/// the broker's logs.
pub fn consumer(
    properties: &BTreeMap<String, String>,
    purpose: &str,
) -> Result<BaseConsumer, String> {
    connection(properties)
        // Required by librdkafka for a consumer; never joined (assign only).
        .set("group.id", format!("genesys-kafka-bridge-{purpose}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // Tansu answers a fetch with little at a time: ask again at once.
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| format!("cannot build the Kafka consumer: {e}"))
}

/// The producer of coordination records. A record older than
/// `timeout_ms` is dropped rather than delivered late (a heartbeat that
/// old says nothing true).
///
/// Not idempotent: an idempotent producer whose record times out bumps
/// its epoch, and the test broker (Tansu 0.6.0) panicked on the next
/// produce (measured: its storage task died on "more or less than one
/// row" in its idempotence check, and with it the broker). Nothing here
/// needs it: one request in flight keeps the records in order, and a
/// record written twice by a retry is harmless to the rule (a second
/// claim names an epoch already taken, a second heartbeat repeats ids).
pub fn producer(
    properties: &BTreeMap<String, String>,
    timeout_ms: u64,
) -> Result<ThreadedProducer<DefaultProducerContext>, String> {
    connection(properties)
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", timeout_ms.to_string())
        .create()
        .map_err(|e| format!("cannot build the Kafka producer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_settings_are_taken() {
        let props: BTreeMap<String, String> = [
            ("bootstrap.servers", "k:9092"),
            ("sasl.username", "u"),
            ("linger.ms", "20"),
            ("acks", "all"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = connection(&props);
        assert_eq!(config.get("bootstrap.servers"), Some("k:9092"));
        assert_eq!(config.get("sasl.username"), Some("u"));
        assert_eq!(config.get("linger.ms"), None);
        assert_eq!(config.get("acks"), None);
    }
}
