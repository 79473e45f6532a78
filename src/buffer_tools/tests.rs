use super::client::Target;
use super::server::ControlServer;
use super::*;
use crate::buffer::BufferConfig;
use crate::producer::routing::Route;

const QUEUE: &str = "v2.routing.queues.6f1c1f2e-95a4-4d1f-9d0b-3a5e0c1d2b7a.observations";
const USER: &str = "v2.users.0a1b2c3d-4e5f-6789-abcd-ef0123456789.presence";

fn never() -> Interrupt {
    Interrupt::default()
}

fn test_config() -> BufferConfig {
    BufferConfig {
        min_free_bytes: 4 * 1024 * 1024,
        ..BufferConfig::default()
    }
}

fn router() -> Router {
    Router::new(
        &[Route {
            pattern: "v2.routing.queues.*.observations".into(),
            topic: "queue-observations".into(),
        }],
        "genesys-other",
    )
    .unwrap()
}

/// Three queue observations and two presence events; the fourth event is
/// large enough to be stored in chunks.
fn fill(buffer: &Buffer) -> Vec<u64> {
    let large = format!("{{\"pad\":\"{}\"}}", "x".repeat(20_000));
    [
        (1_000, QUEUE, "{\"a\":1}".to_owned()),
        (2_000, USER, "{\"b\":2}".to_owned()),
        (3_000, QUEUE, "{\"a\":3}".to_owned()),
        (4_000, USER, large),
        (5_000, QUEUE, "not json at all".to_owned()),
    ]
    .into_iter()
    .map(|(at, topic, payload)| {
        buffer
            .append(at, topic, Some("corr"), payload.as_bytes())
            .unwrap()
    })
    .collect()
}

#[test]
fn stats_count_every_event_by_kafka_topic_and_match_the_buffers_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
    fill(&buffer);
    let stats = stats(&buffer, &Routing::Routes(router()), "test", &never()).unwrap();
    assert_eq!(stats.events, 5);
    assert_eq!(stats.events, buffer.len() as u64);
    assert_eq!(
        stats.event_bytes, stats.usage.held_bytes,
        "with nothing kept aside, the events are all the buffer holds"
    );
    assert_eq!(stats.oldest_received_at_ms, Some(1_000));
    assert_eq!(stats.newest_received_at_ms, Some(5_000));
    let topics: Vec<_> = stats
        .topics
        .iter()
        .map(|t| (t.topic.as_str(), t.events, t.oldest_received_at_ms))
        .collect();
    assert_eq!(
        topics,
        [
            ("genesys-other", 2, 2_000),
            ("queue-observations", 3, 1_000)
        ]
    );
    assert_eq!(
        stats.topics.iter().map(|t| t.bytes).sum::<u64>(),
        stats.event_bytes
    );
    assert!(
        stats.topics[0].bytes > 20_000,
        "the chunked event counts whole"
    );

    let by_pattern = super::stats(&buffer, &Routing::GenesysPattern, "test", &never()).unwrap();
    let names: Vec<_> = by_pattern.topics.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(
        names,
        [
            "v2.routing.queues.{id}.observations",
            "v2.users.{id}.presence"
        ]
    );
}

#[test]
fn export_writes_every_record_in_order_and_filters_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
    let seqs = fill(&buffer);
    let routing = Routing::Routes(router());
    let mut out = Vec::new();
    let end = export(
        &buffer,
        &routing,
        &ExportFilter::default(),
        &mut out,
        &never(),
    )
    .unwrap();
    assert_eq!((end.exported, end.damaged), (5, 0));
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(exported, seqs);
    assert_eq!(lines[0]["event"], serde_json::json!({"a": 1}));
    assert_eq!(lines[0]["kafka_topic"], "queue-observations");
    assert_eq!(lines[0]["genesys_topic"], QUEUE);
    assert_eq!(lines[0]["correlation_id"], "corr");
    assert_eq!(lines[0]["received_at"], "1970-01-01T00:00:01.000Z");
    assert_eq!(lines[3]["event"]["pad"].as_str().unwrap().len(), 20_000);
    assert_eq!(lines[4]["payload"], "not json at all");
    assert!(lines[4].get("event").is_none());

    let mut out = Vec::new();
    let filter = ExportFilter {
        kafka_topic: Some("queue-observations".into()),
        limit: Some(2),
    };
    let end = export(&buffer, &routing, &filter, &mut out, &never()).unwrap();
    assert_eq!(end.exported, 2);
    let text = String::from_utf8(out).unwrap();
    let seqs_out: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs_out, [seqs[0], seqs[2]]);

    let mut out = Vec::new();
    let none = ExportFilter {
        limit: Some(0),
        ..ExportFilter::default()
    };
    assert_eq!(
        export(&buffer, &routing, &none, &mut out, &never())
            .unwrap()
            .exported,
        0
    );
    assert!(out.is_empty());
}

