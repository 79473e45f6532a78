//! The configuration file, its environment overrides, and the errors that
//! name the offending key.
//!
//! The file is TOML. Each section is defined beside the component it
//! configures (`[genesys]` in `genesys::config`, `[kafka]` in
//! `producer::config`, …); their doc comments are the user documentation,
//! and `config/example.toml` repeats them. Unknown keys are errors.
//!
//! Any key can be overridden from the environment: `GKB_<SECTION>__<KEY>`,
//! e.g. `GKB_KAFKA__BOOTSTRAP_SERVERS=broker:9092` or
//! `GKB_GENESYS__CLIENT_ID=…`. A value is read as a TOML value when it parses
//! as one (numbers, booleans, arrays) and as a string otherwise.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod error;

pub use error::ConfigError;

use crate::backfill::BackfillConfig;
use crate::buffer::BufferConfig;
use crate::cluster::config::ClusterConfig;
use crate::genesys::config::{GenesysConfig, SecretSource};
use crate::health::HealthConfig;
use crate::producer::KafkaConfig;
use crate::secret::Secret;
use crate::snapshots::SnapshotConfig;
use crate::subscriptions::TopicsConfig;
use crate::telemetry::init::LogConfig;

/// `sysexits.h` EX_CONFIG: what the binary exits with on a bad configuration.
pub const EXIT_CONFIG: i32 = 78;
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "GKB_";
/// The variable naming the configuration file (not an override).
pub const CONFIG_PATH_VAR: &str = "GKB_CONFIG";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub genesys: GenesysConfig,
    pub topics: TopicsConfig,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    #[serde(default)]
    pub backfill: BackfillConfig,
    /// Absent: the bridge runs alone.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// A configuration that was checked, with its secrets resolved.
#[derive(Clone)]
pub struct Settings {
    pub config: Config,
    pub api_base_url: String,
    pub login_base_url: String,
    pub client_secret: Secret,
    pub client_secret_source: SecretSource,
    /// librdkafka properties, secrets included.
    pub kafka_properties: BTreeMap<String, String>,
}

/// Reads, overrides, checks and resolves the configuration at `path`.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    resolve(read(path)?, &|name| std::env::var(name).ok())
}

/// Reads the configuration at `path` with the `GKB_*` overrides applied,
/// without checking it or resolving its secrets: for tools that need only
/// a section of it (the buffer tools read `[buffer]` and `[kafka]`'s
/// routes) and must not require the client secret.
pub fn read(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    // Only GKB_* variables matter; reading them one by one (rather than
    // std::env::vars) does not panic on an unrelated non-UTF-8 variable.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    parse(path, &text, &env)
}

/// Parses TOML text with environment overrides applied, naming the key of
/// any type error or unknown field.
pub fn parse(path: &Path, text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.message().to_owned()
            + &e.span()
                .map(|s| format!(" (at line {})", line_of(text, s.start)))
                .unwrap_or_default(),
    })?;
    for (var, value) in env {
        if var == CONFIG_PATH_VAR {
            continue;
        }
        if let Some(rest) = var.strip_prefix(ENV_PREFIX) {
            apply_override(&mut table, var, rest, value)?;
        }
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        // The path already ends at an unknown field; the message's own
        // "in `section`" line repeats it.
        let key = e.path().to_string();
        let reason = e.inner().to_string();
        let reason = reason.lines().next().unwrap_or_default().to_owned();
        ConfigError::invalid(
            if key == "." {
                "(top level)".into()
            } else {
                key
            },
            reason,
        )
    })
}

/// Checks every section and resolves the secrets.
pub fn resolve(
    config: Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    config.genesys.validate()?;
    config.topics.validate()?;
    config.kafka.validate()?;
    config.buffer.validate()?;
    config.health.validate()?;
    config.log.validate()?;
    config.snapshots.validate()?;
    config.backfill.validate()?;
    if let Some(cluster) = &config.cluster {
        cluster.validate()?;
    }
    let (api_base_url, login_base_url) = config.genesys.base_urls()?;
    let (client_secret, client_secret_source) = config.genesys.client_secret(env)?;
    let kafka_properties = config.kafka.client_properties(env)?;
    Ok(Settings {
        config,
        api_base_url,
        login_base_url,
        client_secret,
        client_secret_source,
        kafka_properties,
    })
}

/// Shows the masked configuration: `kafka_properties` holds secrets.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_toml())
    }
}

impl Settings {
    /// The effective configuration as TOML, every secret masked.
    pub fn display_toml(&self) -> String {
        let mut value = toml::Value::try_from(&self.config).expect("the config serialises");
        let table = value.as_table_mut().expect("the config is a table");
        if let Some(genesys) = table.get_mut("genesys").and_then(|g| g.as_table_mut()) {
            genesys.insert("api_base_url".into(), self.api_base_url.clone().into());
            genesys.insert("login_base_url".into(), self.login_base_url.clone().into());
            genesys.insert(
                "client_secret".into(),
                format!(
                    "{} (from {})",
                    crate::secret::MASK,
                    self.client_secret_source
                )
                .into(),
            );
        }
        if let Some(kafka) = table.get_mut("kafka").and_then(|k| k.as_table_mut()) {
            let shown: toml::Table = self
                .config
                .kafka
                .shown_properties()
                .into_iter()
                .map(|(k, v)| (k, toml::Value::String(v)))
                .collect();
            kafka.insert("properties".into(), toml::Value::Table(shown));
            kafka.remove("secret_properties_env");
        }
        toml::to_string_pretty(&value).expect("a TOML table serialises")
    }
}

