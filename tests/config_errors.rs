//! Bad configuration: exit 78 and a message naming the key; a good one is
//! printed with every secret masked.

use std::process::Command;

const BRIDGE: &str = env!("CARGO_BIN_EXE_genesys-kafka-bridge");

const VALID: &str = r#"
[genesys]
region = "eu-west-1"
client_id = "abc"
client_secret_env = "CFG_TEST_SECRET"

[topics]
per_queue = ["v2.analytics.queues.{id}.observations"]

[kafka]
bootstrap_servers = "127.0.0.1:9092"
default_topic = "genesys.events"
secret_properties_env = { "sasl.password" = "CFG_TEST_KAFKA_PASSWORD" }
properties = { "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanism" = "PLAIN", "sasl.username" = "u" }
"#;

fn check(config: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BRIDGE)
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env_remove("GENESYS_CLIENT_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SECRETS: [(&str, &str); 2] = [
    ("CFG_TEST_SECRET", "client-secret-value-123"),
    ("CFG_TEST_KAFKA_PASSWORD", "kafka-password-value-456"),
];

#[test]
fn valid_config_prints_with_secrets_masked() {
    let (code, stdout, stderr) = check(VALID, &SECRETS);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("https://api.mypurecloud.ie"), "{stdout}");
    for (_, secret) in SECRETS {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "secret shown:\n{stdout}{stderr}"
        );
    }
    assert!(stdout.contains("********"), "{stdout}");
}

#[test]
fn unknown_key_exits_78_naming_it() {
    let bad = VALID.replace(
        "client_id = \"abc\"",
        "client_id = \"abc\"\nclient_sceret = \"x\"",
    );
    let (code, _, stderr) = check(&bad, &SECRETS);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("genesys.client_sceret"), "{stderr}");
}

#[test]
fn invalid_value_exits_78_naming_the_key_and_reason() {
    let bad = VALID.replace("eu-west-1", "mars-1");
    let (code, _, stderr) = check(&bad, &SECRETS);
    assert_eq!(code, 78);
    assert!(
        stderr.contains("genesys.region") && stderr.contains("unknown region"),
        "{stderr}"
    );

    let weak = VALID.replace(
        "\"sasl.username\" = \"u\"",
        "\"sasl.username\" = \"u\", acks = \"1\"",
    );
    let (code, _, stderr) = check(&weak, &SECRETS);
    assert_eq!(code, 78);
    assert!(stderr.contains("kafka.properties.\"acks\""), "{stderr}");
}

#[test]
fn missing_secret_exits_78_naming_the_variable() {
    let (code, _, stderr) = check(VALID, &SECRETS[1..]);
    assert_eq!(code, 78);
    assert!(
        stderr.contains("genesys.client_secret_env") && stderr.contains("CFG_TEST_SECRET"),
        "{stderr}"
    );
}

#[test]
fn unknown_librdkafka_property_exits_78() {
    let bad = VALID.replace(
        "\"sasl.username\" = \"u\"",
        "\"sasl.username\" = \"u\", \"no.such.property\" = 1",
    );
    let (code, _, stderr) = check(&bad, &SECRETS);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("kafka.properties") && stderr.contains("no.such.property"),
        "{stderr}"
    );
}

#[test]
fn unreadable_file_and_bad_toml_exit_78() {
    let out = Command::new(BRIDGE)
        .args(["check-config", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let (code, _, stderr) = check("[genesys\n", &SECRETS);
    assert_eq!(code, 78);
    assert!(stderr.contains("line 1"), "{stderr}");
}

/// The shipped examples are what operators copy: each must pass as it is
/// (with its commented keys uncommented too, for the example).
#[test]
fn the_shipped_configurations_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/config/example.toml")).unwrap();
    let demo = std::fs::read_to_string(format!("{root}/config/demo.toml")).unwrap();
    let secret = [("GENESYS_CLIENT_SECRET", "example-secret")];
    let (code, _, stderr) = check(&demo, &secret);
    assert_eq!(code, 0, "config/demo.toml: {stderr}");
    let (code, _, stderr) = check(&example, &secret);
    assert_eq!(code, 0, "config/example.toml: {stderr}");
    // The proxy keys, uncommented, as an operator would.
    let uncommented: String = example
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if ["proxy_url", "proxy_password_env", "no_proxy"]
                    .iter()
                    .any(|key| rest.starts_with(key)) =>
            {
                rest.to_owned()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\nproxy_url ="), "{uncommented}");
    let (code, _, stderr) = check(
        &uncommented,
        &[
            ("GENESYS_CLIENT_SECRET", "example-secret"),
            ("GENESYS_PROXY_PASSWORD", "proxy-password"),
        ],
    );
    assert_eq!(code, 0, "config/example.toml with its proxy keys: {stderr}");
    assert!(!stderr.contains("proxy-password"));
}

/// A buffer filesystem already below the floor is valid configuration,
/// but the bridge would refuse every event from the start: check-config
/// says so (and the bridge logs it once at start-up).
#[test]
fn a_buffer_filesystem_below_the_floor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{VALID}\n[buffer]\npath = \"{}\"\nmin_free_bytes = 1152921504606846976\n",
        dir.path().join("buffer").display()
    );
    let (code, stdout, stderr) = check(&config, &SECRETS);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: buffer.min_free_bytes: the filesystem of"),
        "{stderr}"
    );
    assert!(
        stdout.contains("# warning: buffer.min_free_bytes"),
        "{stdout}"
    );
    let roomy = format!(
        "{VALID}\n[buffer]\npath = \"{}\"\nmin_free_bytes = 4194304\n",
        dir.path().join("buffer").display()
    );
    let (code, _, stderr) = check(&roomy, &SECRETS);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning:"), "{stderr}");
}