#[test]
fn check_finds_damage_read_only_and_repair_moves_it_to_the_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    {
        let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
        fill(&buffer);
        buffer.damage_event_for_tests(99, &[42, 1, 2]);
        buffer.flush_blocking().unwrap();
        let report = check(&buffer, "test", &never()).unwrap();
        assert_eq!((report.events_checked, report.damaged_events), (6, 1));
        assert_eq!(report.damaged[0].0, 99);
        assert!(report.problems());
        // Read-only: the damaged entry is still there.
        assert_eq!(buffer.quarantine_len(), 0);
        assert_eq!(check(&buffer, "test", &never()).unwrap().damaged_events, 1);
    }
    let target = Target {
        dir: dir.path().to_owned(),
        config: test_config(),
        routing: Routing::Routes(router()),
    };
    let plain = target.check(false).unwrap();
    assert_eq!(plain.source, client::FILES_SOURCE);
    assert!(plain.problems() && plain.repaired.is_none());
    let repaired = target.check(true).unwrap();
    assert_eq!(repaired.repaired.as_deref(), Some(&[99][..]));
    assert!(!repaired.problems(), "{repaired:?}");
    assert_eq!((repaired.events_checked, repaired.quarantined), (5, 1));
    let stats = target.stats().unwrap();
    assert_eq!((stats.events, stats.quarantined, stats.damaged), (5, 1, 0));
}

#[test]
fn a_directory_without_a_buffer_is_refused_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target {
        dir: dir.path().join("nothing-here"),
        config: test_config(),
        routing: Routing::GenesysPattern,
    };
    assert!(matches!(
        target.stats(),
        Err(client::ClientError::NotABuffer(_))
    ));
    assert!(!dir.path().join("nothing-here").exists());
}

#[actix_rt::test]
async fn a_running_bridge_answers_on_its_control_socket_as_the_files_would() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
    let seqs = fill(&buffer);
    // One dead letter and one gap, for the listings.
    let first = buffer.get(seqs[0]).unwrap().unwrap();
    buffer
        .dead_letter(&first, "queue-observations", "too large")
        .unwrap();
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
    let gap = crate::buffer::GapRecord::new(
        0,
        start,
        start + std::time::Duration::from_secs(3),
        "socket dropped",
        false,
        &[QUEUE.to_owned()],
    );
    buffer
        .record_gap_blocking(&gap, &[QUEUE.to_owned()])
        .unwrap();
    let server =
        ControlServer::start(dir.path(), buffer.clone(), Routing::Routes(router())).unwrap();
    let socket = server.path().to_owned();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let target = Target {
        dir: dir.path().to_owned(),
        config: test_config(),
        routing: Routing::GenesysPattern,
    };
    let (stats, report, exported, repair, listings) = actix_rt::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let end = target.export(ExportFilter::default(), &mut out).unwrap();
        assert_eq!(end.exported, 4);
        let mut listings = (Vec::new(), Vec::new());
        let gaps = GapFilter {
            since_ms: None,
            topics: true,
            rerun_backfill: None,
        };
        assert_eq!(target.gaps(gaps, &mut listings.0).unwrap().listed, 1);
        let dead = KeptAsideFilter { quarantine: false };
        assert_eq!(target.kept_aside(dead, &mut listings.1).unwrap().listed, 1);
        (
            target.stats().unwrap(),
            target.check(false).unwrap(),
            out,
            target.check(true),
            listings,
        )
    })
    .await
    .unwrap();
    // The bridge's routes, not the client's (it has none).
    assert_eq!(stats.source, server::SOURCE);
    assert_eq!((stats.events, stats.dead_letters, stats.gaps), (4, 1, 1));
    assert_eq!(stats.topics.len(), 2);
    let mut direct_gaps = Vec::new();
    let with_topics = GapFilter {
        since_ms: None,
        topics: true,
        rerun_backfill: None,
    };
    super::gaps(&buffer, &with_topics, &mut direct_gaps, &never()).unwrap();
    assert_eq!(listings.0, direct_gaps);
    let listed: crate::buffer::GapRecord = serde_json::from_slice(&listings.0).unwrap();
    assert_eq!(listed.topics.as_deref(), Some(&[QUEUE.to_owned()][..]));
    let letter: serde_json::Value = serde_json::from_slice(&listings.1).unwrap();
    assert_eq!(letter["reason"], "too large");
    assert_eq!(stats.topics[1].topic, "queue-observations");
    assert_eq!(report.events_checked, 4);
    assert!(!report.problems());
    let mut direct = Vec::new();
    export(
        &buffer,
        &Routing::Routes(router()),
        &ExportFilter::default(),
        &mut direct,
        &never(),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(exported).unwrap(),
        String::from_utf8(direct).unwrap()
    );
    assert!(matches!(
        repair,
        Err(client::ClientError::RepairWhileRunning(_))
    ));

    drop(server);
    assert!(!socket.exists(), "the socket file goes with the server");
}

