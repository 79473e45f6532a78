//! The HTTP endpoint monitoring polls (`[health] listen`, 127.0.0.1:9464
//! by default), read-only, GET only:
//! - `GET /`: the status page for a person, one self-contained HTML page
//!   (no external asset: it works offline and behind strict networks) that
//!   polls `/status` every 2 s and updates itself in place; it says so
//!   when the bridge stops answering instead of showing old figures as
//!   current. Sent with a Content-Security-Policy that allows its own
//!   inline script and style (by hash) and fetches to this origin only.
//! - `GET /healthz`: 200 while every actor reports in; 503 names the stuck ones.
//! - `GET /readyz`: 200 when every channel's socket is open, a token is
//!   held and Kafka answers; 503 with the reasons otherwise.
//! - `GET /metrics`: Prometheus text.
//! - `GET /status`: JSON, no secrets: each connection (phase, masked
//!   channel, channel expiry, reconnects), the token's expiry, each Kafka
//!   topic (backlog, oldest unacknowledged age, blocked reason, forwarded
//!   and per second), health and readiness, the newest gaps
//!   (`gaps.recent`, at most 50) with totals, and the newest warnings and
//!   errors (`recent_problems`, at most 50, newest first).

mod config;

use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpResponse, HttpServer};

pub use config::HealthConfig;

use crate::telemetry::{Telemetry, Unhealthy};

/// Binds the endpoint and returns the running server (to be awaited or
/// stopped) with the address it got, which may differ from the configured
/// one when that asked for port 0.
pub fn start(
    listen: &str,
    telemetry: Arc<Telemetry>,
) -> std::io::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let data = web::Data::from(telemetry);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            // Every answer is a snapshot of now: a cache (a proxy, the
            // browser's back button) must not show an old one as current.
            .wrap(
                DefaultHeaders::new()
                    .add((header::CACHE_CONTROL, "no-store"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
            )
            // Resources, not bare routes: another method on them is a 405
            // (read-only), not a 404 that reads as a wrong address.
            .service(web::resource("/").get(page))
            .service(web::resource("/healthz").get(healthz))
            .service(web::resource("/readyz").get(readyz))
            .service(web::resource("/metrics").get(metrics))
            .service(web::resource("/status").get(status))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)?;
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}

/// The status page: HTML, CSS and script in one file, in the binary.
const STATUS_PAGE: &str = include_str!("status_page.html");

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, page_csp()))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(STATUS_PAGE)
}

/// The page's Content-Security-Policy. Nothing is allowed by default;
/// the one inline script and the one inline style run because their
/// SHA-256 is listed (not `'unsafe-inline'`: an injected script or
/// style, should a text ever slip through as markup, would not run),
/// and the script may only fetch from this origin (`/status`). Trusted
/// Types are required with no policy, so the browser itself refuses any
/// string written as HTML (`innerHTML` and the like): the page writes
/// text nodes only. No frames (clickjacking), no forms, no `<base>`.
fn page_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
             require-trusted-types-for 'script'; trusted-types 'none'",
            inline_hash(STATUS_PAGE, "script"),
            inline_hash(STATUS_PAGE, "style"),
        )
    })
}

