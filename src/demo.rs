//! The one-command tour: a Tansu broker (a real process, durable store),
//! the Genesys Cloud simulator and the bridge, on the embedded
//! `config/demo.toml`, with a consumer printing what lands in Kafka.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::app::Bridge;
use crate::config;
use crate::secret::Secret;

const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
const DEMO_SECRET: &str = "demo-secret";
const DEMO_CLIENT: &str = "demo-client";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Directory for the broker's store and the bridge's buffer.
    #[arg(long, default_value = ".demo")]
    pub dir: PathBuf,
    /// Events per second the simulator generates.
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// The Tansu broker binary (scripts/install-broker installs it).
    #[arg(long, env = "TANSU_BIN", default_value = "tansu")]
    pub tansu: PathBuf,
    /// Port of the broker.
    #[arg(long, default_value_t = 19092)]
    pub kafka_port: u16,
    /// Port of the bridge's health endpoint.
    #[arg(long, default_value_t = 9464)]
    pub health_port: u16,
}

/// The broker process, killed when dropped.
struct BrokerProcess(Child);

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the tour. Returns the broker process, to be stopped by the caller
/// only after the actor system (and with it the bridge's Kafka clients) is
/// gone, so the clients do not log the broker's disappearance.
pub async fn run(args: DemoArgs) -> anyhow::Result<impl Drop> {
    crate::telemetry::init::init_plain("info,librdkafka=warn,rdkafka=warn,actix_server=warn");
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let bootstrap = format!("127.0.0.1:{}", args.kafka_port);
    let broker = start_broker(&args.tansu, &dir, &bootstrap)?;
    println!(
        "demo: Kafka broker (Tansu) on {bootstrap}, store {}",
        dir.join("tansu.db").display()
    );

    #[derive(Parser)]
    struct Sim {
        #[command(flatten)]
        args: genesys_simulator::SimulatorArgs,
    }
    let rate = args.rate.to_string();
    let sim_args = Sim::parse_from([
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--rate",
        &rate,
        "--client-id",
        DEMO_CLIENT,
        "--client-secret",
        DEMO_SECRET,
        "--queues",
        "8",
        "--users",
        "5",
    ])
    .args;
    let sim = genesys_simulator::start(sim_args).await?;
    println!(
        "demo: Genesys Cloud simulator on {} ({rate} events/s)",
        sim.base_url
    );

    let env: Vec<(String, String)> = [
        ("GKB_GENESYS__API_BASE_URL", sim.base_url.clone()),
        ("GKB_GENESYS__LOGIN_BASE_URL", sim.login_url.clone()),
        ("GKB_KAFKA__BOOTSTRAP_SERVERS", bootstrap.clone()),
        ("GKB_BUFFER__PATH", dir.join("buffer").display().to_string()),
        (
            "GKB_HEALTH__LISTEN",
            format!("127.0.0.1:{}", args.health_port),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let parsed = config::parse(Path::new("config/demo.toml"), DEMO_CONFIG, &env)?;
    let settings = config::resolve(parsed, &|name| {
        (name == "GENESYS_CLIENT_SECRET").then(|| Secret::new(DEMO_SECRET).expose().to_owned())
    })?;
    let topics = settings.config.kafka.router()?.topics();
    let bridge = Bridge::start(settings).await?;
    println!(
        "demo: bridge running; health on http://{0}/readyz and http://{0}/metrics",
        bridge.health_addr
    );
    println!("demo: events landing in Kafka (Ctrl-C to stop):");

    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let consumer = {
        let (stop, target) = (stop.clone(), target.clone());
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || print_kafka(&bootstrap, &topics, &stop, &target))
    };
    match args.duration {
        Some(secs) => {
            tokio::select! {
                _ = actix_rt::time::sleep(Duration::from_secs(secs)) => {}
                _ = crate::app::shutdown_signal() => {}
            }
        }
        None => crate::app::shutdown_signal().await,
    }
    let telemetry = bridge.telemetry.clone();
    bridge.shutdown(crate::app::DRAIN_GRACE).await;
    sim.server.stop(true).await;
    // Let the consumer print what Kafka acknowledged, for a few seconds at most.
    let forwarded = telemetry.kafka.forwarded();
    target.store(forwarded, Ordering::SeqCst);
    let mut joined = actix_rt::task::spawn_blocking(move || consumer.join());
    let finished = match actix_rt::time::timeout(Duration::from_secs(5), &mut joined).await {
        Ok(finished) => finished,
        Err(_) => {
            stop.store(true, Ordering::SeqCst);
            joined.await
        }
    };
    let printed = finished?.map_err(|_| anyhow::anyhow!("the demo consumer panicked"))??;
    let received = telemetry.connections.events_received();
    println!(
        "demo: the bridge received {received} events, Kafka acknowledged {forwarded}, the demo consumer printed {printed}. \
         Broker store and buffer stay in {}",
        dir.display()
    );
    Ok(broker)
}

fn start_broker(tansu: &Path, dir: &Path, bootstrap: &str) -> anyhow::Result<BrokerProcess> {
    let url = format!("tcp://{bootstrap}");
    let log = std::fs::File::create(dir.join("tansu.log"))?;
    let child = Command::new(tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| {
            format!(
                "cannot start the Kafka broker {} (run scripts/install-broker, or pass --tansu)",
                tansu.display()
            )
        })?;
    let mut broker = BrokerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(bootstrap).is_err() {
        if let Some(status) = broker.0.try_wait()? {
            bail!(
                "the broker exited with {status}; see {}",
                dir.join("tansu.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!("the broker did not accept connections on {bootstrap} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(broker)
}

/// Prints every record of `topics` until `stop`, or until `target` records
/// were printed; returns how many.
fn print_kafka(
    bootstrap: &str,
    topics: &[String],
    stop: &AtomicBool,
    target: &AtomicU64,
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "genesys-kafka-bridge-demo")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assigned = false;
    let mut count = 0u64;
    while !stop.load(Ordering::SeqCst) && count < target.load(Ordering::SeqCst) {
        if !assigned {
            // The bridge creates its topics at start-up: wait until they exist.
            let mut list = TopicPartitionList::new();
            for topic in topics {
                if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
                    for p in md.topics().iter().flat_map(|t| t.partitions()) {
                        list.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                    }
                }
            }
            if list.count() == 0 {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            consumer.assign(&list)?;
            assigned = true;
        }
        let Some(message) = consumer.poll(Duration::from_millis(300)) else {
            continue;
        };
        let message = message?;
        count += 1;
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|x| x.key == name))
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let value = message
            .payload()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let preview: String = value.chars().take(90).collect();
        println!(
            "kafka {}[{}]@{} key={} genesys-topic={}\n      {}…",
            message.topic(),
            message.partition(),
            message.offset(),
            message
                .key()
                .map(String::from_utf8_lossy)
                .unwrap_or_default(),
            header(crate::producer::HEADER_TOPIC),
            preview
        );
    }
    Ok(count)
}