fn apply_override(
    table: &mut toml::Table,
    var: &str,
    path: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            keys.join("."),
            format!("environment variable {var} does not name a key (use GKB_SECTION__KEY)"),
        ));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, parents) = keys.split_last().expect("split never yields nothing");
    let mut node = table;
    for (depth, key) in parents.iter().enumerate() {
        node = node
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| {
                ConfigError::invalid(
                    keys[..=depth].join("."),
                    format!("environment variable {var} reaches into a value that is not a table"),
                )
            })?;
    }
    node.insert(last.clone(), value);
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[genesys]
region = "eu-west-1"
client_id = "abc"

[topics]
per_queue = ["v2.analytics.queues.{id}.observations"]

[kafka]
bootstrap_servers = "127.0.0.1:9092"
default_topic = "genesys.events"
"#;

    fn env_secret(name: &str) -> Option<String> {
        (name == "GENESYS_CLIENT_SECRET").then(|| "s3cret".to_owned())
    }

    fn settings(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        resolve(parse(Path::new("t.toml"), text, &env)?, &env_secret)
    }

    #[test]
    fn minimal_config_resolves_region_and_secret() {
        let s = settings(MINIMAL, &[]).unwrap();
        assert_eq!(s.api_base_url, "https://api.mypurecloud.ie");
        assert_eq!(s.client_secret.expose(), "s3cret");
        let shown = s.display_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("GENESYS_CLIENT_SECRET"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = MINIMAL.replace(
            "client_id = \"abc\"",
            "client_id = \"abc\"\nclient_sekret = 1",
        );
        let err = settings(&text, &[]).unwrap_err();
        assert_eq!(err.key(), Some("genesys.client_sekret"), "{err}");
        let err = settings(&format!("{MINIMAL}\n[extra]\nx = 1"), &[]).unwrap_err();
        assert_eq!(err.key(), Some("extra"), "{err}");
    }

    #[test]
    fn wrong_types_are_named() {
        let text = MINIMAL.replace(
            "client_id = \"abc\"",
            "client_id = \"abc\"\nping_interval_secs = \"often\"",
        );
        let err = settings(&text, &[]).unwrap_err();
        assert_eq!(err.key(), Some("genesys.ping_interval_secs"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = settings(
            MINIMAL,
            &[
                ("GKB_KAFKA__BOOTSTRAP_SERVERS", "other:9093"),
                ("GKB_GENESYS__PING_INTERVAL_SECS", "12"),
                ("GKB_HEALTH__LISTEN", "0.0.0.0:1234"),
            ],
        )
        .unwrap();
        assert_eq!(s.config.kafka.bootstrap_servers, "other:9093");
        assert_eq!(s.config.genesys.ping_interval_secs, 12);
        assert_eq!(s.config.health.listen, "0.0.0.0:1234");
        let err = settings(MINIMAL, &[("GKB_KAFKA__NOPE", "1")]).unwrap_err();
        assert_eq!(err.key(), Some("kafka.nope"), "{err}");
    }

    #[test]
    fn config_path_variable_is_not_an_override() {
        settings(MINIMAL, &[("GKB_CONFIG", "/etc/bridge.toml")]).unwrap();
    }

    #[test]
    fn log_level_typos_are_refused() {
        let text = format!("{MINIMAL}\n[log]\nlevel = \"inf\"\n");
        assert_eq!(settings(&text, &[]).unwrap_err().key(), Some("log.level"));
        let text = format!("{MINIMAL}\n[log]\nlevel = \"warn,genesys_kafka_bridge=debug\"\n");
        settings(&text, &[]).unwrap();
    }

    #[test]
    fn debug_output_masks_secrets() {
        let text = MINIMAL.replace(
            "default_topic = \"genesys.events\"",
            "default_topic = \"genesys.events\"\nsecret_properties_env = { \"sasl.password\" = \"GENESYS_CLIENT_SECRET\" }",
        );
        let shown = format!("{:?}", settings(&text, &[]).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn missing_secret_names_the_variable() {
        let text = MINIMAL.replace(
            "client_id = \"abc\"",
            "client_id = \"abc\"\nclient_secret_env = \"NOPE\"",
        );
        let err = settings(&text, &[]).unwrap_err();
        assert_eq!(err.key(), Some("genesys.client_secret_env"));
        assert!(err.to_string().contains("NOPE"));
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let err = settings("[genesys]\nclient_id = \n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }));
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
