//! `[kafka]`: where events go.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::partitioner::Partitioner;
use super::routing::{Route, Router};
use crate::config::error::ConfigError;
use crate::secret::MASK;

/// The Kafka cluster and how events are routed into its topics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` of the cluster.
    pub bootstrap_servers: String,
    /// Kafka topic of events that match no route.
    pub default_topic: String,
    /// Routes, tried in order; the first whose `match` fits the Genesys
    /// topic name chooses the Kafka topic. `*` matches any run of
    /// characters, e.g. `v2.analytics.queues.*.observations`.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// librdkafka properties passed through as they are, e.g.
    /// `"security.protocol" = "SASL_SSL"`. The bridge's delivery guarantee
    /// needs `enable.idempotence = true` and `acks = all`: settings that
    /// weaken them are refused.
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    /// librdkafka properties whose values are secrets, read from the named
    /// environment variables, e.g. `"sasl.password" = "KAFKA_PASSWORD"`.
    #[serde(default)]
    pub secret_properties_env: BTreeMap<String, String>,
    /// Create the Kafka topics the routes name (and the default topic) at
    /// start-up when they are missing. Off: a missing topic is reported on
    /// /readyz and its events wait in the buffer.
    #[serde(default)]
    pub create_topics: bool,
    /// Partitions of topics created by `create_topics`.
    #[serde(default = "defaults::partitions")]
    pub create_topics_partitions: i32,
    /// Replication factor of topics created by `create_topics`.
    #[serde(default = "defaults::replication_factor")]
    pub create_topics_replication_factor: i32,
    /// Most events handed to the Kafka client and not yet acknowledged,
    /// over all topics. More are read from the buffer as acknowledgements
    /// come back.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// Most bytes (values, keys and headers) handed to the Kafka client
    /// and not yet acknowledged, over all topics. This bounds the memory
    /// the Kafka client holds, whatever the backlog in the buffer.
    #[serde(default = "defaults::max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// Most events not yet acknowledged on any one partition. A partition
    /// that stops acknowledging (no leader, a refused topic) holds at most
    /// this many; the rest of its events wait in the buffer while the
    /// other partitions keep flowing. Keep it well below `max_in_flight`.
    #[serde(default = "defaults::max_in_flight_per_partition")]
    pub max_in_flight_per_partition: usize,
    /// How record keys map to partitions: `murmur2_random` (the default:
    /// where Java producers, Kafka Streams and Connect put a key) or
    /// `consistent_random` (librdkafka's default, CRC32). Changing it on a
    /// running deployment moves keys to other partitions, so events of one
    /// key written before and after the change may be read out of order.
    #[serde(default)]
    pub partitioner: Partitioner,
}

mod defaults {
    pub fn partitions() -> i32 {
        3
    }
    pub fn replication_factor() -> i32 {
        1
    }
    pub fn max_in_flight() -> usize {
        10_000
    }
    pub fn max_in_flight_bytes() -> usize {
        8 * 1024 * 1024
    }
    pub fn max_in_flight_per_partition() -> usize {
        2_000
    }
}

/// Properties the bridge sets itself: the delivery guarantee rests on
/// them. (name, accepted values, value set.) Unlimited retries and no
/// delivery timeout keep librdkafka from giving up on a record while later
/// records of the same key get through, which would reorder them.
const ENFORCED: &[(&str, &[&str], &str)] = &[
    ("enable.idempotence", &["true"], "true"),
    ("acks", &["all", "-1"], "all"),
    ("request.required.acks", &["all", "-1"], "all"),
    ("message.timeout.ms", &["0"], "0"),
    ("delivery.timeout.ms", &["0"], "0"),
    ("retries", &["2147483647"], "2147483647"),
    ("message.send.max.retries", &["2147483647"], "2147483647"),
];

/// Properties the bridge sets unless the file does. librdkafka waits up to
/// 10 s (its default `reconnect.backoff.max.ms`) between reconnects to a
/// broker that is down: after an outage the backlog would start draining
/// up to 10 s late (measured by `scripts/bench`: first acknowledgement
/// 4.7 s after the broker was back). One attempt a second per broker
/// costs nothing.
const DEFAULTS: &[(&str, &str)] = &[("reconnect.backoff.max.ms", "1000")];

/// Aliases of one librdkafka property: only the first name is set.
const ALIASES: &[&str] = &[
    "request.required.acks",
    "delivery.timeout.ms",
    "message.send.max.retries",
];

