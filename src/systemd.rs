//! Telling systemd how the bridge is doing (`Type=notify`, sd_notify(3)).
//!
//! The protocol is one datagram per message to the unix socket named in
//! `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`),
//! each line an assignment. Written here on std's `UnixDatagram` rather than
//! a crate: it is thirty lines, and the abstract namespace is in std.
//!
//! What the bridge sends (see packaging/genesys-kafka-bridge.service):
//! - `READY=1` once, the first time `/readyz` would answer 200 (token held,
//!   every channel's socket open, Kafka answering…). Until then, while the
//!   bridge is healthy, `EXTEND_TIMEOUT_USEC=` keeps systemd's start timeout
//!   from killing a bridge that is only waiting for Kafka or Genesys (it is
//!   already receiving and buffering); a stuck one stops extending and is
//!   killed when `TimeoutStartSec` runs out.
//! - `WATCHDOG=1` every half `$WATCHDOG_USEC`, only while `/healthz` would
//!   answer 200 (no fatal error, every actor reporting in): a stuck actor
//!   stops the pings and systemd restarts the process (`WatchdogSec=`).
//! - `STATUS=` when the one-line summary changes (`ready`, `starting: …`,
//!   `degraded: …`, `unhealthy: …`), shown by `systemctl status`.
//! - `STOPPING=1` when the shutdown starts.
//!
//! Without `$NOTIFY_SOCKET` nothing is sent and no task runs.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use crate::telemetry::Telemetry;

/// How often health and readiness are looked at (more often when the
/// watchdog asks for it).
pub const TICK: Duration = Duration::from_secs(1);
/// Each `EXTEND_TIMEOUT_USEC=` gives this long until the next message.
pub const START_EXTENSION: Duration = Duration::from_secs(10);
/// Longest `STATUS=` text sent (systemctl shows one line).
const STATUS_MAX: usize = 400;

/// A connected notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From this process's environment: `None` when `$NOTIFY_SOCKET` is unset
    /// (not under systemd) or unusable (logged once).
    pub fn from_env() -> Option<Notifier> {
        let var = |name| std::env::var(name).ok();
        match Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            var("WATCHDOG_USEC"),
            var("WATCHDOG_PID"),
            std::process::id(),
        ) {
            Ok(notifier) => notifier,
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET is set but unusable; systemd will not hear from the bridge");
                None
            }
        }
    }

    /// From the variables' values: `$WATCHDOG_USEC` counts only when
    /// `$WATCHDOG_PID` is unset or names `pid`.
    pub fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
        pid: u32,
    ) -> io::Result<Option<Notifier>> {
        let Some(name) = notify_socket.filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let addr = socket_addr(&name)?;
        let for_us = watchdog_pid.map_or(true, |p| p.trim().parse::<u32>().ok() == Some(pid));
        let watchdog = watchdog_usec
            .filter(|_| for_us)
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0)
            .map(Duration::from_micros);
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            watchdog,
        }))
    }

    /// systemd's watchdog interval (`WatchdogSec=`), if it asked for pings.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (newline-separated assignments).
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(drop)
    }
}

fn socket_addr(name: &std::ffi::OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])
        }
        Some(b'/') => SocketAddr::from_pathname(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NOTIFY_SOCKET={} is neither a path nor an abstract name",
                name.to_string_lossy()
            ),
        )),
    }
}

/// What `/healthz` answers (one check, [`Telemetry::health`]).
pub fn health(telemetry: &Telemetry) -> Result<(), String> {
    telemetry
        .health()
        .map_err(|unhealthy| unhealthy.to_string())
}

type Check = Box<dyn Fn() -> Result<(), String> + Send>;

/// The notification state machine: call [`Watch::tick`] every [`Watch::period`].
pub struct Watch {
    notifier: Notifier,
    health: Check,
    readiness: Check,
    ready_sent: bool,
    status: String,
}