#[actix_rt::test]
async fn a_malformed_request_gets_an_error_line() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
    let server = ControlServer::start(dir.path(), buffer, Routing::GenesysPattern).unwrap();
    let socket = server.path().to_owned();
    let answer = actix_rt::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream.write_all(b"{\"command\":\"repair\"}\n").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("not a request"),
        "{answer}"
    );
}

#[test]
fn genesys_pattern_replaces_ids_only() {
    assert_eq!(
        genesys_pattern(QUEUE),
        "v2.routing.queues.{id}.observations"
    );
    assert_eq!(
        genesys_pattern("v2.users.0a1b2c3d-4e5f-6789-abcd-ef0123456789?presence&routingStatus"),
        "v2.users.{id}?presence&routingStatus"
    );
    assert_eq!(genesys_pattern("channel.metadata"), "channel.metadata");
}

#[test]
fn a_raised_interrupt_ends_every_walk_and_listing() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
    fill(&buffer);
    let stopping = Interrupt::default();
    stopping.raise();
    let routing = Routing::GenesysPattern;
    let mut out = Vec::new();
    assert!(matches!(
        stats(&buffer, &routing, "test", &stopping),
        Err(ToolError::Interrupted)
    ));
    assert!(matches!(
        check(&buffer, "test", &stopping),
        Err(ToolError::Interrupted)
    ));
    assert!(matches!(
        export(
            &buffer,
            &routing,
            &ExportFilter::default(),
            &mut out,
            &stopping
        ),
        Err(ToolError::Interrupted)
    ));
    assert!(out.is_empty(), "nothing written once raised");
    assert!(matches!(
        kept_aside(&buffer, &KeptAsideFilter::default(), &mut out, &stopping),
        Ok(ListEnd { listed: 0 }) | Err(ToolError::Interrupted)
    ));
}

#[test]
fn an_event_with_line_breaks_is_exported_on_one_line_and_a_wild_time_shown_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
    let pretty = "{\n  \"a\": 1,\r\n  \"b\": [2, 3]\n}";
    buffer
        .append(1_000, QUEUE, None, pretty.as_bytes())
        .unwrap();
    // A damaged receive time: past the year 9999.
    buffer.append(u64::MAX / 2, QUEUE, None, b"{}").unwrap();
    let mut out = Vec::new();
    export(
        &buffer,
        &Routing::GenesysPattern,
        &ExportFilter::default(),
        &mut out,
        &never(),
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["event"], serde_json::json!({"a": 1, "b": [2, 3]}));
    assert!(lines[1]["received_at"]
        .as_str()
        .unwrap()
        .starts_with("(not a time"));
}

#[test]
fn a_walk_does_not_call_an_event_removed_under_it_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_with_config(dir.path(), &test_config()).unwrap();
    // Chunked events, removed one step ahead of the walk, as the producer
    // removes acknowledged events while a tool reads.
    let large = vec![b'x'; 20_000];
    let seqs: Vec<u64> = (0..50)
        .map(|i| buffer.append(i, QUEUE, None, &large).unwrap())
        .collect();
    buffer.flush_blocking().unwrap();
    let mut damaged = Vec::new();
    let mut next = 1;
    buffer
        .walk_events(|step| {
            if let crate::buffer::Walked::Damaged { seq, reason } = step {
                damaged.push((seq, reason));
            }
            if next < seqs.len() {
                buffer.remove(&[seqs[next]]).unwrap();
                next += 2;
            }
            true
        })
        .unwrap();
    assert!(damaged.is_empty(), "{damaged:?}");
}