/// `sha256-…` of the text of the page's `<tag>` element, as a browser
/// hashes it for CSP. The browser sees line ends as `\n` whatever the
/// file has (a checkout with CRLF), so they are hashed as such.
fn inline_hash(page: &str, tag: &str) -> String {
    use base64::Engine as _;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = page
        .find(&open)
        .map(|at| at + open.len())
        .unwrap_or_else(|| panic!("the status page has no <{tag}>"));
    let end = start
        + page[start..]
            .find(&close)
            .unwrap_or_else(|| panic!("the status page has no </{tag}>"));
    let text = page[start..end].replace("\r\n", "\n").replace('\r', "\n");
    let digest = openssl::sha::sha256(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// What `/healthz` answers, also `/status`'s `health`.
fn health_report(t: &Telemetry) -> (bool, serde_json::Value) {
    match t.health() {
        Ok(()) => (true, serde_json::json!({"status": "alive"})),
        Err(Unhealthy::Failed(reason)) => (
            false,
            serde_json::json!({"status": "failed", "reason": reason}),
        ),
        Err(Unhealthy::Stuck(actors)) => (
            false,
            serde_json::json!({"status": "stuck", "actors": actors}),
        ),
    }
}

async fn healthz(t: web::Data<Telemetry>) -> HttpResponse {
    match health_report(&t) {
        (true, body) => HttpResponse::Ok().json(body),
        (false, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}

async fn readyz(t: web::Data<Telemetry>) -> HttpResponse {
    match t.readiness() {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(reasons) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "not ready", "reasons": reasons})),
    }
}

async fn metrics(t: web::Data<Telemetry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(t.render_metrics())
}

async fn status(t: web::Data<Telemetry>) -> HttpResponse {
    HttpResponse::Ok().json(status_report(&t))
}

/// `/status`. The first four keys are older than the status page and
/// read by scripts: they keep their shape (fields are only added).
fn status_report(t: &Telemetry) -> serde_json::Value {
    serde_json::json!({
        "connections": t.connections.report(),
        "kafka_topics": t.kafka.topics(),
        // The reasons the bridge is not ready; empty when it is.
        "ready": t.readiness().err().unwrap_or_default(),
        "gaps": t.gaps.report(),
        "repair": t.repair.report(),
        "cluster": t.cluster.report(),
        "health": health_report(t).1,
        "token": t.token.report(),
        "forwarded": t.kafka.forwarded_report(),
        "recent_problems": t.recent_problems(),
        "generated_at": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A running endpoint on a free port, and its base URL.
    fn serve(t: Arc<Telemetry>) -> String {
        let (server, addr) = start("127.0.0.1:0", t).unwrap();
        actix_rt::spawn(server);
        format!("http://{addr}")
    }

    fn header<'a>(response: &'a awc::ClientResponse<impl Sized>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    #[actix_rt::test]
    async fn the_page_is_served_read_only_with_its_policy() {
        let base = serve(Arc::new(Telemetry::default()));
        let client = awc::Client::new();
        let mut page = client.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&page, "x-content-type-options"), "nosniff");
        assert_eq!(header(&page, "cache-control"), "no-store");
        assert_eq!(header(&page, "referrer-policy"), "no-referrer");
        let csp = header(&page, "content-security-policy").to_owned();
        for part in [
            "default-src 'none'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(csp.contains(part), "{part} missing in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        let body = page.body().await.unwrap();
        assert_eq!(body, STATUS_PAGE.as_bytes());

        for method in [
            awc::http::Method::POST,
            awc::http::Method::PUT,
            awc::http::Method::DELETE,
        ] {
            let answer = client
                .request(method.clone(), format!("{base}/"))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 405, "{method}");
            assert_eq!(header(&answer, "allow"), "GET", "{method}");
        }
        let status = client.get(format!("{base}/status")).send().await.unwrap();
        assert_eq!(header(&status, "cache-control"), "no-store");
    }

    #[test]
    fn the_policy_lists_the_hashes_of_the_inline_script_and_style() {
        use base64::Engine as _;
        // Computed here from the page's own text, the way a browser takes
        // it: between the tags, exactly.
        let element = |tag: &str| {
            let (_, rest) = STATUS_PAGE.split_once(&format!("<{tag}>")).unwrap();
            rest.split_once(&format!("</{tag}>")).unwrap().0.to_owned()
        };
        for tag in ["script", "style"] {
            let text = element(tag);
            assert!(text.len() > 100, "{tag}: {text}");
            let hash = base64::engine::general_purpose::STANDARD
                .encode(openssl::sha::sha256(text.as_bytes()));
            let wanted = format!("{tag}-src 'sha256-{hash}'");
            assert!(
                page_csp().contains(&wanted),
                "{wanted} not in {}",
                page_csp()
            );
        }
        assert_eq!(STATUS_PAGE.matches("<script").count(), 1);
        assert_eq!(STATUS_PAGE.matches("<style").count(), 1);
    }

    #[test]
    fn the_page_writes_text_only_and_loads_nothing_from_elsewhere() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "Function(",
            "style=",
        ] {
            assert!(!STATUS_PAGE.contains(sink), "{sink:?} in the page");
        }
        // Inline handlers (`onclick=`) would need 'unsafe-inline'.
        let handlers: Vec<&str> = STATUS_PAGE
            .split(|c: char| c.is_whitespace() || c == '<')
            .filter(|w| {
                w.split_once('=').is_some_and(|(name, _)| {
                    name.len() > 2
                        && name.starts_with("on")
                        && name.chars().all(|c| c.is_ascii_lowercase())
                })
            })
            .collect();
        assert!(handlers.is_empty(), "{handlers:?}");
        assert!(!STATUS_PAGE.contains("://"), "an absolute URL in the page");
    }

    #[actix_rt::test]
    async fn status_keeps_its_fields_and_adds_what_the_page_shows() {
        let t = Arc::new(Telemetry::default());
        t.token
            .granted(Duration::from_secs(3600), Duration::from_secs(1800));
        t.connections.channel_created(
            0,
            "streaming-0-fmtdmf8cdis7jh14udg5p89t6z",
            Some("2099-01-01T00:00:00Z"),
        );
        t.connections
            .open(0, "streaming-0-fmtdmf8cdis7jh14udg5p89t6z", 6, 0);
        t.connections.reconnecting(
            0,
            Some("streaming-0-fmtdmf8cdis7jh14udg5p89t6z"),
            "socket dropped without a close frame (1006)",
            Duration::ZERO,
        );
        t.connections
            .open(0, "streaming-0-fmtdmf8cdis7jh14udg5p89t6z", 6, 0);
        t.kafka
            .dead_lettered(9, "genesys.events", "MessageSizeTooLarge");
        let report = |acknowledged| crate::telemetry::TopicReport {
            topic: "genesys.events".into(),
            backlog: 2,
            in_flight: 1,
            oldest_unacknowledged_age_ms: Some(40),
            blocked: None,
            acknowledged,
            forwarded: 0,
            forwarded_per_sec: 0.0,
        };
        t.kafka.topics_report(vec![report(0)]);
        t.kafka.events_forwarded(25);
        t.kafka.topics_report(vec![report(25)]);

        let base = serve(t);
        let mut answer = awc::Client::new()
            .get(format!("{base}/status"))
            .send()
            .await
            .unwrap();
        let status: serde_json::Value = answer.json().await.unwrap();
        let text = status.to_string();
        assert!(!text.contains("fmtdmf8cdis7"), "a whole channel id: {text}");

        let connection = &status["connections"]["0"];
        for key in ["phase", "channel_id", "topics", "rejected_topics", "detail"] {
            assert!(connection.get(key).is_some(), "{key} missing: {connection}");
        }
        assert_eq!(connection["phase"], "open");
        assert_eq!(connection["channel_id"], "streaming-0-fmtd…");
        assert_eq!(connection["reconnects"], 1);
        assert_eq!(connection["channel_expires_at"], "2099-01-01T00:00:00.000Z");
        assert!(connection["channel_expires_in_secs"].as_f64().unwrap() > 1e8);
        let token_left = status["token"]["expires_in_secs"].as_f64().unwrap();
        assert!((3590.0..=3600.0).contains(&token_left), "{token_left}");
        assert!(status["token"]["problem"].is_null());

        let topic = &status["kafka_topics"][0];
        for key in [
            "topic",
            "backlog",
            "in_flight",
            "oldest_unacknowledged_age_ms",
            "blocked",
        ] {
            assert!(topic.get(key).is_some(), "{key} missing: {topic}");
        }
        assert!(topic.get("acknowledged").is_none(), "{topic}");
        assert_eq!(topic["forwarded"], 25);
        assert!(
            topic["forwarded_per_sec"].as_f64().unwrap() > 0.0,
            "{topic}"
        );
        assert_eq!(status["forwarded"]["total"], 25);

        assert!(status["ready"].is_array() && status["gaps"]["recent"].is_array());
        assert_eq!(status["health"]["status"], "alive");
        let problems = status["recent_problems"].as_array().unwrap();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert_eq!(problems[0]["level"], "ERROR");
        assert_eq!(problems[0]["component"], "kafka");
        assert_eq!(problems[0]["detail"], "genesys.events: MessageSizeTooLarge");
        assert_eq!(problems[1]["level"], "WARN");
        assert_eq!(problems[1]["component"], "connection 0");
        assert_eq!(problems[1]["message"], "reconnecting");
        assert_eq!(
            problems[1]["detail"],
            "socket dropped without a close frame (1006)"
        );
    }
}