impl Watch {
    /// Watches the bridge's own telemetry.
    pub fn new(notifier: Notifier, telemetry: Arc<Telemetry>) -> Watch {
        let t = telemetry.clone();
        Watch::with_checks(
            notifier,
            Box::new(move || health(&t)),
            Box::new(move || telemetry.readiness().map_err(|reasons| reasons.join("; "))),
        )
    }

    /// Watches any pair of checks (tests).
    pub fn with_checks(notifier: Notifier, health: Check, readiness: Check) -> Watch {
        Watch {
            notifier,
            health,
            readiness,
            ready_sent: false,
            status: String::new(),
        }
    }

    /// How often to tick: every second, or at half the watchdog interval
    /// when that is shorter.
    pub fn period(&self) -> Duration {
        self.notifier
            .watchdog()
            .map_or(TICK, |w| (w / 2).min(TICK))
            .max(Duration::from_millis(10))
    }

    /// Looks at health and readiness once and sends what they call for.
    /// Returns the message sent (empty when none was).
    pub fn tick(&mut self) -> io::Result<String> {
        let health = (self.health)();
        let readiness = (self.readiness)();
        let mut lines = Vec::new();
        if health.is_ok() && readiness.is_ok() && !self.ready_sent {
            self.ready_sent = true;
            lines.push("READY=1".to_owned());
        }
        if health.is_ok() {
            if self.notifier.watchdog().is_some() {
                lines.push("WATCHDOG=1".to_owned());
            }
            if !self.ready_sent {
                lines.push(format!(
                    "EXTEND_TIMEOUT_USEC={}",
                    START_EXTENSION.as_micros()
                ));
            }
        }
        let status = match (&health, &readiness) {
            (Err(why), _) => format!("unhealthy: {why}"),
            (Ok(()), Ok(())) => "ready".to_owned(),
            (Ok(()), Err(why)) if self.ready_sent => format!("degraded: {why}"),
            (Ok(()), Err(why)) => format!("starting: waiting for {why}"),
        };
        let status = one_line(&status);
        if status != self.status {
            lines.push(format!("STATUS={status}"));
            self.status = status;
        }
        let message = lines.join("\n");
        if !message.is_empty() {
            self.notifier.send(&message)?;
        }
        Ok(message)
    }

    /// The shutdown has started.
    pub fn stopping(&self) -> io::Result<()> {
        self.notifier
            .send("STOPPING=1\nSTATUS=stopping: closing sockets, draining to Kafka")
    }
}

/// A newline would start a new assignment: fold the text onto one line,
/// at most [`STATUS_MAX`] bytes.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > STATUS_MAX {
        let mut cut = STATUS_MAX - 3;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

/// The running notifier (or nothing, outside systemd).
pub struct Systemd(Option<(Arc<std::sync::Mutex<Watch>>, actix_rt::task::JoinHandle<()>)>);

impl Systemd {
    /// Starts ticking on the current actix System when `$NOTIFY_SOCKET` is set.
    pub fn start(telemetry: Arc<Telemetry>) -> Systemd {
        let Some(notifier) = Notifier::from_env() else {
            return Systemd(None);
        };
        tracing::info!(
            watchdog_secs = notifier.watchdog().map(|w| w.as_secs_f64()),
            "notifying systemd (READY=1 once ready, watchdog pings while healthy)"
        );
        let watch = Arc::new(std::sync::Mutex::new(Watch::new(notifier, telemetry)));
        let ticking = watch.clone();
        let task = actix_rt::spawn(async move {
            let period = lock(&ticking).period();
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failed = false;
            loop {
                interval.tick().await;
                let sent = lock(&ticking).tick();
                match sent {
                    Err(e) if !failed => {
                        failed = true;
                        tracing::warn!(error = %e, "cannot notify systemd");
                    }
                    Ok(_) => failed = false,
                    Err(_) => {}
                }
            }
        });
        Systemd(Some((watch, task)))
    }

