//! Integration tests of the Genesys Cloud simulator: each test starts it
//! in-process on port 0 and drives it over HTTP and WebSocket with awc.
//!
//! Nothing here sleeps to "let things happen": tests await the frame or
//! state they expect, with a deadline.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame, Message};
use std::pin::Pin;

use awc::error::WsProtocolError;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use genesys_simulator::{self as simulator, RunningSimulator, SimulatorArgs};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// A client WebSocket, split so that its type can be named without
/// depending on actix-codec.
struct Socket {
    rx: Pin<Box<dyn Stream<Item = Result<Frame, WsProtocolError>>>>,
    tx: Pin<Box<dyn Sink<Message, Error = WsProtocolError>>>,
}

struct Sim {
    sim: RunningSimulator,
    http: awc::Client,
    /// Queue ids as the REST API lists them (see `load_directory`).
    queues: RefCell<Vec<String>>,
}

/// Starts a simulator on 127.0.0.1:0 with `tweak` applied to the defaults.
async fn start(tweak: impl FnOnce(&mut SimulatorArgs)) -> Sim {
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

struct Reply {
    status: StatusCode,
    headers: actix_web::http::header::HeaderMap,
    body: Value,
}

async fn reply<S>(mut resp: awc::ClientResponse<S>) -> Reply
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
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url)
    }

    fn login_url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.login_url)
    }

    async fn login(&self, id: &str, secret: &str) -> Reply {
        let resp = self
            .http
            .post(self.login_url("/oauth/token"))
            .basic_auth(id, secret)
            .send_form(&[("grant_type", "client_credentials")])
            .await
            .expect("token request");
        reply(resp).await
    }

    async fn token(&self) -> String {
        let r = self.login("demo-client", "demo-secret").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn get(&self, token: &str, path: &str) -> Reply {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        reply(resp).await
    }

    async fn head(&self, token: &str, path: &str) -> StatusCode {
        let resp = self
            .http
            .head(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("HEAD");
        resp.status()
    }

    async fn send_json(
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

    async fn create_channel(&self, token: &str) -> Value {
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

    async fn subscribe(
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

    async fn control(&self, path: &str, body: Value) -> Reply {
        self.send_json("POST", None, path, &body).await
    }

    async fn state(&self) -> Value {
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
    fn queue_topic(&self, n: usize) -> String {
        format!("v2.analytics.queues.{}.observations", self.queue_id(n))
    }

    fn queue_id(&self, n: usize) -> String {
        let queues = self.queues.borrow();
        assert!(n < queues.len(), "call load_directory first");
        queues[n].clone()
    }

    async fn load_directory(&self, token: &str) {
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

async fn connect(uri: &str) -> Socket {
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
async fn next_frame(ws: &mut Socket, within: Duration) -> Option<Frame> {
    match actix_web::rt::time::timeout(within, ws.rx.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("no frame within {within:?}"),
    }
}

/// The next text frame as JSON, skipping heartbeats when asked.
async fn next_json(ws: &mut Socket, skip_heartbeats: bool) -> Value {
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

async fn send_text(ws: &mut Socket, text: &str) {
    ws.tx
        .send(Message::Text(text.to_owned().into()))
        .await
        .expect("send text");
}

/// Waits until `f(state)` holds, polling /sim/state.
async fn wait_state(sim: &Sim, what: &str, f: impl Fn(&Value) -> bool) -> Value {
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

fn conversation_topic(kind: &str) -> String {
    format!(
        "v2.detail.events.conversation.{}.{kind}",
        uuid::Uuid::new_v4()
    )
}

#[actix_rt::test]
async fn token_is_issued_for_the_right_secret_only() {
    let sim = start(|_| {}).await;
    let ok = sim.login("demo-client", "demo-secret").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["token_type"], "bearer");
    assert_eq!(ok.body["expires_in"], 86399);
    assert!(ok.body["access_token"]
        .as_str()
        .is_some_and(|t| t.len() > 40));

    let bad = sim.login("demo-client", "wrong").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["error"], "invalid_client");
    assert!(bad.body["description"].is_string() && bad.body["error_description"].is_string());
    assert_eq!(
        sim.login("someone-else", "demo-secret").await.status,
        StatusCode::UNAUTHORIZED
    );

    let resp = sim
        .http
        .post(sim.login_url("/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("grant_type", "password")])
        .await
        .unwrap();
    let grant = reply(resp).await;
    assert_eq!(grant.status, StatusCode::BAD_REQUEST);
    assert_eq!(grant.body["error"], "unsupported_grant_type");

    // The 400 variant of wrong credentials, switched at run time.
    sim.control("/sim/faults", json!({"bad_credentials_status": 400}))
        .await;
    assert_eq!(
        sim.login("demo-client", "wrong").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(sim.state().await["tokens_issued"], 1);
}

#[actix_rt::test]
async fn bad_credentials_status_flag_gives_400() {
    let sim = start(|a| a.bad_credentials_status = 400).await;
    let bad = sim.login("demo-client", "nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"], "invalid_client");
}

#[actix_rt::test]
async fn api_calls_need_a_valid_bearer_token() {
    let sim = start(|a| a.token_ttl = 1).await;
    let resp = sim
        .http
        .get(sim.url("/api/v2/notifications/channels"))
        .send()
        .await
        .unwrap();
    let missing = reply(resp).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body["status"], 401);
    assert_eq!(missing.body["code"], "authentication.required");
    assert!(missing.body["contextId"].is_string());
    assert_eq!(missing.body["details"], json!([]));
    assert_eq!(missing.body["errors"], json!([]));

    let unknown = sim
        .get("not-a-token", "/api/v2/notifications/channels")
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body["code"], "bad.credentials");

    let token = sim.token().await;
    assert_eq!(
        sim.get(&token, "/api/v2/notifications/channels")
            .await
            .status,
        StatusCode::OK
    );
    // --token-ttl 1: the token stops working about a second later.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        if r.status == StatusCode::UNAUTHORIZED {
            // Expired, not unknown: the service's own code for it.
            assert_eq!(r.body["code"], "credentials.expired", "{}", r.body);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "token never expired");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn unknown_routes_get_genesys_errors() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let r = sim.get(&token, "/api/v2/analytics/realtime/events").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["code"], "not.found");
    let r = sim
        .get(&token, "/api/v2/notifications/channels/x/y/z")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let one_port = start(|a| a.login_on_api_port = true).await;
    let token = one_port.token().await;
    let r = one_port.get(&token, "/oauth/token").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["status"], 405);
}

#[actix_rt::test]
async fn login_is_a_host_of_its_own_unless_asked_otherwise() {
    let sim = start(|_| {}).await;
    assert_ne!(sim.sim.login_url, sim.sim.base_url);
    let on_api_host = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .unwrap();
    let on_api_host = reply(on_api_host).await;
    assert_eq!(
        on_api_host.status,
        StatusCode::NOT_FOUND,
        "{}",
        on_api_host.body
    );
    // The login host serves login only.
    let token = sim.token().await;
    let r = sim
        .http
        .get(sim.login_url("/api/v2/notifications/channels"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let one_port = start(|a| a.login_on_api_port = true).await;
    assert_eq!(one_port.sim.login_url, one_port.sim.base_url);
    one_port.token().await;
}

#[actix_rt::test]
async fn channels_are_created_checked_and_listed() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    assert!(id.starts_with("streaming-0-"), "{id}");
    assert_eq!(
        channel["connectUri"],
        format!("{}/channels/{id}", sim.sim.ws_base_url())
    );
    assert!(channel["connectUri"]
        .as_str()
        .unwrap()
        .starts_with("ws://127.0.0.1:"));
    let expires = channel["expires"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 24, "{expires}");
    humantime::parse_rfc3339(expires).expect("expires is RFC 3339");

    assert_eq!(
        sim.head(&token, &format!("/api/v2/notifications/channels/{id}"))
            .await,
        StatusCode::OK
    );
    assert_eq!(
        sim.head(
            &token,
            "/api/v2/notifications/channels/streaming-0-doesnotexist"
        )
        .await,
        StatusCode::NOT_FOUND
    );

    let other_token = sim.token().await;
    sim.create_channel(&other_token).await;
    let mine = sim
        .get(
            &token,
            "/api/v2/notifications/channels?includechannels=token",
        )
        .await;
    assert_eq!(mine.body["entities"].as_array().unwrap().len(), 1);
    assert_eq!(mine.body["entities"][0]["id"], id);
    let default = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(default.body, mine.body);
    let all = sim
        .get(
            &token,
            "/api/v2/notifications/channels?includechannels=oauthclient",
        )
        .await;
    assert_eq!(all.body["entities"].as_array().unwrap().len(), 2);
}

#[actix_rt::test]
async fn subscriptions_are_replaced_added_listed_and_deleted() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let path = format!("/api/v2/notifications/channels/{id}/subscriptions");

    let put = sim
        .subscribe(&token, id, &[sim.queue_topic(0), sim.queue_topic(1)], "")
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["entities"].as_array().unwrap().len(), 2);
    assert_eq!(put.body["entities"][0]["state"], "Permitted");

    let extra = conversation_topic("customer.start");
    let post = sim
        .send_json("POST", Some(&token), &path, &json!([{ "id": extra }]))
        .await;
    assert_eq!(post.status, StatusCode::OK);
    let ids: Vec<&str> = post.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            sim.queue_topic(0).as_str(),
            sim.queue_topic(1).as_str(),
            extra.as_str()
        ]
    );

    let get = sim.get(&token, &path).await;
    assert_eq!(get.body["entities"].as_array().unwrap().len(), 3);

    let resp = sim
        .http
        .delete(sim.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.get(&token, &path).await.body["entities"], json!([]));

    let unknown = sim
        .subscribe(&token, "streaming-0-nope", &[sim.queue_topic(0)], "")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = sim
        .send_json("PUT", Some(&token), &path, &json!({"id": "not a list"}))
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "bad.request");
}

#[actix_rt::test]
async fn more_than_the_topic_limit_is_a_400() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let topics: Vec<String> = (0..1001).map(|_| conversation_topic("acd.end")).collect();
    let over = sim.subscribe(&token, id, &topics, "").await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{}", over.body);
    assert_eq!(over.body["code"], "bad.request");
    let state = sim.state().await;
    assert_eq!(state["channels"][0]["topics_count"], 0);

    let at_limit = sim.subscribe(&token, id, &topics[..1000], "").await;
    assert_eq!(at_limit.status, StatusCode::OK);
    assert_eq!(at_limit.body["entities"].as_array().unwrap().len(), 1000);
}

