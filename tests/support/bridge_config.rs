// The bridge configuration the process tests share (included, not a module,
// so each test crate gets its own copy without dead-code warnings).

pub fn bridge_config(sim_url: &str, bootstrap: &str, buffer: &std::path::Path) -> String {
    format!(
        r#"
[genesys]
api_base_url = "{sim_url}"
login_base_url = "{sim_url}"
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
"#,
        buffer = buffer.display()
    )
}