    /// Stops the pings and tells systemd the shutdown has started.
    pub fn stopping(&self) {
        if let Some((watch, task)) = &self.0 {
            task.abort();
            if let Err(e) = lock(watch).stopping() {
                tracing::warn!(error = %e, "cannot notify systemd");
            }
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A socket standing in for systemd's, in a temp dir.
    struct Manager {
        _dir: tempfile::TempDir,
        socket: UnixDatagram,
        path: std::path::PathBuf,
    }

    impl Manager {
        fn new() -> Manager {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket.set_nonblocking(true).unwrap();
            Manager {
                _dir: dir,
                socket,
                path,
            }
        }

        fn notifier(&self, watchdog_usec: Option<&str>) -> Notifier {
            Notifier::from_vars(
                Some(self.path.clone().into()),
                watchdog_usec.map(str::to_owned),
                None,
                std::process::id(),
            )
            .unwrap()
            .expect("NOTIFY_SOCKET set")
        }

        /// Every message waiting, as sent.
        fn received(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = self.socket.recv(&mut buf) {
                out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
            }
            out
        }

        fn lines(&self) -> Vec<String> {
            self.received()
                .iter()
                .flat_map(|m| m.lines().map(str::to_owned).collect::<Vec<_>>())
                .collect()
        }
    }

    fn flag(value: bool) -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(value))
    }