#[actix_rt::test]
async fn rejected_topics_fail_the_request_unless_errors_are_ignored() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let good = sim.queue_topic(3);
    let unknown_queue = format!("v2.analytics.queues.{}.observations", uuid::Uuid::new_v4());
    let malformed = "v2.analytics.queues.all.observations".to_string();
    let topics = vec![good.clone(), unknown_queue.clone(), malformed.clone()];

    let strict = sim.subscribe(&token, id, &topics, "").await;
    assert_eq!(strict.status, StatusCode::FORBIDDEN, "{}", strict.body);
    assert_eq!(strict.body["status"], 403);
    assert_eq!(strict.body["details"].as_array().unwrap().len(), 2);
    let path = format!("/api/v2/notifications/channels/{id}/subscriptions");
    assert_eq!(
        sim.get(&token, &path).await.body["entities"],
        json!([]),
        "nothing subscribed"
    );

    let lenient = sim
        .subscribe(&token, id, &topics, "?ignoreErrors=true")
        .await;
    assert_eq!(lenient.status, StatusCode::OK, "{}", lenient.body);
    let states: HashMap<&str, &str> = lenient.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states[good.as_str()], "Permitted");
    assert_eq!(states[unknown_queue.as_str()], "Rejected");
    assert_eq!(states[malformed.as_str()], "Rejected");
    assert!(lenient.body["entities"][1]["rejectionReason"].is_string());
    assert_eq!(
        sim.get(&token, &path).await.body["entities"],
        json!([{"id": good, "state": "Permitted"}])
    );

    // Permission denial, injected.
    sim.control(
        "/sim/faults",
        json!({"deny_topics": ["v2.analytics.queues"]}),
    )
    .await;
    let denied = sim
        .subscribe(&token, id, &[good.as_str()], "?ignoreErrors=true")
        .await;
    assert_eq!(denied.body["entities"][0]["state"], "Rejected");
    assert_eq!(
        denied.body["entities"][0]["missingPermissions"],
        json!(["analytics:queueObservation:view"])
    );
}

#[actix_rt::test]
async fn channel_limit_removes_the_least_recently_used_unconnected_channel() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            sim.create_channel(&token).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let state = sim.state().await;
    let uri = |id: &str| format!("{}/channels/{id}", sim.sim.ws_base_url());
    let mut ws0 = connect(&uri(&ids[0])).await; // oldest, but connected
    wait_state(&sim, "socket registered", |s| s["sockets_opened"] == 1).await;
    sim.get(
        &token,
        &format!("/api/v2/notifications/channels/{}/subscriptions", ids[1]),
    )
    .await; // used
    assert_eq!(state["channels"].as_array().unwrap().len(), 20);

    let newest = sim.create_channel(&token).await;
    let head = |id: String| {
        let sim = &sim;
        let token = token.clone();
        async move {
            sim.head(&token, &format!("/api/v2/notifications/channels/{id}"))
                .await
        }
    };
    assert_eq!(
        head(ids[2].clone()).await,
        StatusCode::NOT_FOUND,
        "LRU unconnected channel removed"
    );
    assert_eq!(
        head(ids[0].clone()).await,
        StatusCode::OK,
        "connected channel kept"
    );
    assert_eq!(
        head(ids[1].clone()).await,
        StatusCode::OK,
        "recently used channel kept"
    );
    assert_eq!(
        head(newest["id"].as_str().unwrap().to_owned()).await,
        StatusCode::OK
    );
    let all = sim
        .get(
            &token,
            "/api/v2/notifications/channels?includechannels=oauthclient",
        )
        .await;
    assert_eq!(all.body["entities"].as_array().unwrap().len(), 20);
    assert_eq!(sim.state().await["channels_evicted"], 1);

    send_text(&mut ws0, r#"{"message":"ping"}"#).await;
    assert_eq!(
        next_json(&mut ws0, true).await["eventBody"]["message"],
        "pong"
    );
}

