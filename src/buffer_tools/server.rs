//! The running bridge's side of the buffer tools: `control.sock` in the
//! buffer directory, answering [`Request`]s on the bridge's own buffer
//! handle.
//!
//! The accept loop runs under the actix runtime; each request is served
//! on the blocking pool (a walk over a large backlog reads and decodes
//! every record), never on an actor's thread. At most
//! [`MAX_CONCURRENT`] requests run at once; more are told `busy`, so a
//! script polling in a loop cannot pile walks onto the bridge.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{
    check, export, gaps, kept_aside, stats, write_json_line, Interrupt, Request, Routing,
    ToolError, SOCKET_NAME,
};
use crate::buffer::Buffer;

/// Requests served at once; more are answered `busy`.
pub const MAX_CONCURRENT: usize = 4;
/// A request is one short JSON line.
const MAX_REQUEST_BYTES: u64 = 4096;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write may wait for a client that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// What `stats`, `check` and `export` say their figures come from.
pub const SOURCE: &str = "running bridge (control socket)";

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot remove the stale control socket {path}: {source}")]
    Stale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The listening control socket; stopped and removed when dropped.
pub struct ControlServer {
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    requests: Requests,
}

/// The requests being served: told to end when the bridge stops, since
/// the process cannot exit while a blocking task runs.
#[derive(Clone, Default)]
struct Requests {
    interrupt: Interrupt,
    /// A second handle on each client's stream, to unblock a write to a
    /// client that stopped reading.
    streams: Arc<std::sync::Mutex<std::collections::HashMap<u64, UnixStream>>>,
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, UnixStream>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end_all(&self) {
        self.interrupt.raise();
        for stream in self.lock().values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl ControlServer {
    /// Listens on `<dir>/control.sock`. Must run inside the actix
    /// runtime. A file left there by a bridge that was killed is
    /// replaced: the caller holds the buffer's lock, so no other bridge
    /// can be serving this buffer.
    pub fn start(dir: &Path, buffer: Buffer, routing: Routing) -> Result<Self, ListenError> {
        let path = dir.join(SOCKET_NAME);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ListenError::Stale { path, source }),
        }
        let listener =
            tokio::net::UnixListener::bind(&path).map_err(|source| ListenError::Bind {
                path: path.clone(),
                source,
            })?;
        // The bridge's user (and root) may ask; nobody else, whatever
        // the umask.
        if let Err(source) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        {
            let _ = std::fs::remove_file(&path);
            return Err(ListenError::Bind { path, source });
        }
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let requests = Requests::default();
        actix_rt::spawn(accept_loop(
            listener,
            stopped,
            buffer,
            routing,
            requests.clone(),
        ));
        Ok(ControlServer {
            path,
            stop: Some(stop),
            requests,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.requests.end_all();
        // A socket file without a listener would send the next tool to a
        // dead end before it tries the files.
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    buffer: Buffer,
    routing: Routing,
    requests: Requests,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    let mut next_id = 0u64;
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(5))
            .expect("constant bounds are valid");
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted.and_then(|(stream, _)| stream.into_std()) {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "control socket: accept failed");
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        backoff.reset();
        let slot = slots.clone().try_acquire_owned().ok();
        let id = next_id;
        next_id += 1;
        match stream.try_clone() {
            Ok(handle) => {
                requests.lock().insert(id, handle);
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot serve a request");
                continue;
            }
        }
        let buffer = buffer.clone();
        let routing = routing.clone();
        let requests = requests.clone();
        actix_rt::task::spawn_blocking(move || {
            let served = serve(
                stream,
                slot.is_none(),
                &buffer,
                &routing,
                &requests.interrupt,
            );
            if let Err(e) = served {
                tracing::debug!(error = %e, "control socket: request ended early");
            }
            requests.lock().remove(&id);
            // Held until the answer is written.
            drop(slot);
        });
    }
}

/// Reads one request and answers it. Blocking.
fn serve(
    stream: UnixStream,
    busy: bool,
    buffer: &Buffer,
    routing: &Routing,
    interrupt: &Interrupt,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut out = BufWriter::new(&stream);
    // Read even when busy: closing before the client has written would
    // show it a broken pipe instead of the reason.
    let mut line = String::new();
    BufReader::new(&stream)
        .take(MAX_REQUEST_BYTES)
        .read_line(&mut line)?;
    if busy {
        return answer_error(
            &mut out,
            &format!("busy: {MAX_CONCURRENT} buffer tool requests are running; try again"),
        );
    }
    let request = match serde_json::from_str::<Request>(line.trim_end()) {
        Ok(request) => request,
        Err(e) => return answer_error(&mut out, &format!("not a request: {e}")),
    };
    tracing::debug!(?request, "control socket: request");
    let answered = match &request {
        Request::Stats => {
            stats(buffer, routing, SOURCE, interrupt).and_then(|s| write_line(&mut out, &s))
        }
        Request::Check => check(buffer, SOURCE, interrupt).and_then(|r| write_line(&mut out, &r)),
        Request::Export(filter) => export(buffer, routing, filter, &mut out, interrupt)
            .and_then(|end| write_end(&mut out, &end)),
        Request::Gaps(filter) => {
            gaps(buffer, filter, &mut out, interrupt).and_then(|end| write_end(&mut out, &end))
        }
        Request::KeptAside(filter) => kept_aside(buffer, filter, &mut out, interrupt)
            .and_then(|end| write_end(&mut out, &end)),
    };
    match answered {
        Ok(()) => out.flush(),
        // The client went away; nothing to tell it.
        Err(ToolError::Output(e)) => Err(e),
        Err(e) => answer_error(&mut out, &e.to_string()),
    }
}

fn write_line(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), ToolError> {
    Ok(write_json_line(out, value)?)
}

/// The last line of a listing.
fn write_end(out: &mut dyn Write, end: &impl serde::Serialize) -> Result<(), ToolError> {
    write_line(out, &serde_json::json!({ "end": end }))
}

fn answer_error(out: &mut dyn Write, error: &str) -> std::io::Result<()> {
    write_json_line(out, &serde_json::json!({ "error": error }))?;
    out.flush()
}
