//! Starting and stopping the bridge: the actor tree under actix
//! supervisors, the health endpoint, and the drain on shutdown.
//!
//! ```text
//! System (one arbiter)
//! ├── health server (actix-web, 1 worker thread)
//! ├── Supervisor ─ TokenActor
//! ├── Supervisor ─ ProducerActor ── librdkafka threads
//! ├── Supervisor ─ Planner (lists the org at start-up, every
//! │                topics.refresh_interval_secs and on SIGHUP)
//! ├── Supervisor ─ BackfillActor (gaps' conversations, when [backfill] is on)
//! └── Supervisor ─ ConnectionActor × ⌈topics / 1000⌉ (started by the planner)
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::backfill::BackfillActor;
use crate::buffer::{Buffer, BufferError};
use crate::cluster::coordinator::{Cluster, Parts};
use crate::cluster::leadership::Leadership;
use crate::config::{ConfigError, Settings};
use crate::connection::{self, ConnectionActor, ConnectionSettings};
use crate::genesys::api::{self, GenesysApi};
use crate::genesys::rate_limit::RateLimiter;
use crate::planner::{self, Planner};
use crate::producer::{self, Drain, ProducerActor};
use crate::subscriptions::TooManyChannels;
use crate::telemetry::Telemetry;
use crate::token::TokenActor;

/// Longest wait at shutdown for the buffer's writer thread to write what
/// the sockets delivered.
const FINAL_WRITE_WAIT: Duration = Duration::from_secs(10);

/// How long in-flight Kafka deliveries get to finish on shutdown.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Buffer(#[from] BufferError),
    #[error("cannot listen on {addr} for the health endpoint: {source}")]
    HealthListen {
        addr: String,
        source: std::io::Error,
    },
}

/// A running bridge.
pub struct Bridge {
    pub telemetry: Arc<Telemetry>,
    pub health_addr: std::net::SocketAddr,
    pub buffer: Buffer,
    producer: Addr<ProducerActor>,
    connections: Arc<std::sync::Mutex<Vec<Addr<ConnectionActor>>>>,
    health: actix_web::dev::ServerHandle,
    /// Plans topics and starts the connections; stopped first on shutdown.
    planner: Addr<Planner>,
    /// Resolves when the start-up plan needs more channels than allowed.
    plan_refused: Option<tokio::sync::oneshot::Receiver<TooManyChannels>>,
    /// Serves `buffer stats/check/export` while the buffer is locked;
    /// `None` when it could not listen (the tools then need a stop).
    control: Option<crate::buffer_tools::server::ControlServer>,
    /// Kept so that the actor lives as long as the bridge.
    _backfill: Option<Addr<BackfillActor>>,
    /// Cluster mode's coordinator (`[cluster]`).
    cluster: Option<Cluster>,
}

/// Checks what can be checked without the network: the Kafka client
/// accepts every pass-through property; the proxy environment
/// (`HTTPS_PROXY`, …) and the proxy password's variable are usable.
pub fn preflight(settings: &Settings) -> Result<(), ConfigError> {
    settings.config.genesys.http_client_settings(&process_env)?;
    producer::build_producer(&settings.kafka_properties)
        .map(drop)
        .map_err(|e| ConfigError::invalid("kafka.properties", e.to_string()))
}