#[actix_rt::test]
async fn a_removed_channel_has_its_socket_closed() {
    let sim = start(|a| a.max_channels = 2).await;
    let token = sim.token().await;
    let a = sim.create_channel(&token).await;
    let b = sim.create_channel(&token).await;
    let mut ws_a = connect(a["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "first socket", |s| s["sockets_opened"] == 1).await;
    let _ws_b = connect(b["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "second socket", |s| s["sockets_opened"] == 2).await;

    sim.create_channel(&token).await; // both connected: the older use (a) goes
    match next_frame(&mut ws_a, WAIT).await {
        Some(Frame::Close(Some(reason))) => assert_eq!(reason.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let path = format!(
        "/api/v2/notifications/channels/{}",
        a["id"].as_str().unwrap()
    );
    assert_eq!(sim.head(&token, &path).await, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn a_second_socket_closes_the_first() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let uri = channel["connectUri"].as_str().unwrap();
    let mut first = connect(uri).await;
    wait_state(&sim, "first socket", |s| s["sockets_opened"] == 1).await;
    let mut second = connect(uri).await;
    match next_frame(&mut first, WAIT).await {
        Some(Frame::Close(Some(_))) => {}
        other => panic!("expected the first socket to be closed, got {other:?}"),
    }
    send_text(&mut second, r#"{"message":"ping"}"#).await;
    assert_eq!(
        next_json(&mut second, true).await["eventBody"]["message"],
        "pong"
    );
    let state = sim.state().await;
    assert_eq!(state["channels"][0]["sockets_opened"], 2);
    assert_eq!(state["channels"][0]["connected"], true);
}

#[actix_rt::test]
async fn unknown_channels_refuse_the_upgrade() {
    let sim = start(|_| {}).await;
    let uri = format!("{}/channels/streaming-0-nope", sim.sim.ws_base_url());
    match awc::Client::new().ws(uri).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status, StatusCode::NOT_FOUND)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade to an unknown channel succeeded"),
    }
}

#[actix_rt::test]
async fn ping_gets_pong_and_pong_can_be_silenced() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    send_text(&mut ws, r#"{"message":"ping"}"#).await;
    let pong = next_json(&mut ws, true).await;
    assert_eq!(
        pong,
        json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}})
    );

    sim.control("/sim/faults", json!({"pong": false})).await;
    send_text(&mut ws, r#"{"message":"ping"}"#).await;
    send_text(&mut ws, r#"{"message":"hello"}"#).await;
    // The reply to the unknown message arrives; no pong came before it.
    let next = next_json(&mut ws, true).await;
    assert_eq!(next["result"], "400", "{next}");
}

#[actix_rt::test]
async fn heartbeats_arrive_every_interval_and_can_be_silenced() {
    let sim = start(|a| a.heartbeat_interval = 1).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    let beat = next_json(&mut ws, false).await;
    assert_eq!(
        beat,
        json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})
    );

    sim.control("/sim/faults", json!({"heartbeats": false}))
        .await;
    // Drain a heartbeat that may already be on its way, then expect silence.
    let _ = actix_web::rt::time::timeout(Duration::from_millis(1100), ws.rx.next()).await;
    assert!(
        actix_web::rt::time::timeout(Duration::from_millis(2500), ws.rx.next())
            .await
            .is_err(),
        "a heartbeat arrived although heartbeats are silenced"
    );
}

#[actix_rt::test]
async fn generated_events_arrive_in_seq_order_and_match_the_log() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let users = sim.get(&token, "/api/v2/users?pageSize=5").await;
    let user = users.body["entities"][0]["id"].as_str().unwrap().to_owned();
    let topics = vec![
        sim.queue_topic(0),
        sim.queue_topic(1),
        format!("v2.routing.queues.{}.conversations", sim.queue_id(2)),
        format!("v2.users.{user}.presence"),
        format!("v2.users.{user}.routingStatus"),
        format!("v2.analytics.users.{user}.aggregates"),
        format!("v2.detail.events.agent.{user}.state"),
        conversation_topic("customer.start"),
        conversation_topic("acw"),
    ];
    assert_eq!(
        sim.subscribe(&token, id, &topics, "").await.status,
        StatusCode::OK
    );
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["channels"][0]["connected"] == true).await;

    const N: usize = 3000;
    let generated = sim.control("/sim/generate", json!({"count": N})).await;
    assert_eq!(generated.status, StatusCode::OK, "{}", generated.body);
    assert_eq!(generated.body["emitted"], N);
    assert_eq!(generated.body["delivered"], N);
    assert_eq!(generated.body["first_seq"], 1);
    assert_eq!(generated.body["last_seq"], N);

    let mut received = Vec::with_capacity(N);
    while received.len() < N {
        match next_frame(&mut ws, WAIT).await {
            Some(Frame::Text(bytes)) => {
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                if !text.contains("\"channel.metadata\"") {
                    received.push(text);
                }
            }
            Some(Frame::Ping(_) | Frame::Pong(_)) => {}
            other => panic!("unexpected {other:?} after {} frames", received.len()),
        }
    }

    let log = reply(
        sim.http
            .get(sim.url("/sim/emitted?since_seq=0&frames=true"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let events = log.body["events"].as_array().unwrap();
    assert_eq!(events.len(), N);
    let mut correlation_ids = HashSet::new();
    let mut per_topic: HashMap<&str, usize> = HashMap::new();
    for (i, (event, frame)) in events.iter().zip(&received).enumerate() {
        assert_eq!(event["seq"], i + 1);
        assert_eq!(
            event["frame"].as_str().unwrap(),
            frame,
            "frame {i} differs from the log"
        );
        assert_eq!(event["channel_id"], id);
        assert_eq!(event["delivered"], true);
        let parsed: Value = serde_json::from_str(frame).unwrap();
        assert_eq!(parsed["topicName"], event["topic"]);
        assert_eq!(parsed["version"], "2");
        assert!(parsed["eventBody"].is_object());
        assert_eq!(parsed["metadata"]["CorrelationId"], event["correlation_id"]);
        assert!(correlation_ids.insert(event["correlation_id"].as_str().unwrap().to_owned()));
        *per_topic
            .entry(event["topic"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        per_topic.len(),
        topics.len(),
        "every subscribed topic got events"
    );
    assert!(per_topic.values().all(|&n| n >= N / topics.len()));

    let later = reply(
        sim.http
            .get(sim.url("/sim/emitted?since_seq=2990"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(later.body["events"].as_array().unwrap().len(), 10);
    assert!(later.body["events"][0].get("frame").is_none());
}

#[actix_rt::test]
async fn events_without_a_socket_are_recorded_as_undelivered() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let topic = conversation_topic("user.end");
    sim.subscribe(&token, id, &[topic.as_str()], "").await;
    let r = sim.control("/sim/generate", json!({"count": 5})).await;
    assert_eq!(
        (r.body["emitted"].as_u64(), r.body["delivered"].as_u64()),
        (Some(5), Some(0))
    );
    let log = reply(sim.http.get(sim.url("/sim/emitted")).send().await.unwrap()).await;
    assert!(log.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["delivered"] == false));

    // An unsubscribed topic given explicitly: recorded, delivered nowhere.
    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 2, "topics": [conversation_topic("acw")]}),
        )
        .await;
    assert_eq!(r.body["emitted"], 2);
    let log = reply(
        sim.http
            .get(sim.url("/sim/emitted?since_seq=5"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(log.body["events"][0]["channel_id"], Value::Null);

    let none = start(|_| {}).await;
    assert_eq!(
        none.control("/sim/generate", json!({"count": 1}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    let bad = none
        .control("/sim/generate", json!({"count": 1, "topics": ["v2.nope"]}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn two_channels_on_one_topic_get_the_same_event() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let topic = conversation_topic("customer.end");
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let channel = sim.create_channel(&token).await;
        sim.subscribe(
            &token,
            channel["id"].as_str().unwrap(),
            &[topic.as_str()],
            "",
        )
        .await;
        sockets.push(connect(channel["connectUri"].as_str().unwrap()).await);
    }
    wait_state(&sim, "both sockets", |s| s["sockets_opened"] == 2).await;
    let r = sim.control("/sim/generate", json!({"count": 1})).await;
    assert_eq!(r.body["delivered"], 2);
    let a = next_json(&mut sockets[0], true).await;
    let b = next_json(&mut sockets[1], true).await;
    assert_eq!(
        a, b,
        "overlapping channels see the same event (same CorrelationId)"
    );
}

#[actix_rt::test]
async fn drop_sockets_abort_ends_without_a_close_frame() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    sim.subscribe(
        &token,
        channel["id"].as_str().unwrap(),
        &[conversation_topic("acd.start")],
        "",
    )
    .await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;

    let r = sim
        .control("/sim/faults/drop-sockets", json!({"mode": "abort"}))
        .await;
    assert_eq!(r.body["dropped"], 1);
    loop {
        match next_frame(&mut ws, WAIT).await {
            None => break, // EOF: what a client reports as 1006
            Some(Frame::Close(reason)) => panic!("abort sent a close frame: {reason:?}"),
            Some(_) => continue,
        }
    }
    let after = sim.control("/sim/generate", json!({"count": 3})).await;
    assert_eq!(after.body["delivered"], 0, "dropped socket gets nothing");
    assert_eq!(sim.state().await["channels"][0]["connected"], false);
}

#[actix_rt::test]
async fn drop_sockets_close_sends_1001_idle_timeout() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    let r = sim
        .control(
            "/sim/faults/drop-sockets",
            json!({"channel_id": id, "mode": "close"}),
        )
        .await;
    assert_eq!(r.body["dropped"], 1);
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => {
            assert_eq!(reason.code, CloseCode::Away);
            assert_eq!(reason.description.as_deref(), Some("idle timeout"));
        }
        other => panic!("expected close 1001, got {other:?}"),
    }
    // The channel survives its socket: a client reconnects to it.
    let mut again = connect(channel["connectUri"].as_str().unwrap()).await;
    send_text(&mut again, r#"{"message":"ping"}"#).await;
    assert_eq!(
        next_json(&mut again, true).await["eventBody"]["message"],
        "pong"
    );
    let unknown = sim
        .control(
            "/sim/faults/drop-sockets",
            json!({"channel_id": "streaming-0-x"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn socket_subscribe_message_and_socket_closing() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;

    let topic = sim.queue_topic(5);
    send_text(
        &mut ws,
        &json!({"message": "subscribe", "topics": [topic], "correlationId": "c-1"}).to_string(),
    )
    .await;
    assert_eq!(
        next_json(&mut ws, true).await,
        json!({"result": "200", "status": "subscribed"})
    );
    send_text(
        &mut ws,
        &json!({"message": "subscribe", "topics": ["v2.bogus"], "correlationId": "c-2"})
            .to_string(),
    )
    .await;
    let failure = next_json(&mut ws, true).await;
    assert_eq!(
        (failure["result"].as_str(), failure["status"].as_str()),
        (Some("400"), Some("failure"))
    );
    assert!(failure["message"].is_string());
    let subs = sim
        .get(
            &token,
            &format!("/api/v2/notifications/channels/{id}/subscriptions"),
        )
        .await;
    assert_eq!(
        subs.body["entities"],
        json!([{"id": topic, "state": "Permitted"}])
    );

    sim.control(
        "/sim/generate",
        json!({"count": 1, "observation_conversations": 800}),
    )
    .await;
    let big = next_json(&mut ws, true).await;
    assert_eq!(big["topicName"], topic.as_str());
    assert!(
        big.to_string().len() > 100 * 1024,
        "large observation frames go through"
    );

    let r = sim
        .control(
            "/sim/faults/socket-closing",
            json!({"close_after_secs": 0.2, "system_topic_type": "no_longer_subscribed ", "reason": "maintenance"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["code"], "bad.request");
    let r = sim
        .control(
            "/sim/faults/socket-closing",
            json!({"close_after_secs": 0.2, "system_topic_type": "no_longer_subscribed", "reason": "another_channel_subscribed"}),
        )
        .await;
    assert_eq!(r.body["notified"], 1);
    let closing = next_json(&mut ws, true).await;
    assert_eq!(closing["topicName"], "v2.system.socket_closing");
    assert_eq!(closing["eventBody"]["channelId"], id);
    assert_eq!(
        closing["eventBody"]["systemTopicType"],
        "no_longer_subscribed"
    );
    assert_eq!(closing["eventBody"]["reason"], "another_channel_subscribed");
    assert!(closing["metadata"]["CorrelationId"].is_string());
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => assert_eq!(reason.code, CloseCode::Away),
        other => panic!("expected the socket to close after the notice, got {other:?}"),
    }
}

#[actix_rt::test]
async fn injected_statuses_hit_the_next_calls_then_stop() {
    let sim = start(|_| {}).await;
    sim.control(
        "/sim/faults",
        json!({"token_status": 429, "token_status_count": 1, "retry_after": 3}),
    )
    .await;
    let limited = sim.login("demo-client", "demo-secret").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers.get("retry-after").unwrap(), "3");
    assert_eq!(limited.body["code"], "too.many.requests.retry.after");
    let token = sim.token().await;

    let set = sim
        .control(
            "/sim/faults",
            json!({"api_status": 503, "api_status_count": 2}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    for _ in 0..2 {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers.contains_key("retry-after"));
    }
    assert_eq!(
        sim.get(&token, "/api/v2/notifications/channels")
            .await
            .status,
        StatusCode::OK
    );

    sim.control("/sim/faults", json!({"api_status": 502})).await;
    assert_eq!(
        sim.get(&token, "/api/v2/users").await.status,
        StatusCode::BAD_GATEWAY
    );
    let cleared = sim
        .send_json("DELETE", None, "/sim/faults", &json!(null))
        .await;
    assert_eq!(cleared.body["api"], Value::Null);
    assert_eq!(
        sim.get(&token, "/api/v2/users").await.status,
        StatusCode::OK
    );

    let typo = sim.control("/sim/faults", json!({"api_stauts": 500})).await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);

    sim.control("/sim/faults/expire-tokens", json!({})).await;
    assert_eq!(
        sim.get(&token, "/api/v2/users").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_rt::test]
async fn queues_and_users_are_paged() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let first = sim
        .get(&token, "/api/v2/routing/queues?pageSize=25&pageNumber=1")
        .await;
    assert_eq!(first.body["total"], 60);
    assert_eq!(first.body["pageCount"], 3);
    assert_eq!(first.body["pageSize"], 25);
    assert_eq!(first.body["pageNumber"], 1);
    assert!(first.body["nextUri"].is_string());
    let mut ids = HashSet::new();
    for page in 1..=3 {
        let r = sim
            .get(
                &token,
                &format!("/api/v2/routing/queues?pageSize=25&pageNumber={page}"),
            )
            .await;
        for q in r.body["entities"].as_array().unwrap() {
            assert!(q["name"].as_str().is_some_and(|n| !n.is_empty()));
            ids.insert(q["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 60);
    let beyond = sim
        .get(&token, "/api/v2/routing/queues?pageSize=25&pageNumber=9")
        .await;
    assert_eq!(beyond.body["entities"], json!([]));
    let bad = sim.get(&token, "/api/v2/routing/queues?pageSize=abc").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let users = sim.get(&token, "/api/v2/users?pageSize=100").await;
    assert_eq!(users.body["total"], 20);
    let one = users.body["entities"][0]["id"].as_str().unwrap();
    assert_eq!(
        sim.get(&token, &format!("/api/v2/users/{one}")).await.body["id"],
        one
    );
    let sales = sim.get(&token, "/api/v2/routing/queues?name=Sales*").await;
    assert_eq!(sales.body["total"], 4);

    // Stable ids: a second simulator lists the same queues.
    let other = start(|_| {}).await;
    let other_token = other.token().await;
    let again = other
        .get(
            &other_token,
            "/api/v2/routing/queues?pageSize=25&pageNumber=1",
        )
        .await;
    assert_eq!(again.body["entities"], first.body["entities"]);
}

#[actix_rt::test]
async fn expired_channels_close_their_socket() {
    let sim = start(|a| a.channel_ttl = 1).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => {
            assert_eq!(reason.description.as_deref(), Some("channel expired"))
        }
        other => panic!("expected a close on expiry, got {other:?}"),
    }
    let path = format!(
        "/api/v2/notifications/channels/{}",
        channel["id"].as_str().unwrap()
    );
    assert_eq!(sim.head(&token, &path).await, StatusCode::NOT_FOUND);
    assert_eq!(sim.state().await["channels_expired"], 1);
}

#[actix_rt::test]
async fn subscribing_leaves_the_expiry_alone_by_default() {
    let sim = start(|a| a.channel_ttl = 3600).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let before = sim.state().await["channels"][0]["expires_ms"].clone();
    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    let r = sim
        .subscribe(&token, id, &[conversation_topic("acw")], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(sim.state().await["channels"][0]["expires_ms"], before);
}

#[actix_rt::test]
async fn subscribing_extends_the_channel_when_asked() {
    let sim = start(|a| {
        a.channel_ttl = 3600;
        a.subscribe_extends_channel = true;
    })
    .await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let before = sim.state().await["channels"][0]["expires_ms"]
        .as_u64()
        .unwrap();
    // Wait for the clock to move past the creation millisecond.
    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    sim.subscribe(&token, id, &[conversation_topic("acw")], "")
        .await;
    let after = sim.state().await["channels"][0]["expires_ms"]
        .as_u64()
        .unwrap();
    assert!(after > before, "expires moved from {before} to {after}");
}

#[actix_rt::test]
async fn background_generation_runs_and_stops() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    sim.subscribe(
        &token,
        channel["id"].as_str().unwrap(),
        &[conversation_topic("attributes")],
        "",
    )
    .await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;

    let r = sim
        .control("/sim/generate", json!({"count": 40, "rate_per_sec": 400}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["started"], true);
    for _ in 0..40 {
        assert_eq!(next_json(&mut ws, true).await["version"], "2");
    }
    wait_state(&sim, "job finished", |s| {
        s["generator_running"] == false && s["events_generated"] == 40
    })
    .await;

    sim.control("/sim/generate", json!({"rate_per_sec": 50}))
        .await;
    wait_state(&sim, "forever job", |s| s["generator_running"] == true).await;
    let stopped = sim.control("/sim/stop-generator", json!({})).await;
    assert_eq!(stopped.body["stopped"], 1);
    wait_state(&sim, "job stopped", |s| s["generator_running"] == false).await;

    // Jobs that run forever are capped.
    for _ in 0..64 {
        let r = sim
            .control("/sim/generate", json!({"rate_per_sec": 1}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let r = sim
        .control("/sim/generate", json!({"rate_per_sec": 1}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let stopped = sim.control("/sim/stop-generator", json!({})).await;
    assert_eq!(stopped.body["stopped"], 64);
}

#[actix_rt::test]
async fn rate_flag_generates_in_the_background() {
    let sim = start(|a| a.rate = 200.0).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    sim.subscribe(
        &token,
        channel["id"].as_str().unwrap(),
        &[conversation_topic("user.start")],
        "",
    )
    .await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    let event = next_json(&mut ws, true).await;
    assert!(event["eventBody"]["eventTime"].is_u64());
    sim.sim.stop().await;
}

#[actix_rt::test]
async fn concurrent_generators_keep_seq_order_per_channel() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let topics: Vec<String> = (0..7)
        .map(|_| conversation_topic("customer.start"))
        .collect();
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let channel = sim.create_channel(&token).await;
        sim.subscribe(&token, channel["id"].as_str().unwrap(), &topics, "")
            .await;
        sockets.push(connect(channel["connectUri"].as_str().unwrap()).await);
    }
    wait_state(&sim, "sockets", |s| s["sockets_opened"] == 2).await;

    // A background job and two on-demand batches at the same time.
    let job = sim
        .control("/sim/generate", json!({"count": 600, "rate_per_sec": 3000}))
        .await;
    assert_eq!(job.status, StatusCode::ACCEPTED);
    let (a, b) = futures_util::join!(
        sim.control("/sim/generate", json!({"count": 700})),
        sim.control("/sim/generate", json!({"count": 700})),
    );
    assert_eq!(
        (a.body["emitted"].as_u64(), b.body["emitted"].as_u64()),
        (Some(700), Some(700))
    );
    wait_state(&sim, "job done", |s| s["events_generated"] == 2000).await;

    let log = reply(sim.http.get(sim.url("/sim/emitted")).send().await.unwrap()).await;
    let seq_of: HashMap<String, u64> = log.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["correlation_id"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seq_of.len(), 2000);
    for ws in &mut sockets {
        let mut last = 0;
        for _ in 0..2000 {
            let event = next_json(ws, true).await;
            let seq = seq_of[event["metadata"]["CorrelationId"].as_str().unwrap()];
            assert!(seq > last, "seq {seq} arrived after {last}");
            last = seq;
        }
    }
}

#[actix_rt::test]
async fn large_client_frames_are_accepted() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    let topics: Vec<String> = (0..900).map(|_| conversation_topic("acd.end")).collect();
    let message =
        json!({"message": "subscribe", "topics": topics, "correlationId": "big"}).to_string();
    assert!(message.len() > 64 * 1024);
    send_text(&mut ws, &message).await;
    assert_eq!(next_json(&mut ws, true).await["result"], "200");
    assert_eq!(sim.state().await["channels"][0]["topics_count"], 900);
}

#[actix_rt::test]
async fn generate_replies_even_when_the_client_stops_reading() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    sim.subscribe(
        &token,
        channel["id"].as_str().unwrap(),
        &[sim.queue_topic(0)],
        "",
    )
    .await;
    let _unread = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    // ~100 KB frames: far more than the socket buffers hold.
    let topic = format!("v2.analytics.queues.{}.observations", uuid::Uuid::new_v4());
    let body = json!({"count": 400, "topics": [topic], "observation_conversations": 400});
    let r =
        actix_web::rt::time::timeout(Duration::from_secs(30), sim.control("/sim/generate", body))
            .await
            .expect("/sim/generate must not hang on a client that does not read");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["flushed"], true,
        "nobody subscribed to that topic: nothing to flush"
    );

    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 300, "observation_conversations": 400}),
        )
        .await;
    assert_eq!(r.body["flushed"], false, "{}", r.body);
    let delivered = r.body["delivered"].as_u64().unwrap();
    assert!(
        delivered < 300,
        "frames still queued for a client that does not read are not delivered yet: {}",
        r.body
    );
    // The client still does not read: nothing more was written since.
    assert_eq!(
        sim.state().await["events_delivered"].as_u64(),
        Some(delivered)
    );
}

/// Counts the `/sim/emitted` entries whose frame reached a socket.
async fn delivered_in_log(sim: &Sim) -> usize {
    sim.get("", "/sim/emitted").await.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["delivered"] == true)
        .count()
}

#[actix_rt::test]
async fn frames_queued_to_a_socket_that_goes_away_are_not_delivered() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    sim.subscribe(
        &token,
        channel["id"].as_str().unwrap(),
        &[sim.queue_topic(0)],
        "",
    )
    .await;
    let unread = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    // ~100 KB frames: most stay queued behind a client that does not read.
    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 300, "observation_conversations": 400}),
        )
        .await;
    assert_eq!(r.body["flushed"], false, "{}", r.body);
    // The client goes away: what was still queued is never written.
    drop(unread);
    let state = wait_state(&sim, "the socket to close", |s| {
        s["channels"][0]["connected"] == false
            && s["events_delivered"].as_u64().unwrap() + s["events_dropped"].as_u64().unwrap()
                == 300
    })
    .await;
    let delivered = state["events_delivered"].as_u64().unwrap();
    assert!(delivered < 300, "{state}");
    assert_eq!(delivered_in_log(&sim).await as u64, delivered, "{state}");
}

#[actix_rt::test]
async fn a_client_that_does_not_read_has_its_socket_closed_at_the_backlog_bound() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    sim.subscribe(
        &token,
        channel["id"].as_str().unwrap(),
        &[sim.queue_topic(0)],
        "",
    )
    .await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    // ~250 KB frames, ~100 MB in all: beyond the 64 MiB a socket may queue.
    let r = sim
        .control(
            "/sim/generate",
            json!({"count": 400, "observation_conversations": 1000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let state = sim.state().await;
    assert_eq!(
        state["channels"][0]["connected"], false,
        "the socket was given up on: {state}"
    );
    let dropped = state["events_dropped"].as_u64().unwrap();
    assert!(dropped > 0 && dropped < 400, "{state}");

    // Reading again, the client gets what was queued, then a 1008 close.
    let mut frames = 0u64;
    let close = loop {
        match next_frame(&mut ws, Duration::from_secs(30)).await {
            Some(Frame::Text(_)) => frames += 1,
            Some(Frame::Close(reason)) => break reason,
            Some(_) => {}
            None => panic!("connection ended without a close frame after {frames} frames"),
        }
    };
    assert_eq!(close.map(|r| r.code), Some(CloseCode::Policy));
    let state = sim.state().await;
    assert_eq!(state["events_delivered"].as_u64().unwrap(), 400 - dropped);
    assert!(frames >= 400 - dropped, "{frames} frames, {state}");
}

#[actix_rt::test]
async fn oversized_bodies_get_a_genesys_413() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let path = format!(
        "/api/v2/notifications/channels/{}/subscriptions",
        channel["id"].as_str().unwrap()
    );
    let body = vec![b' '; 17 * 1024 * 1024];
    let resp = sim
        .http
        .put(sim.url(&path))
        .bearer_auth(&token)
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .expect("PUT");
    let r = reply(resp).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["status"], 413, "{}", r.body);
    assert!(r.body["code"].is_string() && r.body["contextId"].is_string());
}

#[actix_rt::test]
async fn a_blackholed_socket_gets_nothing_not_even_socket_closing() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    sim.subscribe(
        &token,
        channel["id"].as_str().unwrap(),
        &[sim.queue_topic(0)],
        "",
    )
    .await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket", |s| s["sockets_opened"] == 1).await;
    sim.control("/sim/faults", json!({"blackhole": true})).await;

    let r = sim.control("/sim/generate", json!({"count": 2})).await;
    assert_eq!(r.body["delivered"], 0, "{}", r.body);
    send_text(&mut ws, r#"{"message":"ping"}"#).await;
    let r = sim
        .control(
            "/sim/faults/socket-closing",
            json!({"close_after_secs": 0.2}),
        )
        .await;
    assert_eq!(r.body["notified"], 1);
    // Nothing reaches the socket until it is closed: no event, no pong, no
    // socket_closing notice.
    loop {
        match next_frame(&mut ws, WAIT).await {
            Some(Frame::Close(Some(reason))) => {
                assert_eq!(reason.code, CloseCode::Away);
                break;
            }
            Some(Frame::Ping(_) | Frame::Pong(_)) => {}
            other => panic!("a black-holed socket got {other:?}"),
        }
    }
    let state = sim.state().await;
    assert_eq!(state["events_dropped"], 2, "{state}");
}

#[actix_rt::test]
async fn every_topic_family_generates_with_an_empty_directory() {
    let sim = start(|a| {
        a.queues = 0;
        a.users = 0;
    })
    .await;
    let id = uuid::Uuid::new_v4();
    let mut topics: Vec<String> = [
        "v2.analytics.queues.{id}.observations",
        "v2.analytics.users.{id}.aggregates",
        "v2.routing.queues.{id}.conversations",
        "v2.users.{id}.presence",
        "v2.users.{id}.routingStatus",
        "v2.users.{id}.conversations",
        "v2.detail.events.agent.{id}.state",
    ]
    .iter()
    .map(|t| t.replace("{id}", &id.to_string()))
    .collect();
    for kind in [
        "customer.start",
        "customer.end",
        "user.start",
        "user.end",
        "acd.start",
        "acd.end",
        "acw",
        "attributes",
    ] {
        topics.push(conversation_topic(kind));
    }
    let n = topics.len() * 20;
    let r = sim
        .control("/sim/generate", json!({"count": n, "topics": topics}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["emitted"], n);
}

#[actix_rt::test]
async fn the_rate_limit_answers_both_429_forms_per_token() {
    let sim = start(|a| a.rate_limit_per_minute = 3).await;
    let token = sim.token().await;
    for n in 1..=3 {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        assert_eq!(r.status, StatusCode::OK, "call {n}: {}", r.body);
        assert_eq!(
            r.headers
                .get("inin-ratelimit-allowed")
                .expect("inin-ratelimit-allowed header"),
            "3"
        );
        assert_eq!(
            r.headers
                .get("inin-ratelimit-count")
                .expect("inin-ratelimit-count header"),
            n.to_string().as_str()
        );
        let reset: u64 = r
            .headers
            .get("inin-ratelimit-reset")
            .expect("inin-ratelimit-reset header")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset), "reset {reset}");
    }
    let first = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.body["code"], "too.many.requests");
    assert!(first.headers.get("retry-after").is_none());
    let second = sim.get(&token, "/api/v2/users").await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.body["code"], "too.many.requests.retry.after");
    let wait: u64 = second
        .headers
        .get("retry-after")
        .expect("retry-after header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");

    // Per token: a fresh one has its own minute.
    let other = sim.token().await;
    assert_eq!(
        sim.get(&other, "/api/v2/users").await.status,
        StatusCode::OK
    );
    let state = sim.state().await;
    assert_eq!(state["rate_limited_without_retry_after"], 1, "{state}");
    assert_eq!(state["rate_limited_with_retry_after"], 1, "{state}");

    let unlimited = start(|a| a.rate_limit_per_minute = 0).await;
    let token = unlimited.token().await;
    for _ in 0..10 {
        let r = unlimited.get(&token, "/api/v2/users").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers.get("inin-ratelimit-count").is_none());
    }
}

#[actix_rt::test]
async fn the_default_rate_limit_is_about_300_a_minute() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let mut ok = 0;
    let refused = loop {
        let r = sim.get(&token, "/api/v2/users?pageSize=1").await;
        if r.status != StatusCode::OK {
            break r;
        }
        ok += 1;
        assert!(ok <= 300, "more than 300 calls in a minute were served");
    };
    assert_eq!(ok, 300);
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_rt::test]
async fn socket_closing_is_followed_by_the_service_closing_the_socket() {
    let sim = start(|a| a.socket_closing_grace = 0.3).await;
    let token = sim.token().await;
    let channel = sim.create_channel(&token).await;
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    let sent = std::time::Instant::now();
    let r = sim.control("/sim/faults/socket-closing", json!({})).await;
    assert_eq!(r.body["notified"], 1);
    let notice = next_json(&mut ws, true).await;
    assert_eq!(notice["topicName"], "v2.system.socket_closing");
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(reason))) => assert_eq!(reason.code, CloseCode::Away),
        other => panic!("expected the service to close the socket, got {other:?}"),
    }
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "closed before the grace"
    );
    assert_eq!(SimulatorArgs::default().socket_closing_grace, 60.0);
}

