//! The HTTP endpoint monitoring polls:
//! - `GET /healthz`: 200 while every actor reports in; 503 names the stuck ones.
//! - `GET /readyz`: 200 when every channel's socket is open, a token is
//!   held and Kafka answers; 503 with the reasons otherwise.
//! - `GET /metrics`: Prometheus text.
//! - `GET /status`: JSON detail of each connection (no secrets), and the
//!   newest gaps (`gaps.recent`, at most 50) with totals.

mod config;

use std::sync::Arc;

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
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .route("/status", web::get().to(status))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)?;
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}

async fn healthz(t: web::Data<Telemetry>) -> HttpResponse {
    match t.health() {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "alive"})),
        Err(Unhealthy::Failed(reason)) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "failed", "reason": reason})),
        Err(Unhealthy::Stuck(actors)) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "stuck", "actors": actors})),
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
    HttpResponse::Ok().json(serde_json::json!({
        "connections": t.connections(),
        "kafka_topics": t.topics(),
        "ready": t.readiness().err().unwrap_or_default(),
        "gaps": t.gaps_report(),
    }))
}