/// A variable of this process's environment (unset or not UTF-8: `None`).
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Bridge {
    /// Starts everything. Must run inside an actix System.
    pub async fn start(settings: Settings) -> Result<Bridge, StartError> {
        preflight(&settings)?;
        let config = &settings.config;
        let telemetry = Arc::new(Telemetry::default());
        let path = config.buffer.path.clone();
        let buffer_config = config.buffer.clone();
        let buffer = actix_rt::task::spawn_blocking(move || {
            std::fs::create_dir_all(&path).map_err(|e| {
                BufferError::Flush(format!("cannot create {}: {e}", path.display()))
            })?;
            Buffer::open_with_config(&path, &buffer_config)
        })
        .await
        .expect("the buffer open task does not panic")?;
        if !buffer.is_empty() {
            tracing::info!(
                events = buffer.len(),
                "buffer holds events from an earlier run; forwarding them first"
            );
        }
        telemetry.attach_buffer(std::sync::Arc::new(buffer.clone()));
        telemetry.register_collector(std::sync::Arc::new(buffer.metrics()));
        {
            // Earlier runs' gaps for /status; from now on `last_alive`
            // dates a crash (written by the buffer's watcher thread).
            let buffer = buffer.clone();
            let recent = actix_rt::task::spawn_blocking(move || {
                buffer.keep_alive_marks()?;
                buffer.recent_gaps(crate::telemetry::RECENT_GAPS)
            })
            .await
            .expect("the gap listing task does not panic")?;
            telemetry.gaps.remember(recent);
        }

        let (server, health_addr) = crate::health::start(&config.health.listen, telemetry.clone())
            .map_err(|source| StartError::HealthListen {
                addr: config.health.listen.clone(),
                source,
            })?;
        let health = server.handle();
        actix_rt::spawn(server);
        tracing::info!(addr = %health_addr, "health endpoint listening");

        let backoff = config
            .genesys
            .retry_backoff()
            .map_err(|e| ConfigError::invalid("genesys.retry_min_delay_ms", e.to_string()))?;
        let router = config.kafka.router()?;
        let control = match crate::buffer_tools::server::ControlServer::start(
            &config.buffer.path,
            buffer.clone(),
            crate::buffer_tools::Routing::Routes(router.clone()),
        ) {
            Ok(control) => {
                tracing::debug!(path = %control.path().display(), "buffer tools' control socket listening");
                Some(control)
            }
            // A buffer path too long for a socket address, a read-only
            // directory: the bridge runs; only the tools wait for a stop.
            Err(e) => {
                tracing::warn!(error = %e, "buffer tools unavailable while the bridge runs");
                None
            }
        };
        // A member of a cluster follows the coordination topic before it
        // forwards anything: it is a standby until it wins a claim.
        let cluster = match &config.cluster {
            Some(cluster) => Some(
                Cluster::start(Parts {
                    config: cluster.clone(),
                    properties: settings.kafka_properties.clone(),
                    replication_factor: config.kafka.create_topics_replication_factor,
                    buffer: buffer.clone(),
                    router: router.clone(),
                    partitioner: config.kafka.partitioner,
                    telemetry: telemetry.clone(),
                })
                .map_err(|e| {
                    BufferError::Flush(format!("cannot start the cluster coordinator: {e}"))
                })?,
            ),
            None => None,
        };
        let leadership = cluster
            .as_ref()
            .map_or_else(Leadership::single, |c| c.leadership.clone());
        let producer = {
            let kafka = config.kafka.clone();
            let properties = settings.kafka_properties.clone();
            let buffer = buffer.clone();
            let telemetry = telemetry.clone();
            let backoff =
                crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
                    .expect("constant bounds are valid");
            let leadership = leadership.clone();
            Supervisor::start(move |_| {
                ProducerActor::new(
                    &kafka,
                    properties,
                    router,
                    buffer,
                    telemetry,
                    backoff,
                    leadership.clone(),
                )
            })
        };

        let genesys = &config.genesys;
        let request_timeout = Duration::from_secs(genesys.request_timeout_secs);
        let http = api::http_client(genesys.http_client_settings(&process_env)?);
        let api_limiter = Arc::new(RateLimiter::per_minute(genesys.api_requests_per_minute));
        telemetry.register_collector(api_limiter.clone());
        let genesys_api = GenesysApi::new(http, &settings.api_base_url, &settings.login_base_url)
            .with_rate_limiter(api_limiter)
            .with_request_timings(telemetry.token.request_seconds());
        let tokens = {
            let api = genesys_api.clone();
            let client_id = genesys.client_id.clone();
            let secret = settings.client_secret.clone();
            let margin = Duration::from_secs(genesys.token_refresh_margin_secs);
            let telemetry = telemetry.clone();
            let backoff = backoff.clone();
            Supervisor::start(move |_| {
                TokenActor::new(api, client_id, secret, margin, backoff, telemetry)
            })
        };

        let connection_settings = ConnectionSettings {
            ping_interval: Duration::from_secs(genesys.ping_interval_secs),
            heartbeat_timeout: Duration::from_secs(genesys.heartbeat_timeout_secs),
            rollover_margin: Duration::from_secs(genesys.channel_rollover_margin_secs),
            handshake_timeout: request_timeout,
            max_frame_bytes: genesys.max_frame_bytes,
            ignore_errors: config.topics.ignore_errors,
            slots: connection::slots::ChannelSlots::new(crate::subscriptions::MAX_CHANNELS),
            snapshots: config.snapshots.clone(),
            leadership: leadership.clone(),
        };
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start_connection: planner::StartConnection = {
            let api = genesys_api.clone();
            let tokens = tokens.clone();
            let buffer = buffer.clone();
            let telemetry = telemetry.clone();
            let backoff = backoff.clone();
            Box::new(move |index, topics, first_plan| {
                // The start-up plan's connections missed what was sent
                // while no bridge ran (from the previous run's last_alive).
                let downtime = first_plan.then(|| buffer.claim_downtime(index)).flatten();
                let api = api.clone();
                let tokens = tokens.clone();
                let buffer = buffer.clone();
                let telemetry = telemetry.clone();
                let backoff = backoff.clone();
                let settings = connection_settings.clone();
                Supervisor::start(move |_| {
                    ConnectionActor::new(
                        index, topics, settings, api, tokens, buffer, telemetry, backoff,
                    )
                    .with_downtime(downtime)
                })
            })
        };
        let backfill = config.backfill.enabled.then(|| {
            let (buffer, api, tokens) = (buffer.clone(), genesys_api.clone(), tokens.clone());
            let (telemetry, backoff) = (telemetry.clone(), backoff.clone());
            let settings = config.backfill.clone();
            let leadership = leadership.clone();
            Supervisor::start(move |_| {
                BackfillActor::new(
                    buffer,
                    api,
                    tokens,
                    telemetry,
                    settings,
                    backoff,
                    leadership.clone(),
                )
            })
        });
        let (refusal, plan_refused) = tokio::sync::oneshot::channel();
        let planner = {
            let topics = config.topics.clone();
            let telemetry = telemetry.clone();
            let connections = connections.clone();
            Supervisor::start(move |_| {
                Planner::new(
                    topics,
                    genesys_api,
                    tokens,
                    telemetry,
                    backoff,
                    start_connection,
                    connections,
                    refusal,
                )
            })
        };

        Ok(Bridge {
            telemetry,
            health_addr,
            buffer,
            producer,
            connections,
            health,
            planner,
            plan_refused: Some(plan_refused),
            control,
            _backfill: backfill,
            cluster,
        })
    }

    /// Lists the org again now and applies the difference (SIGHUP).
    pub fn refresh_topics(&self) {
        self.planner.do_send(planner::Refresh);
    }

    /// Resolves with the refusal when the start-up topic plan needs more
    /// channels than Genesys allows; never resolves otherwise.
    pub async fn plan_refused(&mut self) -> TooManyChannels {
        if let Some(refused) = self.plan_refused.as_mut() {
            if let Ok(refusal) = refused.await {
                return refusal;
            }
            // The planner is past its start-up plan (or gone).
            self.plan_refused = None;
        }
        std::future::pending().await
    }

    /// Graceful stop: close the sockets (no new events), let Kafka
    /// acknowledge what is in flight for up to `grace`, flush the buffer.
    /// Whatever Kafka did not acknowledge stays in the buffer for next time.
    pub async fn shutdown(self, grace: Duration) {
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: closing sockets and draining"
        );
        // First the planner, so that no connection starts after the list
        // of connections to close was taken.
        let _ = self.planner.send(planner::Shutdown).await;
        // The downtime starts now, when the sockets close: the next run's
        // "bridge not running" gap starts at this mark.
        let buffer = self.buffer.clone();
        let _ = actix_rt::task::spawn_blocking(move || buffer.stop_alive_marks()).await;
        let connections: Vec<_> = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        // Each answers once its sockets are closed and read out (bounded
        // by connection::CLOSE_WAIT): what the service sent before it saw
        // our close is buffered before the final flush.
        futures_util::future::join_all(
            connections
                .iter()
                .map(|connection| connection.send(connection::Close)),
        )
        .await;
        let drained = self.producer.send(Drain { grace }).await.unwrap_or(false);
        if let Some(cluster) = self.cluster {
            // The leader stopped forwarding: record where, and end its
            // epoch, so a standby forwards exactly what follows now.
            // Bounded: the coordinator answers within the forwarder's end
            // and a read-back of the release (or says it did not lead).
            let released = actix_rt::time::timeout(Duration::from_secs(30), cluster.release())
                .await
                .unwrap_or(false);
            let _ = actix_rt::task::spawn_blocking(move || cluster.stop()).await;
            tracing::info!(released, "cluster: left");
        }
        let buffer = self.buffer.clone();
        // What the sockets delivered is written first (the writer thread
        // flushes each batch), then the final flush.
        let flushed = actix_rt::task::spawn_blocking(move || {
            if !buffer.wait_written(FINAL_WRITE_WAIT) {
                tracing::error!(
                    waiting = buffer.waiting_writes(),
                    "the buffer's writer did not finish within {FINAL_WRITE_WAIT:?}; what still waits is lost to the stream"
                );
            }
            buffer.flush_blocking()
        })
        .await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::error!("final buffer flush failed; the last events may be received again from a restart, not lost");
        }
        // From here the tools read the files (once the process is gone);
        // a request in progress finishes on its own thread.
        drop(self.control);
        tracing::info!(drained, left_in_buffer = self.buffer.len(), "stopped");
        self.health.stop(true).await;
    }
}

/// Runs the bridge until SIGINT or SIGTERM; SIGHUP lists the org's queues
/// and users again. A start-up topic plan over the channel limit stops the
/// bridge with a configuration error.
pub async fn run(settings: Settings) -> Result<(), StartError> {
    // Installed before anything starts: SIGHUP's default action ends the process.
    let mut hangups = actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::hangup())
        .expect("installing a SIGHUP handler works on unix");
    let mut bridge = Bridge::start(settings).await?;
    // READY=1 once ready, watchdog pings while healthy (under systemd only).
    let systemd = crate::systemd::Systemd::start(bridge.telemetry.clone());
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = hangups.recv() => {
                tracing::info!("SIGHUP: listing the org's queues and users again");
                bridge.refresh_topics();
            }
            refused = bridge.plan_refused() => {
                systemd.stopping();
                bridge.shutdown(DRAIN_GRACE).await;
                return Err(StartError::Config(refused.into()));
            }
        }
    }
    systemd.stopping();
    bridge.shutdown(DRAIN_GRACE).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler works on unix");
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