#[actix_rt::test]
async fn a_channel_ends_with_the_token_that_created_it() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap().to_owned();
    let r = sim.subscribe(&token, &id, &[sim.queue_topic(0)], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    let r = sim.control("/sim/faults/expire-tokens", json!({})).await;
    assert_eq!(r.body["revoked"], 1);
    let notice = next_json(&mut ws, true).await;
    assert_eq!(notice["topicName"], "v2.system.token_revoked", "{notice}");
    assert_eq!(notice["eventBody"]["systemTopicType"], "token_revoked");
    assert_eq!(notice["eventBody"]["channelId"], id.as_str());
    match next_frame(&mut ws, WAIT).await {
        Some(Frame::Close(Some(_))) | None => {}
        other => panic!("expected the socket to close, got {other:?}"),
    }
    let fresh = sim.token().await;
    let path = format!("/api/v2/notifications/channels/{id}");
    assert_eq!(sim.head(&fresh, &path).await, StatusCode::NOT_FOUND);
    let uri = channel["connectUri"].as_str().unwrap();
    assert!(
        awc::Client::new().ws(uri).connect().await.is_err(),
        "socket refused"
    );
    assert_eq!(sim.state().await["channels_ended_with_token"], 1);
}

#[actix_rt::test]
async fn an_expiring_token_takes_its_channels_along_unless_turned_off() {
    for follow in [true, false] {
        let sim = start(|a| {
            a.token_ttl = 1;
            a.channels_follow_token = follow;
        })
        .await;
        let token = sim.token().await;
        let channel = sim.create_channel(&token).await;
        let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
        if follow {
            let notice = next_json(&mut ws, true).await;
            assert_eq!(notice["eventBody"]["systemTopicType"], "token_revoked");
            send_text(
                &mut ws,
                &json!({"message": "subscribe", "topics": [conversation_topic("acw")]}).to_string(),
            )
            .await;
            // Closed, or (had the frame raced the close) a 404.
            loop {
                match next_frame(&mut ws, WAIT).await {
                    Some(Frame::Close(_)) | None => break,
                    Some(Frame::Text(t)) => {
                        let v: Value = serde_json::from_slice(&t).unwrap();
                        if v["result"].is_string() {
                            assert_eq!(v["result"], "404", "{v}");
                        }
                    }
                    _ => {}
                }
            }
        } else {
            wait_state(&sim, "the token to expire", |s| s["tokens_active"] == 0).await;
            send_text(
                &mut ws,
                &json!({"message": "subscribe", "topics": [conversation_topic("acw")]}).to_string(),
            )
            .await;
            assert_eq!(next_json(&mut ws, true).await["result"], "200");
        }
    }
}

