//! The simulator's HTTP face: one file per API area, each a set of
//! handlers over the state (`crate::state`), and [`routes`], which maps
//! paths to them.
//!
//! * `oauth`: login (`POST /oauth/token`) and the bearer check of every
//!   `/api/v2` call;
//! * `channels`: the Notification Service REST API (channels and their
//!   subscriptions);
//! * `socket`: the channel WebSocket (one actor per connection);
//! * `directory`: the queue and user listings;
//! * `analytics`: the Analytics API queries (queue observations);
//! * `control`: the simulator's own `/sim/` API;
//! * `request`: reading bodies and query strings into clear 400s.
//!
//! A new API area is a file here over the existing state, plus its lines
//! in [`routes`].

mod analytics;
mod channels;
pub(crate) mod control;
mod directory;
pub(crate) mod oauth;
pub(crate) mod request;
mod socket;

use actix_web::{web, HttpResponse};

use crate::errors::ApiError;

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// REST, WebSocket and control API; login too when `with_login`.
    Api { with_login: bool },
    /// `POST /oauth/token` only.
    Login,
}

pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("HTTP 404 Not Found"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method.not.allowed",
        "HTTP 405 Method Not Allowed",
    ))
}

/// A resource whose unsupported methods get a Genesys-shaped 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig, role: Role) {
    match role {
        Role::Login => {
            cfg.service(resource("/oauth/token").route(web::post().to(oauth::token)));
            return;
        }
        Role::Api { with_login: true } => {
            cfg.service(resource("/oauth/token").route(web::post().to(oauth::token)));
        }
        Role::Api { with_login: false } => {}
    }
    cfg.service(
        resource("/api/v2/notifications/channels")
            .route(web::post().to(channels::create))
            .route(web::get().to(channels::list)),
    )
    .service(resource("/api/v2/notifications/channels/{id}").route(web::head().to(channels::head)))
    .service(
        resource("/api/v2/notifications/channels/{id}/subscriptions")
            .route(web::get().to(channels::get_subscriptions))
            .route(web::put().to(channels::put_subscriptions))
            .route(web::post().to(channels::post_subscriptions))
            .route(web::delete().to(channels::delete_subscriptions)),
    )
    .service(resource("/api/v2/routing/queues").route(web::get().to(directory::list_queues)))
    .service(resource("/api/v2/routing/queues/{id}").route(web::get().to(directory::get_queue)))
    .service(resource("/api/v2/users").route(web::get().to(directory::list_users)))
    .service(resource("/api/v2/users/{id}").route(web::get().to(directory::get_user)))
    .service(
        resource("/api/v2/analytics/queues/observations/query")
            .route(web::post().to(analytics::queue_observations)),
    )
    .service(
        resource("/api/v2/analytics/conversations/details/query")
            .route(web::post().to(analytics::conversation_details)),
    )
    .service(resource("/channels/{id}").route(web::get().to(socket::connect)))
    .service(resource("/sim/generate").route(web::post().to(control::generate::generate)))
    .service(resource("/sim/emitted").route(web::get().to(control::inspect::emitted)))
    .service(resource("/sim/state").route(web::get().to(control::inspect::sim_state)))
    .service(resource("/sim/conversations").route(web::get().to(control::inspect::conversations)))
    .service(resource("/sim/observations").route(web::get().to(control::inspect::observations)))
    .service(
        resource("/sim/directory/{kind}").route(web::post().to(control::directory::add_entries)),
    )
    .service(
        resource("/sim/directory/{kind}/{id}")
            .route(web::delete().to(control::directory::remove_entry)),
    )
    .service(
        resource("/sim/stop-generator").route(web::post().to(control::generate::stop_generator)),
    )
    .service(
        resource("/sim/faults")
            .route(web::get().to(control::faults::get_faults))
            .route(web::post().to(control::faults::set_faults))
            .route(web::delete().to(control::faults::clear_faults)),
    )
    .service(
        resource("/sim/faults/drop-sockets").route(web::post().to(control::faults::drop_sockets)),
    )
    .service(
        resource("/sim/faults/socket-closing")
            .route(web::post().to(control::faults::socket_closing)),
    )
    .service(
        resource("/sim/faults/expire-tokens").route(web::post().to(control::faults::expire_tokens)),
    )
    .service(
        resource("/sim/faults/revoke-token").route(web::post().to(control::faults::revoke_token)),
    )
    .service(
        resource("/sim/faults/expire-channels")
            .route(web::post().to(control::faults::expire_channels)),
    )
    .route(
        "/",
        web::get()
            .to(|| async { HttpResponse::Ok().body("Genesys Cloud simulator: see /sim/state\n") }),
    );
}