    fn check(flag: &Arc<AtomicBool>, why: &'static str) -> Check {
        let flag = flag.clone();
        Box::new(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(why.to_owned())
            }
        })
    }

    #[test]
    fn no_notify_socket_means_no_notifier() {
        assert!(Notifier::from_vars(None, Some("60000000".into()), None, 1)
            .unwrap()
            .is_none());
        assert!(Notifier::from_vars(Some("".into()), None, None, 1)
            .unwrap()
            .is_none());
        assert!(Notifier::from_vars(Some("relative/path".into()), None, None, 1).is_err());
    }

    #[test]
    fn watchdog_interval_only_for_this_process() {
        let m = Manager::new();
        let path = Some(OsString::from(&m.path));
        let n = |usec: Option<&str>, pid: Option<&str>| {
            Notifier::from_vars(
                path.clone(),
                usec.map(str::to_owned),
                pid.map(str::to_owned),
                42,
            )
            .unwrap()
            .unwrap()
            .watchdog()
        };
        assert_eq!(n(Some("60000000"), None), Some(Duration::from_secs(60)));
        assert_eq!(
            n(Some("60000000"), Some("42")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(n(Some("60000000"), Some("43")), None);
        assert_eq!(n(None, None), None);
        assert_eq!(n(Some("0"), None), None);
        let watch = Watch::with_checks(
            m.notifier(Some("1000000")),
            Box::new(|| Ok(())),
            Box::new(|| Ok(())),
        );
        assert_eq!(watch.period(), Duration::from_millis(500));
    }

    #[test]
    fn ready_once_then_watchdog_while_healthy_and_stopping() {
        let m = Manager::new();
        let healthy = flag(true);
        let ready = flag(false);
        let mut watch = Watch::with_checks(
            m.notifier(Some("60000000")),
            check(&healthy, "stuck actors: connection-0"),
            check(&ready, "kafka: not connected yet"),
        );

        // Starting: healthy, not ready. Pings, extends the start timeout, no READY.
        watch.tick().unwrap();
        let lines = m.lines();
        assert!(!lines.contains(&"READY=1".to_owned()), "{lines:?}");
        assert!(lines.contains(&"WATCHDOG=1".to_owned()), "{lines:?}");
        assert!(lines.contains(&"EXTEND_TIMEOUT_USEC=10000000".to_owned()));
        assert!(lines.contains(&"STATUS=starting: waiting for kafka: not connected yet".to_owned()));

        // Ready: READY=1 exactly once.
        ready.store(true, Ordering::SeqCst);
        watch.tick().unwrap();
        watch.tick().unwrap();
        let lines = m.lines();
        assert_eq!(
            lines.iter().filter(|l| *l == "READY=1").count(),
            1,
            "{lines:?}"
        );
        assert_eq!(lines.iter().filter(|l| *l == "WATCHDOG=1").count(), 2);
        assert!(lines.contains(&"STATUS=ready".to_owned()));
        assert!(!lines.iter().any(|l| l.starts_with("EXTEND_TIMEOUT_USEC")));

        // A stuck actor: no pings at all while it lasts, and the status says why.
        healthy.store(false, Ordering::SeqCst);
        for _ in 0..3 {
            watch.tick().unwrap();
        }
        let lines = m.lines();
        assert!(!lines.contains(&"WATCHDOG=1".to_owned()), "{lines:?}");
        assert_eq!(lines, ["STATUS=unhealthy: stuck actors: connection-0"]);

        // Healthy again: pings resume, READY is not repeated.
        healthy.store(true, Ordering::SeqCst);
        ready.store(false, Ordering::SeqCst);
        watch.tick().unwrap();
        let lines = m.lines();
        assert_eq!(
            lines,
            ["WATCHDOG=1", "STATUS=degraded: kafka: not connected yet"]
        );

        watch.stopping().unwrap();
        let received = m.received();
        assert_eq!(
            received,
            ["STOPPING=1\nSTATUS=stopping: closing sockets, draining to Kafka"]
        );
    }

    #[test]
    fn never_healthy_never_ready_nor_extended() {
        let m = Manager::new();
        let mut watch = Watch::with_checks(
            m.notifier(Some("60000000")),
            Box::new(|| Err("kafka producer stopped: x".to_owned())),
            Box::new(|| Ok(())),
        );
        watch.tick().unwrap();
        watch.tick().unwrap();
        assert_eq!(m.lines(), ["STATUS=unhealthy: kafka producer stopped: x"]);
    }

    #[test]
    fn real_telemetry_drives_ready_and_watchdog() {
        let m = Manager::new();
        let telemetry = Arc::new(Telemetry::default());
        let mut watch = Watch::new(m.notifier(Some("60000000")), telemetry.clone());
        watch.tick().unwrap();
        let lines = m.lines();
        assert!(!lines.contains(&"READY=1".to_owned()), "{lines:?}");
        assert!(lines.contains(&"WATCHDOG=1".to_owned()), "{lines:?}");

        // What /readyz needs: a token, every connection open, Kafka answering.
        telemetry
            .token
            .granted(Duration::from_secs(3600), Duration::from_secs(3000));
        telemetry.connections.open(0, "channel-abc", 10, 0);
        telemetry.kafka.reachable(Ok(()));
        assert_eq!(telemetry.readiness(), Ok(()));
        watch.tick().unwrap();
        let lines = m.lines();
        assert!(lines.contains(&"READY=1".to_owned()), "{lines:?}");

        // /healthz red (Kafka refuses the bridge's settings): no more pings.
        telemetry.kafka.producer_misconfigured("acks refused");
        watch.tick().unwrap();
        let lines = m.lines();
        assert!(!lines.contains(&"WATCHDOG=1".to_owned()), "{lines:?}");
        assert!(lines[0].starts_with("STATUS=unhealthy: kafka producer stopped"));
    }

    #[test]
    fn abstract_socket_names_work() {
        let name = format!("gkb-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::from_vars(Some(format!("@{name}").into()), None, None, 1)
            .unwrap()
            .unwrap();
        notifier.send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn status_stays_one_line() {
        let text = one_line(&format!("a\nb{}", "é".repeat(400)));
        assert!(!text.contains('\n') && text.len() <= STATUS_MAX, "{text}");
        assert!(text.starts_with("a b"));
    }
}
