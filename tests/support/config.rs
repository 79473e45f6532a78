//! The bridge configuration the process tests share: the simulator's URLs,
//! queue templates routed to the Kafka topics of [`TOPICS`], fast retries,
//! and the keys a test adds to it.

use std::path::Path;

use super::SimUrls;

/// Kafka topics the process tests route to.
pub const TOPICS: [&str; 3] = [
    "genesys.queue-observations",
    "genesys.queue-conversations",
    "genesys.events",
];

/// The bridge configuration the process tests share: the simulator's API
/// and login base URLs, queue templates routed to [`TOPICS`], fast retries.
pub fn bridge_config(sim: &SimUrls, bootstrap: &str, buffer: &Path) -> String {
    bridge_config_with_buffer(sim, bootstrap, buffer, "")
}

/// The free-space floor of the tests' buffers: the lowest `check-config`
/// accepts, not the 256 MiB default, because CI machines may have little
/// disk free. tests/disk_full.rs sets its own floor to test it.
const TEST_MIN_FREE_BYTES: &str = "min_free_bytes = 4194304";

/// [`bridge_config`] with more `[buffer]` keys (TOML lines, e.g.
/// `max_bytes = 25165824`): its `[buffer]` section comes last.
pub fn bridge_config_with_buffer(
    sim: &SimUrls,
    bootstrap: &str,
    buffer: &Path,
    buffer_keys: &str,
) -> String {
    let floor = if buffer_keys.contains("min_free_bytes") {
        ""
    } else {
        TEST_MIN_FREE_BYTES
    };
    format!(
        r#"
[genesys]
api_base_url = "{api}"
login_base_url = "{login}"
client_id = "e2e-client"
client_secret_env = "E2E_CLIENT_SECRET"
ping_interval_secs = 5
heartbeat_timeout_secs = 20
retry_min_delay_ms = 100
retry_max_delay_ms = 2000

[topics]
per_queue = ["v2.analytics.queues.{{id}}.observations", "v2.routing.queues.{{id}}.conversations"]

[kafka]
bootstrap_servers = "{bootstrap}"
default_topic = "genesys.events"
routes = [
  {{ match = "v2.analytics.queues.*.observations", topic = "genesys.queue-observations" }},
  {{ match = "v2.routing.queues.*", topic = "genesys.queue-conversations" }},
]

[buffer]
path = "{buffer}"
{floor}
{buffer_keys}
"#,
        api = sim.api,
        login = sim.login,
        buffer = buffer.display()
    )
}

/// `config` with more `[genesys]` keys (TOML lines) at the top of that
/// section.
pub fn with_genesys_keys(config: String, keys: &str) -> String {
    if keys.is_empty() {
        return config;
    }
    // A key given here replaces the base configuration's line for it.
    let names: Vec<&str> = keys
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    let kept: Vec<&str> = config
        .lines()
        .filter(|line| {
            !line
                .split_once('=')
                .is_some_and(|(name, _)| names.contains(&name.trim()))
        })
        .collect();
    kept.join("\n")
        .replacen("[genesys]\n", &format!("[genesys]\n{keys}\n"), 1)
}
