//! The operations surface a monitoring team loads: the alert rules in
//! `ops/prometheus/alerts.yml` and the dashboard in
//! `ops/grafana/genesys-kafka-bridge.json`.
//!
//! - the rules pass `promtool check rules` (Debian's `prometheus` package);
//! - the rules pass their unit tests, `promtool test rules` on
//!   `ops/prometheus/alerts.test.yml`: each alert fires on its condition,
//!   with its labels, and not before its `for:`;
//! - every metric the rules and the dashboard query is one a real running
//!   bridge exports on `/metrics` (simulator, Tansu, events flowing);
//! - that `/metrics` is valid Prometheus text (`promtool check metrics`)
//!   and holds no secret.
//!
//! promtool is required: the tests fail when it is missing, unless
//! `BRIDGE_TESTS_SKIP_PROMTOOL=1` (then the promtool checks are skipped and
//! said so; the name comparison still runs). `PROMTOOL_BIN` names it.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::Stack;

const RULES: &str = "ops/prometheus/alerts.yml";
/// promtool unit tests of `RULES` (their `rule_files` path is relative to
/// this file).
const RULE_TESTS: &str = "ops/prometheus/alerts.test.yml";
const DASHBOARD: &str = "ops/grafana/genesys-kafka-bridge.json";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// promtool, or `None` when the run says to skip its checks.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PROMTOOL_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("promtool"))
                    .find(|p| p.is_file())
            })
        })
        .or_else(|| Some(PathBuf::from("/usr/bin/promtool")).filter(|p| p.is_file()));
    if found.is_none() && std::env::var("BRIDGE_TESTS_SKIP_PROMTOOL").as_deref() == Ok("1") {
        println!("SKIPPED: promtool is missing and BRIDGE_TESTS_SKIP_PROMTOOL=1");
        return None;
    }
    Some(found.expect(
        "promtool is missing: 'apt-get install prometheus' (Debian), or set PROMTOOL_BIN, \
         or BRIDGE_TESTS_SKIP_PROMTOOL=1 to skip these checks",
    ))
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    promtool_succeeds(&["check", "rules"], RULES);
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    promtool_succeeds(&["test", "rules"], RULE_TESTS);
}

/// Runs `promtool <command> <file>` and asserts it says SUCCESS (skipped
/// with the other promtool checks).
fn promtool_succeeds(command: &[&str], file: &str) {
    let Some(promtool) = promtool() else { return };
    let out = Command::new(&promtool)
        .args(command)
        .arg(repo_file(file))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let command = command.join(" ");
    println!("promtool {command}: {text}");
    assert!(out.status.success(), "promtool {command} failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The PromQL expressions of the alert rules (`expr:` values, folded
/// `>-` blocks included).
fn rule_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(repo_file(RULES)).unwrap();
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut expr = rest.trim().trim_start_matches(">-").to_owned();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(expr);
    }
    exprs
}

/// Every PromQL expression of the dashboard: panel targets and variable
/// queries.
fn dashboard_expressions() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file(DASHBOARD)).unwrap()).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        names.contains(&"datasource") && names.contains(&"instance"),
        "{names:?}"
    );
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} does not use the datasource variable",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in variables {
        if let Some(query) = variable["definition"].as_str() {
            exprs.push(query.to_owned());
        }
    }
    exprs
}

/// Metric names an expression reads: `gkb_*`, and `up`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let token = &expr[start..i];
            // Skip label names and values: `{…}` contents are not metrics.
            let in_braces = expr[..start].matches('{').count() > expr[..start].matches('}').count();
            if !in_braces && (token.starts_with("gkb_") || token == "up") {
                names.insert(token.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Names the exposition declares or has samples of; a histogram `h`
/// gives `h_bucket`, `h_sum` and `h_count`.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// `/metrics` through `promtool check metrics` (reads stdin).
fn promtool_check_metrics(promtool: &Path, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn dashboard_and_alerts_query_only_metrics_a_running_bridge_exports() {
    let promtool = promtool();
    let dir = tempfile::tempdir().unwrap();
    // A one-member cluster, so the gkb_cluster_* series exist too (it
    // leads at once and forwards as a bridge alone does).
    let stack = Stack::builder(dir.path())
        .queues(3)
        .env("GKB_CLUSTER__MEMBER", "solo")
        .start();
    let (bridge, sim, secret) = (&stack.bridge, &stack.sim, stack.secret.as_str());
    sim.generate(300);
    let scrape = bridge.wait_forwarded(300, Duration::from_secs(120));
    let text = scrape.0;

    let exported = exported_names(&text);
    let mut queried = BTreeSet::new();
    let mut missing = Vec::new();
    for (source, exprs) in [
        ("alert rules", rule_expressions()),
        ("dashboard", dashboard_expressions()),
    ] {
        assert!(!exprs.is_empty(), "no expressions found in the {source}");
        for expr in exprs {
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{source}: no metric in `{expr}`");
            for name in names {
                // `up` is Prometheus's own, per scrape target.
                if name != "up" && !exported.contains(&name) {
                    missing.push(format!("{source}: {name} in `{expr}`"));
                }
                queried.insert(name);
            }
        }
    }
    println!(
        "ops surface: {} metric names queried by the rules and the dashboard, {} exported by the bridge; missing: {}",
        queried.len(),
        exported.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "queried but not exported by the bridge:\n{}\n\n/metrics was:\n{text}",
        missing.join("\n")
    );

    // Labelled series the dashboard groups by are there with their labels.
    for series in [
        "gkb_kafka_topic_backlog_events{topic=\"",
        "gkb_reconnects_total{connection=\"0\",reason=\"dropped\"}",
        "gkb_socket_gaps_total{connection=\"0\"}",
        "gkb_genesys_request_seconds_bucket{call=\"create_channel\",",
        "gkb_receive_to_ack_seconds_bucket{le=\"+Inf\"} ",
        "gkb_buffer_flush_seconds_count ",
        "gkb_channel_expiry_seconds{connection=\"0\"}",
        "gkb_token_expiry_seconds ",
    ] {
        assert!(text.contains(series), "no `{series}` in /metrics:\n{text}");
    }
    let acknowledged = support::metric(&text, "gkb_receive_to_ack_seconds_count").unwrap();
    assert!(acknowledged >= 300.0, "{acknowledged} latencies observed");
    assert!(!text.contains(secret), "the OAuth secret is in /metrics");

    match promtool {
        Some(promtool) => {
            let (valid, said) = promtool_check_metrics(&promtool, &text);
            println!("promtool check metrics: valid {valid} {said}");
            assert!(
                valid,
                "promtool check metrics refused /metrics:\n{said}\n\n{text}"
            );
        }
        None => println!("SKIPPED: promtool check metrics"),
    }
}
