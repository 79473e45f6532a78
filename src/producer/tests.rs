//! The producer actor against a real broker (Tansu) and librdkafka's mock
//! broker: behaviour that cannot be provoked from outside the process.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use super::*;
use crate::buffer::Buffer;

struct Broker {
    child: Child,
    bootstrap: String,
    url: String,
    bin: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var("TANSU_BIN").unwrap_or_else(|_| {
            format!(
                "{}/.cargo/bin/tansu",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // Tansu reads the sqlite path as relative: run it in its directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Tansu broker {bin} (scripts/install-broker installs it; TANSU_BIN names it): {e}"));
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            assert!(Instant::now() < deadline, "Tansu did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            child,
            bootstrap,
            url,
            bin,
            _dir: dir,
        }
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &self.url])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "creating topic {name} failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `check` while the actix system runs.
async fn until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_fatal_error_restarts_the_producer_once_and_keeps_per_key_order() {
    const EVENTS: u64 = 6_000;
    const KEYS: u64 = 12;
    let broker = Broker::start();
    broker.create_topic("fatal-test", 3);
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    fill(&buffer, EVENTS, KEYS);
    let telemetry = Arc::new(Telemetry::default());
    actix_rt::System::new().block_on(async {
        let actor = start_producer(&broker.bootstrap, "fatal-test", "", &buffer, &telemetry);
        until(
            "the first acknowledgements",
            Duration::from_secs(60),
            || telemetry.kafka.forwarded() >= 500,
        )
        .await;
        assert!(
            actor.send(InjectFatal).await.unwrap(),
            "no producer to fail"
        );
        until(
            "the buffer to drain after the restart",
            Duration::from_secs(120),
            || buffer.is_empty(),
        )
        .await;
        drain(&actor).await;
    });
    let restarts = telemetry.kafka.producer_restarts();
    assert_eq!(restarts, 1, "one fatal error, one restart");

    // Read everything back: every event at least once, per key in order.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "fatal-test-reader")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["fatal-test"]).unwrap();
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut distinct = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while (distinct.len() as u64) < EVENTS && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        let n = value["n"].as_u64().unwrap();
        distinct.insert(n);
        seen.entry(key).or_default().push(n);
    }
    let lost = EVENTS - distinct.len() as u64;
    let mut reordered = 0;
    let mut duplicates = 0;
    for numbers in seen.values() {
        let mut highest = None;
        let mut once = std::collections::HashSet::new();
        for n in numbers {
            if !once.insert(*n) {
                duplicates += 1;
            } else if highest.is_some_and(|h| *n < h) {
                reordered += 1;
            }
            highest = highest.max(Some(*n));
        }
    }
    println!("fatal producer error: {EVENTS} events; restarts {restarts}; lost {lost}; duplicates {duplicates}; reordered {reordered}");
    assert_eq!(lost, 0);
    assert_eq!(reordered, 0, "per-key order must hold across the restart");
}

// ---- Faults Tansu cannot produce -------------------------------------
//
// Tansu has no size limit and no leader elections, and a batch it refuses
// kills its store (see tests/kafka_faults.rs). The tests below inject
// those faults with librdkafka's own mock broker instead. They prove how
// the forwarder *reacts* to a broker's answer; that forwarding reaches a
// real broker is proved by the process tests in tests/.

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// Appends `events` records spread over `keys` queue ids; returns the
/// keys.
fn fill(buffer: &Buffer, events: u64, keys: u64) -> Vec<String> {
    let key = |k: u64| format!("00000000-0000-4000-8000-{k:012}");
    for i in 0..events {
        let topic = format!("v2.analytics.queues.{}.observations", key(i % keys));
        buffer
            .append(i, &topic, None, format!("{{\"n\":{i}}}").as_bytes())
            .unwrap();
    }
    (0..keys).map(key).collect()
}

fn start_producer(
    bootstrap: &str,
    topic: &str,
    extra: &str,
    buffer: &Buffer,
    telemetry: &Arc<Telemetry>,
) -> Addr<ProducerActor> {
    let config: KafkaConfig = toml::from_str(&format!(
        "bootstrap_servers = \"{bootstrap}\"\ndefault_topic = \"{topic}\"\n{extra}"
    ))
    .unwrap();
    let properties = config.client_properties(&|_| None).unwrap();
    let router = config.router().unwrap();
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
    let (buffer, telemetry) = (buffer.clone(), telemetry.clone());
    Supervisor::start(move |_| {
        ProducerActor::new(
            &config,
            properties,
            router,
            buffer,
            telemetry,
            backoff,
            crate::cluster::leadership::Leadership::single(),
        )
    })
}

/// Stops the forwarding thread the way a shutdown does.
async fn drain(actor: &Addr<ProducerActor>) {
    let _ = actor
        .send(Drain {
            grace: Duration::from_secs(1),
        })
        .await;
}

#[test]
fn a_batch_the_broker_refuses_as_too_large_is_sent_again_record_by_record() {
    const EVENTS: u64 = 3_000;
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("refused-batch", 3, 1).unwrap();
    // The broker refuses the first produce request as a whole, as a broker
    // whose message.max.bytes is below the batch (not below its records)
    // does.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    fill(&buffer, EVENTS, 12);
    let telemetry = Arc::new(Telemetry::default());
    actix_rt::System::new().block_on(async {
        let actor = start_producer(
            &mock.bootstrap_servers(),
            "refused-batch",
            "",
            &buffer,
            &telemetry,
        );
        until("every event acknowledged", Duration::from_secs(60), || {
            buffer.is_empty()
        })
        .await;
        drain(&actor).await;
    });
    let refused = telemetry.kafka.delivery_errors();
    let forwarded = telemetry.kafka.forwarded();
    println!(
        "refused batch: {refused} deliveries refused with the batch, {} dead-lettered, {forwarded} of {EVENTS} acknowledged",
        buffer.dead_letter_len()
    );
    assert!(refused > 0, "the injected refusal never happened");
    assert_eq!(
        buffer.dead_letter_len(),
        0,
        "small records were dead-lettered"
    );
    assert_eq!(forwarded, EVENTS);
}

#[test]
fn a_partition_without_a_leader_holds_back_only_its_own_events() {
    const EVENTS: u64 = 6_000;
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("leaderless", 3, 1).unwrap();
    mock.partition_leader("leaderless", 0, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let keys = fill(&buffer, EVENTS, 12);
    let on_partition_0 = |k: &String| Partitioner::Murmur2Random.partition(k.as_bytes(), 3) == 0;
    let stuck = keys.iter().filter(|k| on_partition_0(k)).count() as u64 * (EVENTS / 12);
    assert!(
        stuck > 0 && stuck < EVENTS,
        "the keys must cover partition 0 and others"
    );
    let telemetry = Arc::new(Telemetry::default());
    actix_rt::System::new().block_on(async {
        // A window far smaller than partition 0's share, so its holds and
        // catch-ups are exercised, not only librdkafka's queue.
        let actor = start_producer(
            &mock.bootstrap_servers(),
            "leaderless",
            "max_in_flight = 1000\nmax_in_flight_per_partition = 100\n",
            &buffer,
            &telemetry,
        );
        until(
            "every event of the partitions with a leader",
            Duration::from_secs(60),
            || buffer.len() as u64 == stuck,
        )
        .await;
        // The forwarder publishes its per-topic view once a second.
        until(
            "the topic's backlog on /metrics",
            Duration::from_secs(5),
            || {
                telemetry
                    .kafka
                    .topics()
                    .first()
                    .is_some_and(|t| t.backlog == stuck)
            },
        )
        .await;
        mock.partition_leader("leaderless", 0, Some(1)).unwrap();
        until(
            "partition 0's events after its leader is back",
            Duration::from_secs(60),
            || buffer.is_empty(),
        )
        .await;
        drain(&actor).await;
    });
    println!("leaderless partition: {stuck} of {EVENTS} events waited for partition 0; the other {} flowed; then all acknowledged", EVENTS - stuck);
    assert_eq!(telemetry.kafka.forwarded(), EVENTS);
    assert_eq!(buffer.dead_letter_len(), 0);
}

#[test]
fn a_record_the_broker_refuses_alone_is_dead_lettered_as_it_was_buffered() {
    const RECEIVED_AT: u64 = 1_700_000_000_000;
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("refused-record", 1, 1).unwrap();
    // The first produce request refuses the record in a batch (perhaps
    // only the batch was too large); the second refuses it sent alone.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 2],
    );
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::open_for_tests(dir.path()).unwrap();
    let topic = "v2.users.00000000-0000-4000-8000-000000000007.presence";
    let payload = "{\"eventBody\":{\"presence\":\"disponível\"}}";
    let seq = buffer
        .append(RECEIVED_AT, topic, Some("corr-7"), payload.as_bytes())
        .unwrap();
    let telemetry = Arc::new(Telemetry::default());
    actix_rt::System::new().block_on(async {
        let actor = start_producer(
            &mock.bootstrap_servers(),
            "refused-record",
            "",
            &buffer,
            &telemetry,
        );
        until("the record dead-lettered", Duration::from_secs(60), || {
            buffer.dead_letter_len() == 1 && buffer.is_empty()
        })
        .await;
        drain(&actor).await;
    });
    // Dead-lettered from its delivery report (no read of the buffer):
    // the same event as buffered.
    let letters = buffer.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (
            letter.seq,
            letter.received_at_ms,
            letter.topic_name.as_str(),
            letter.correlation_id.as_deref(),
            letter.payload.as_str(),
            letter.kafka_topic.as_str(),
        ),
        (
            seq,
            RECEIVED_AT,
            topic,
            Some("corr-7"),
            payload,
            "refused-record"
        )
    );
    assert!(
        letter.reason.contains("MessageSizeTooLarge"),
        "{}",
        letter.reason
    );
    assert_eq!(
        telemetry.kafka.delivery_errors(),
        2,
        "refused in a batch, then alone"
    );
    assert_eq!(telemetry.kafka.forwarded(), 0);
}