/// Whether a property's value must be masked when shown.
pub fn is_sensitive(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    ["password", "secret", "sasl.jaas", "key.pem", "token"]
        .iter()
        .any(|s| p.contains(s))
}

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.bootstrap_servers",
                "must not be empty",
            ));
        }
        self.router()?;
        for (name, value) in &self.properties {
            let key = format!("kafka.properties.\"{name}\"");
            let value =
                property_value(value).map_err(|reason| ConfigError::invalid(&key, reason))?;
            if name == "bootstrap.servers" {
                return Err(ConfigError::invalid(
                    key,
                    "set kafka.bootstrap_servers instead",
                ));
            }
            if name == "partitioner" {
                return Err(ConfigError::invalid(key, "set kafka.partitioner instead"));
            }
            if let Some((_, allowed, _)) = ENFORCED.iter().find(|(p, _, _)| p == name) {
                if !allowed.contains(&value.as_str()) {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "{value:?} would weaken delivery; the bridge needs {}",
                            allowed.join(" or ")
                        ),
                    ));
                }
            }
            if is_sensitive(name) {
                return Err(ConfigError::invalid(
                    key,
                    "secret values do not belong in the file: name an environment variable in kafka.secret_properties_env",
                ));
            }
        }
        if self.create_topics_partitions < 1 {
            return Err(ConfigError::invalid(
                "kafka.create_topics_partitions",
                "must be at least 1",
            ));
        }
        if self.create_topics_replication_factor < 1 {
            return Err(ConfigError::invalid(
                "kafka.create_topics_replication_factor",
                "must be at least 1",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::invalid(
                "kafka.max_in_flight",
                "must be above zero",
            ));
        }
        if self.max_in_flight_bytes < 1024 * 1024 {
            return Err(ConfigError::invalid(
                "kafka.max_in_flight_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.max_in_flight_per_partition == 0
            || self.max_in_flight_per_partition > self.max_in_flight
        {
            return Err(ConfigError::invalid(
                "kafka.max_in_flight_per_partition",
                format!(
                    "must be between 1 and kafka.max_in_flight ({})",
                    self.max_in_flight
                ),
            ));
        }
        Ok(())
    }

    pub fn router(&self) -> Result<Router, ConfigError> {
        Router::new(&self.routes, &self.default_topic)
    }

    /// The librdkafka properties the producer is built with, secrets
    /// included (resolved from the environment): only for the client.
    pub fn client_properties(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut props = BTreeMap::new();
        for (name, value) in &self.properties {
            let value = property_value(value).map_err(|reason| {
                ConfigError::invalid(format!("kafka.properties.\"{name}\""), reason)
            })?;
            props.insert(name.clone(), value);
        }
        for (name, var) in &self.secret_properties_env {
            let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                ConfigError::invalid(
                    format!("kafka.secret_properties_env.\"{name}\""),
                    format!("environment variable {var} is not set"),
                )
            })?;
            props.insert(name.clone(), value);
        }
        props.insert("bootstrap.servers".into(), self.bootstrap_servers.clone());
        // The bridge picks partitions itself with the same algorithm; the
        // property makes any other producer built from these settings (the
        // dead-letter replay) agree with it.
        props.insert(
            "partitioner".into(),
            self.partitioner.librdkafka_name().into(),
        );
        for (name, value) in DEFAULTS {
            props
                .entry((*name).to_owned())
                .or_insert_with(|| (*value).to_owned());
        }
        for (name, _, value) in ENFORCED {
            if ALIASES.contains(name) {
                props.remove(*name);
            } else {
                props.insert((*name).into(), (*value).into());
            }
        }
        Ok(props)
    }

    /// The properties as shown to people: secrets masked.
    pub fn shown_properties(&self) -> BTreeMap<String, String> {
        let mut shown: BTreeMap<String, String> = self
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), property_value(v).unwrap_or_default()))
            .collect();
        for (name, var) in &self.secret_properties_env {
            shown.insert(name.clone(), format!("{MASK} (from ${var})"));
        }
        shown
    }
}

/// librdkafka takes every value as a string; TOML lets people write
/// numbers and booleans bare.
fn property_value(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err("must be a string, number or boolean".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> KafkaConfig {
        toml::from_str(&format!(
            "bootstrap_servers = \"b:9092\"\ndefault_topic = \"t\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn delivery_guarantee_cannot_be_weakened() {
        let err = config("properties = { acks = 1 }").validate().unwrap_err();
        assert_eq!(err.key(), Some("kafka.properties.\"acks\""));
        let err = config("properties = { \"enable.idempotence\" = false }")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("weaken"), "{err}");
        let err = config("properties = { \"message.timeout.ms\" = 300000 }")
            .validate()
            .unwrap_err();
        assert_eq!(err.key(), Some("kafka.properties.\"message.timeout.ms\""));
        config("properties = { acks = \"all\", \"linger.ms\" = 5 }")
            .validate()
            .unwrap();
    }

    #[test]
    fn secrets_come_from_the_environment_and_are_masked() {
        let cfg = config("secret_properties_env = { \"sasl.password\" = \"KPW\" }");
        let err = config("properties = { \"sasl.password\" = \"x\" }")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("environment"), "{err}");
        let props = cfg
            .client_properties(&|v| (v == "KPW").then(|| "s3cret".to_string()))
            .unwrap();
        assert_eq!(props["sasl.password"], "s3cret");
        assert_eq!(props["enable.idempotence"], "true");
        assert_eq!(props["acks"], "all");
        assert_eq!(props["message.timeout.ms"], "0");
        assert!(!cfg.shown_properties()["sasl.password"].contains("s3cret"));
        let err = cfg.client_properties(&|_| None).unwrap_err();
        assert!(err.to_string().contains("KPW"), "{err}");
    }

    #[test]
    fn reconnect_backoff_defaults_to_a_second_unless_the_file_says() {
        let props = config("").client_properties(&|_| None).unwrap();
        assert_eq!(props["reconnect.backoff.max.ms"], "1000");
        let props = config("properties = { \"reconnect.backoff.max.ms\" = 5000 }")
            .client_properties(&|_| None)
            .unwrap();
        assert_eq!(props["reconnect.backoff.max.ms"], "5000");
    }
}