#[actix_rt::test]
async fn queues_and_users_come_and_go_at_run_time() {
    let sim = start(|a| {
        a.queues = 2;
        a.users = 3;
    })
    .await;
    let token = sim.token().await;
    let added = sim
        .control("/sim/directory/queues", json!({"count": 2}))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let ids: Vec<String> = serde_json::from_value(added.body["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    let listed = sim.get(&token, "/api/v2/routing/queues").await;
    assert_eq!(listed.body["total"], 4);
    let users = sim
        .control("/sim/directory/users", json!({"count": 1}))
        .await;
    let user = users.body["ids"][0].as_str().unwrap().to_owned();
    assert_eq!(
        sim.get(&token, &format!("/api/v2/users/{user}"))
            .await
            .status,
        StatusCode::OK
    );

    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let gone = format!("v2.analytics.queues.{}.observations", ids[0]);
    let kept = format!("v2.analytics.queues.{}.observations", ids[1]);
    let r = sim.subscribe(&token, id, &[&gone, &kept], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    let removed = sim
        .send_json(
            "DELETE",
            None,
            &format!("/sim/directory/queues/{}", ids[0]),
            &json!(null),
        )
        .await;
    assert_eq!(removed.body, json!({"removed": ids[0]}));
    let again = sim
        .send_json(
            "DELETE",
            None,
            &format!("/sim/directory/queues/{}", ids[0]),
            &json!(null),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        sim.get(&token, "/api/v2/routing/queues").await.body["total"],
        3
    );
    let r = sim
        .get(&token, &format!("/api/v2/routing/queues/{}", ids[0]))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A new subscription to the removed queue is refused.
    let r = sim.subscribe(&token, id, &[&gone], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    let r = sim.control("/sim/generate", json!({"count": 6})).await;
    assert_eq!(r.body["emitted"], 6, "{}", r.body);
    for _ in 0..6 {
        let event = next_json(&mut ws, true).await;
        assert_eq!(
            event["topicName"],
            kept.as_str(),
            "events for a removed queue stop"
        );
    }
    let removed = sim
        .send_json(
            "DELETE",
            None,
            &format!("/sim/directory/users/{user}"),
            &json!(null),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(
        sim.get(&token, &format!("/api/v2/users/{user}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(sim.get(&token, "/api/v2/users").await.body["total"], 3);
}

#[actix_rt::test]
async fn combined_topics_expand_into_their_sub_topics() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    let users = sim.get(&token, "/api/v2/users?pageSize=1").await;
    let user = users.body["entities"][0]["id"].as_str().unwrap().to_owned();
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let combined = format!("v2.users.{user}?presence&routingStatus");
    let r = sim.subscribe(&token, id, &[&combined], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let expanded = [
        format!("v2.users.{user}.presence"),
        format!("v2.users.{user}.routingStatus"),
    ];
    let listed = sim
        .get(
            &token,
            &format!("/api/v2/notifications/channels/{id}/subscriptions"),
        )
        .await;
    let listed: Vec<&str> = listed.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [expanded[0].as_str(), expanded[1].as_str()]);

    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;
    sim.control("/sim/generate", json!({"count": 4})).await;
    let mut names = HashSet::new();
    for _ in 0..4 {
        names.insert(
            next_json(&mut ws, true).await["topicName"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(names, expanded.iter().cloned().collect::<HashSet<_>>());

    let too_long = format!("v2.users.{user}?{}", vec!["presence"; 30].join("&"));
    let r = sim.subscribe(&token, id, &[&too_long], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[actix_rt::test]
async fn everything_is_served_over_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulator::TestCa::generate()
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    let sim = start(|a| {
        a.tls_cert = Some(files.server_cert.clone());
        a.tls_key = Some(files.server_key.clone());
    })
    .await;
    assert!(sim.sim.base_url.starts_with("https://"));
    assert!(sim.sim.login_url.starts_with("https://"));
    assert!(sim.sim.ws_base_url().starts_with("wss://"));

    let trusting = |ca: Option<&std::path::Path>| {
        let mut ssl = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        if let Some(ca) = ca {
            ssl.set_ca_file(ca).unwrap();
        }
        let _ = ssl.set_alpn_protos(b"\x08http/1.1");
        awc::Client::builder()
            .connector(awc::Connector::new().openssl(ssl.build()))
            .finish()
    };
    // Without the test CA the certificate is refused.
    let stranger = trusting(None);
    assert!(stranger
        .post(sim.login_url("/oauth/token"))
        .send()
        .await
        .is_err());

    let client = trusting(Some(&files.ca_cert));
    let login = client
        .post(sim.login_url("/oauth/token"))
        .basic_auth("demo-client", "demo-secret")
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .expect("login over https");
    let token = reply(login).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let channel = client
        .post(sim.url("/api/v2/notifications/channels"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("REST over https");
    let channel = reply(channel).await.body;
    let uri = channel["connectUri"].as_str().unwrap();
    assert!(uri.starts_with("wss://"), "{uri}");
    let (_, socket) = client.ws(uri).connect().await.expect("wss connects");
    let (mut tx, mut rx) = socket.split();
    tx.send(Message::Text(r#"{"message":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = actix_web::rt::time::timeout(WAIT, rx.next()).await.unwrap();
    match pong {
        Some(Ok(Frame::Text(t))) => assert!(String::from_utf8_lossy(&t).contains("pong")),
        other => panic!("expected a pong over wss, got {other:?}"),
    }
}

/// Reads the next `n` notification frames (heartbeats skipped).
async fn read_events(ws: &mut Socket, n: u64) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_json(ws, true).await);
    }
    out
}

/// `(metric, qualifier)` of an observation metric entry.
fn metric_key(m: &Value) -> (String, String) {
    (
        m["metric"].as_str().expect("metric name").to_owned(),
        m["qualifier"].as_str().unwrap_or_default().to_owned(),
    )
}

#[actix_rt::test]
async fn queue_observations_are_deltas_that_add_up_to_the_state() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let topic = sim.queue_topic(0);
    let queue = sim.queue_id(0);
    assert_eq!(
        sim.subscribe(&token, id, &[&topic], "").await.status,
        StatusCode::OK
    );
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    let r = sim.control("/sim/generate", json!({"count": 80})).await;
    assert_eq!(r.body["emitted"], 80, "{}", r.body);
    let events = read_events(&mut ws, 80).await;

    let mut rebuilt: HashMap<(String, String), Value> = HashMap::new();
    let mut observations = 0;
    let mut full_size = 0;
    for event in &events {
        assert_eq!(event["topicName"], topic.as_str());
        let body = &event["eventBody"];
        assert_eq!(body["group"]["queueId"], queue.as_str());
        let data = &body["data"][0];
        let interval = data["interval"].as_str().unwrap();
        let (from, to) = interval.split_once('/').unwrap();
        let metrics = data["metrics"].as_array().unwrap();
        // Every count is an integer, in observations and aggregates alike.
        for m in metrics {
            for (k, v) in m["stats"].as_object().unwrap() {
                if k != "ratio" && k != "target" {
                    assert!(v.is_u64(), "{k} of {} is not an integer: {v}", m["metric"]);
                }
            }
        }
        if from != to {
            continue; // a 30-minute aggregate on the same topic
        }
        observations += 1;
        if observations == 1 {
            full_size = metrics.len();
            assert!(
                full_size >= 10,
                "the first event carries every metric: {body}"
            );
            let sl = metrics
                .iter()
                .find(|m| m["metric"] == "oServiceLevel")
                .expect("oServiceLevel in the first event");
            let stats = &sl["stats"];
            for field in ["ratio", "numerator", "denominator", "target"] {
                assert!(stats[field].is_number(), "{field} missing: {stats}");
            }
        } else {
            assert!(!metrics.is_empty(), "an empty delta: {body}");
            assert!(metrics.len() < full_size, "not a delta: {body}");
        }
        for m in metrics {
            let key = metric_key(m);
            // Only what changed: never the value the consumer already has.
            assert_ne!(
                rebuilt.get(&key),
                Some(&m["stats"]),
                "unchanged {key:?} sent again"
            );
            if m["metric"] == "oServiceLevel" {
                let s = &m["stats"];
                let (n, d) = (
                    s["numerator"].as_u64().unwrap(),
                    s["denominator"].as_u64().unwrap(),
                );
                assert!(n <= d);
                if d > 0 {
                    let ratio = s["ratio"].as_f64().unwrap();
                    assert!((ratio - n as f64 / d as f64).abs() < 1e-9, "{s}");
                }
            }
            rebuilt.insert(key, m["stats"].clone());
        }
    }
    assert!(observations > 30, "only {observations} observation events");

    let state = sim.get(&token, "/sim/observations?queue_id=").await;
    assert_eq!(state.status, StatusCode::OK);
    let r = reply(
        sim.http
            .get(sim.url(&format!("/sim/observations?queue_id={queue}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let held: HashMap<(String, String), Value> = r.body["queues"][queue.as_str()]
        .as_array()
        .expect("the queue's statistics")
        .iter()
        .map(|m| (metric_key(m), m["stats"].clone()))
        .collect();
    assert_eq!(
        rebuilt, held,
        "applying the deltas in order rebuilds the state"
    );
}

/// The stage a conversation snapshot shows (see the `events` docs).
fn snapshot_stage(conv: &Value) -> &'static str {
    let agent = conv["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "agent")
        .expect("an agent participant");
    let comms = ["calls", "chats", "emails", "messages"]
        .iter()
        .find_map(|k| agent[*k].as_array())
        .expect("the agent's communications");
    match (
        comms[0]["state"].as_str().unwrap(),
        agent["wrapup"].is_object(),
    ) {
        ("alerting", false) => "alerting",
        ("connected", false) => "connected",
        ("disconnected", false) => "acw",
        ("disconnected", true) => "disconnected",
        other => panic!("impossible snapshot {other:?}: {conv}"),
    }
}

#[actix_rt::test]
async fn a_conversation_goes_through_its_stages_in_order_on_every_topic() {
    let sim = start(|_| {}).await;
    let token = sim.token().await;
    sim.load_directory(&token).await;
    let channel = sim.create_channel(&token).await;
    let id = channel["id"].as_str().unwrap();
    let queue = sim.queue_id(0);
    let queue_topic = format!("v2.routing.queues.{queue}.conversations");
    assert_eq!(
        sim.subscribe(&token, id, &[&queue_topic], "").await.status,
        StatusCode::OK
    );
    let mut ws = connect(channel["connectUri"].as_str().unwrap()).await;
    wait_state(&sim, "socket connected", |s| {
        s["channels"][0]["connected"] == true
    })
    .await;

    // The first event starts a conversation on the queue.
    assert_eq!(
        sim.control("/sim/generate", json!({"count": 1})).await.body["emitted"],
        1
    );
    let first = next_json(&mut ws, true).await;
    let conv = first["eventBody"].clone();
    let conv_id = conv["id"].as_str().unwrap().to_owned();
    assert_eq!(snapshot_stage(&conv), "alerting");
    let agent = conv["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "agent")
        .unwrap()["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = reply(
        sim.http
            .get(sim.url("/sim/conversations"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        listed.body["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == conv_id.as_str() && c["stage"] == "alerting"),
        "{}",
        listed.body
    );

    // Now follow it everywhere: queue, agent, and its detail events.
    let kinds = [
        "customer.start",
        "acd.start",
        "attributes",
        "acd.end",
        "user.start",
        "customer.end",
        "user.end",
        "acw",
    ];
    let mut topics = vec![
        queue_topic.clone(),
        format!("v2.users.{agent}.conversations"),
        format!("v2.detail.events.agent.{agent}.state"),
    ];
    topics.extend(
        kinds
            .iter()
            .map(|k| format!("v2.detail.events.conversation.{conv_id}.{k}")),
    );
    assert_eq!(
        sim.subscribe(&token, id, &topics, "").await.status,
        StatusCode::OK
    );

    let mut stages = vec!["alerting"];
    let mut details: Vec<Value> = Vec::new();
    // Last stage of every conversation seen in a snapshot, and how many
    // agent state events named one of them.
    let mut last_stage: HashMap<String, &'static str> = HashMap::new();
    last_stage.insert(conv_id.clone(), "alerting");
    let mut agent_states = 0;
    for _round in 0..20 {
        if details.len() == kinds.len() && stages.last() == Some(&"disconnected") {
            break;
        }
        let r = sim.control("/sim/generate", json!({"count": 10})).await;
        let n = r.body["emitted"].as_u64().unwrap();
        for event in read_events(&mut ws, n).await {
            let topic = event["topicName"].as_str().unwrap();
            let body = &event["eventBody"];
            if topic.starts_with("v2.detail.events.conversation.") {
                assert!(topic.starts_with(&format!("v2.detail.events.conversation.{conv_id}.")));
                assert_eq!(body["conversationId"], conv_id.as_str());
                details.push(event.clone());
            } else if topic.starts_with("v2.detail.events.agent.") {
                // The agent's live conversation, at the stage last shown.
                let id = body["conversationId"].as_str().unwrap();
                let stage = last_stage
                    .get(id)
                    .unwrap_or_else(|| panic!("unknown {id}: {body}"));
                let expected = match *stage {
                    "alerting" => "ALERT",
                    "connected" => "INTERACT",
                    "acw" => "WRAPUP",
                    other => panic!("agent state of an ended conversation ({other}): {body}"),
                };
                assert_eq!(body["currentState"], expected, "{body}");
                assert_eq!(body["userId"], agent.as_str());
                agent_states += 1;
            } else {
                let stage = snapshot_stage(body);
                last_stage.insert(body["id"].as_str().unwrap().to_owned(), stage);
                if body["id"] == conv_id.as_str() {
                    stages.push(stage);
                }
            }
        }
    }
    assert_eq!(stages, ["alerting", "connected", "acw", "disconnected"]);
    assert!(agent_states > 0, "no agent state event");
    let seen: Vec<&str> = details
        .iter()
        .map(|e| {
            let t = e["topicName"].as_str().unwrap();
            &t[t.find(&conv_id).unwrap() + conv_id.len() + 1..]
        })
        .collect();
    assert_eq!(seen, kinds, "detail events in lifecycle order");

    let by_kind: HashMap<&str, &Value> = seen
        .iter()
        .copied()
        .zip(details.iter().map(|e| &e["eventBody"]))
        .collect();
    for (kind, body) in &by_kind {
        assert!(body["eventTime"].is_u64(), "{kind}: {body}");
        assert!(body["participantId"].is_string(), "{kind}: {body}");
        if *kind != "attributes" {
            assert!(body["sessionId"].is_string(), "{kind}: {body}");
            let media = body["mediaType"].as_str().unwrap();
            assert!(
                ["VOICE", "CHAT", "EMAIL", "MESSAGE"].contains(&media),
                "{media}"
            );
            assert_eq!(body["direction"], "INBOUND");
        }
    }
    assert_eq!(
        by_kind["customer.start"]["participantId"],
        by_kind["customer.end"]["participantId"]
    );
    assert_eq!(
        by_kind["user.start"]["sessionId"],
        by_kind["acw"]["sessionId"]
    );
    assert_eq!(by_kind["acd.start"]["queueId"], queue.as_str());
    assert_eq!(
        by_kind["acd.start"]["requestedRoutings"],
        json!(["STANDARD"])
    );
    assert_eq!(by_kind["acd.end"]["usedRouting"], "STANDARD");
    assert_eq!(by_kind["acd.end"]["acdOutcome"], "ANSWERED");
    assert_eq!(by_kind["user.start"]["userId"], agent.as_str());
    assert_eq!(by_kind["acw"]["userId"], agent.as_str());
    assert!(by_kind["customer.end"]["disconnectType"].is_string());
    assert!(by_kind["user.end"]["interactingDurationMs"].is_u64());
    assert!(by_kind["customer.end"]["interactingDurationMs"].is_u64());

    // Ended: no more events about it, and it left the live set.
    let r = sim.control("/sim/generate", json!({"count": 20})).await;
    for event in read_events(&mut ws, r.body["emitted"].as_u64().unwrap()).await {
        assert_ne!(event["eventBody"]["id"], conv_id.as_str(), "{event}");
        assert!(
            !event["topicName"].as_str().unwrap().contains(&conv_id),
            "{event}"
        );
    }
    let listed = reply(
        sim.http
            .get(sim.url("/sim/conversations"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let live = listed.body["conversations"].as_array().unwrap();
    assert!(live.iter().all(|c| c["id"] != conv_id.as_str()));
    let on_queue = live
        .iter()
        .filter(|c| c["queue_id"] == queue.as_str())
        .count();
    assert!((1..=3).contains(&on_queue), "bounded per queue: {on_queue}");
}

#[actix_rt::test]
async fn revoking_one_token_ends_its_channels_and_spares_the_others() {
    let sim = start(|_| {}).await;
    let (t1, t2) = (sim.token().await, sim.token().await);
    sim.load_directory(&t1).await;
    let mut sockets = Vec::new();
    let mut ids = Vec::new();
    for t in [&t1, &t2] {
        let channel = sim.create_channel(t).await;
        let id = channel["id"].as_str().unwrap().to_owned();
        assert_eq!(
            sim.subscribe(t, &id, &[sim.queue_topic(0)], "")
                .await
                .status,
            StatusCode::OK
        );
        sockets.push(connect(channel["connectUri"].as_str().unwrap()).await);
        ids.push(id);
    }
    wait_state(&sim, "both sockets connected", |s| {
        s["channels"]
            .as_array()
            .is_some_and(|c| c.iter().filter(|c| c["connected"] == true).count() == 2)
    })
    .await;

    let unknown = sim
        .control(
            "/sim/faults/revoke-token",
            json!({"token_prefix": "no-such-token"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let r = sim
        .control(
            "/sim/faults/revoke-token",
            json!({"token_prefix": &t1[..16]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["channels_ended"], 1);

    let notice = next_json(&mut sockets[0], true).await;
    assert_eq!(notice["topicName"], "v2.system.token_revoked", "{notice}");
    assert_eq!(notice["eventBody"]["channelId"], ids[0].as_str());
    loop {
        match next_frame(&mut sockets[0], WAIT).await {
            Some(Frame::Close(_)) | None => break,
            Some(Frame::Ping(_) | Frame::Pong(_)) => {}
            Some(Frame::Text(t)) => {
                let v: Value = serde_json::from_slice(&t).unwrap();
                assert_eq!(v["eventBody"]["message"], "WebSocket Heartbeat", "{v}");
            }
            other => panic!("expected the revoked token's socket to close, got {other:?}"),
        }
    }
    let revoked = sim.get(&t1, "/api/v2/notifications/channels").await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked.body["code"], "bad.credentials");
    let path = |id: &str| format!("/api/v2/notifications/channels/{id}");
    assert_eq!(sim.head(&t2, &path(&ids[0])).await, StatusCode::NOT_FOUND);
    assert_eq!(sim.head(&t2, &path(&ids[1])).await, StatusCode::OK);

    // The other token's channel lives on and still gets events.
    let r = sim.control("/sim/generate", json!({"count": 3})).await;
    assert_eq!(r.body["delivered"], 3, "{}", r.body);
    for event in read_events(&mut sockets[1], 3).await {
        assert_eq!(event["topicName"], sim.queue_topic(0).as_str());
    }
    assert_eq!(sim.state().await["channels_ended_with_token"], 1);
}

#[actix_rt::test]
async fn expired_tokens_answer_credentials_expired_or_alternate_by_option() {
    let sim = start(|a| {
        a.token_ttl = 1;
        a.expired_token_code = "alternate".into();
    })
    .await;
    let token = sim.token().await;
    let deadline = std::time::Instant::now() + WAIT;
    let first = loop {
        let r = sim.get(&token, "/api/v2/notifications/channels").await;
        if r.status == StatusCode::UNAUTHORIZED {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "token never expired");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first.body["code"], "credentials.expired", "{}", first.body);
    let second = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    assert_eq!(second.body["code"], "bad.credentials");
    let third = sim.get(&token, "/api/v2/notifications/channels").await;
    assert_eq!(third.body["code"], "credentials.expired");
    // A token never issued is unknown, not expired.
    let unknown = sim
        .get("never-issued", "/api/v2/notifications/channels")
        .await;
    assert_eq!(unknown.body["code"], "bad.credentials");
}
