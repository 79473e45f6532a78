//! What every area's tests share: a simulator started in-process on port
//! 0 ([`start`]), a client for its REST and control APIs ([`Sim`]), and
//! WebSocket helpers that await a frame with a deadline.

use std::cell::RefCell;
use std::pin::Pin;
use std::time::Duration;

use actix_web::http::StatusCode;
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use genesys_simulator::{self as simulator, RunningSimulator, SimulatorArgs};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(10);

/// No topics, for [`Sim::open_socket`] on a channel that subscribes none.
pub const NO_TOPICS: [&str; 0] = [];

/// A client WebSocket, split so that its type can be named without
/// depending on actix-codec.
pub struct Socket {
    pub rx: Pin<Box<dyn Stream<Item = Result<Frame, WsProtocolError>>>>,
    pub tx: Pin<Box<dyn Sink<Message, Error = WsProtocolError>>>,
}

pub struct Sim {
    pub sim: RunningSimulator,
    pub http: awc::Client,
    /// Queue ids as the REST API lists them (see `load_directory`).
    queues: RefCell<Vec<String>>,
}

/// Starts a simulator on 127.0.0.1:0 with `tweak` applied to the defaults.
pub async fn start(tweak: impl FnOnce(&mut SimulatorArgs)) -> Sim {
    let mut args = SimulatorArgs {
        listen: "127.0.0.1:0".into(),
        ..SimulatorArgs::default()
    };
    tweak(&mut args);
    let sim = simulator::start(args).await.expect("simulator starts");
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    Sim {
        sim,
        http,
        queues: RefCell::default(),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
}

pub async fn reply<S>(mut resp: awc::ClientResponse<S>) -> Reply
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let bytes = resp
        .body()
        .limit(512 * 1024 * 1024)
        .await
        .expect("reply body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "reply is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body,
    }
}

impl Sim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url)
    }

    pub fn login_url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.login_url)
    }

    pub async fn login(&self, id: &str, secret: &str) -> Reply {
        let resp = self
            .http
            .post(self.login_url("/oauth/token"))
            .basic_auth(id, secret)
            .send_form(&[("grant_type", "client_credentials")])
            .await
            .expect("token request");
        reply(resp).await
    }

    pub async fn token(&self) -> String {
        let r = self.login("demo-client", "demo-secret").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> Reply {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        reply(resp).await
    }

    pub async fn head(&self, token: &str, path: &str) -> StatusCode {
        let resp = self
            .http
            .head(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("HEAD");
        resp.status()
    }

    pub async fn send_json(
        &self,
        method: &str,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> Reply {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send_json(body).await.expect("request");
        reply(resp).await
    }

    pub async fn create_channel(&self, token: &str) -> Value {
        let resp = self
            .http
            .post(self.url("/api/v2/notifications/channels"))
            .bearer_auth(token)
            .send()
            .await
            .expect("create channel");
        let r = reply(resp).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    pub async fn subscribe(
        &self,
        token: &str,
        channel: &str,
        topics: &[impl AsRef<str>],
        query: &str,
    ) -> Reply {
        let body: Vec<Value> = topics.iter().map(|t| json!({ "id": t.as_ref() })).collect();
        let path = format!("/api/v2/notifications/channels/{channel}/subscriptions{query}");
        self.send_json("PUT", Some(token), &path, &json!(body))
            .await
    }

    /// Token → channel → subscription → socket: creates a channel with
    /// `token`, subscribes it to `topics` (PUT, which must answer 200; no
    /// call when `topics` is empty) and connects its WebSocket. Returns the
    /// channel as created (`id`, `connectUri`, `expires`) and the socket.
    pub async fn open_socket(&self, token: &str, topics: &[impl AsRef<str>]) -> (Value, Socket) {
        let channel = self.create_channel(token).await;
        if !topics.is_empty() {
            let id = channel["id"].as_str().expect("channel id");
            let r = self.subscribe(token, id, topics, "").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        let ws = connect(channel["connectUri"].as_str().expect("connectUri")).await;
        (channel, ws)
    }

    pub async fn control(&self, path: &str, body: Value) -> Reply {
        self.send_json("POST", None, path, &body).await
    }

    pub async fn state(&self) -> Value {
        reply(
            self.http
                .get(self.url("/sim/state"))
                .send()
                .await
                .expect("state"),
        )
        .await
        .body
    }

    /// The observations topic of the n-th listed queue.
    pub fn queue_topic(&self, n: usize) -> String {
        format!("v2.analytics.queues.{}.observations", self.queue_id(n))
    }

    pub fn queue_id(&self, n: usize) -> String {
        let queues = self.queues.borrow();
        assert!(n < queues.len(), "call load_directory first");
        queues[n].clone()
    }

    pub async fn load_directory(&self, token: &str) {
        let mut ids = Vec::new();
        for page in 1.. {
            let r = self
                .get(
                    token,
                    &format!("/api/v2/routing/queues?pageSize=100&pageNumber={page}"),
                )
                .await;
            let entities = r.body["entities"].as_array().expect("entities").clone();
            ids.extend(
                entities
                    .iter()
                    .map(|q| q["id"].as_str().unwrap_or_default().to_owned()),
            );
            if page >= r.body["pageCount"].as_u64().unwrap_or(0) as usize {
                break;
            }
        }
        *self.queues.borrow_mut() = ids;
    }
}

pub async fn connect(uri: &str) -> Socket {
    let (resp, socket) = awc::Client::new()
        .ws(uri)
        .max_frame_size(64 * 1024 * 1024)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("WebSocket connect to {uri}: {e}"));
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let (tx, rx) = socket.split();
    Socket {
        rx: Box::pin(rx),
        tx: Box::pin(tx),
    }
}

/// The next frame, or `None` when the connection ended without one.
pub async fn next_frame(ws: &mut Socket, within: Duration) -> Option<Frame> {
    match actix_web::rt::time::timeout(within, ws.rx.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("no frame within {within:?}"),
    }
}

/// The next text frame as JSON, skipping heartbeats when asked.
pub async fn next_json(ws: &mut Socket, skip_heartbeats: bool) -> Value {
    loop {
        match next_frame(ws, WAIT).await {
            Some(Frame::Text(bytes)) => {
                let v: Value = serde_json::from_slice(&bytes).expect("text frames are JSON");
                if skip_heartbeats && v["eventBody"]["message"] == "WebSocket Heartbeat" {
                    continue;
                }
                return v;
            }
            Some(Frame::Ping(_) | Frame::Pong(_)) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub async fn send_text(ws: &mut Socket, text: &str) {
    ws.tx
        .send(Message::Text(text.to_owned().into()))
        .await
        .expect("send text");
}

/// Waits until `f(state)` holds, polling /sim/state.
pub async fn wait_state(sim: &Sim, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state = sim.state().await;
        if f(&state) {
            return state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {state}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn conversation_topic(kind: &str) -> String {
    format!(
        "v2.detail.events.conversation.{}.{kind}",
        uuid::Uuid::new_v4()
    )
}

/// Reads the next `n` notification frames (heartbeats skipped).
pub async fn read_events(ws: &mut Socket, n: u64) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_json(ws, true).await);
    }
    out
}
