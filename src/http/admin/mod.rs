//! The admin listener: liveness, readiness, the OpenAPI document and the status page without
//! the token; backends (status and changes), client CRUD, the cluster, `/status` and (unless
//! public) the metrics behind it.

mod auth;
mod backends;
mod batch;
mod client_body;
mod clients;
mod cluster;
mod error;
mod framework_errors;
mod json;
mod metrics;
mod openapi;
mod paging;
mod status;
mod status_page;
mod tokens;

pub use auth::AdminToken;
pub use batch::{BATCH_BODY_LIMIT, MAX_BATCH};
pub use error::AdminError;
pub use framework_errors::ADMIN_BODY_LIMIT;
pub use metrics::MetricsState;
pub use openapi::{document as openapi_document, AdminApi, BEARER};

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use actix_web::{http::StatusCode, middleware::from_fn, web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::{
    cluster::ClusterHandle,
    error_body::{self, ErrorBody},
    pool::PoolHandle,
    registry::RegistryHandle,
    request_id::request_id,
    store::{DbExecutor, StoreHealth},
};

/// The admin listener and its credentials.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Admin listener address.
    pub listen: std::net::SocketAddr,
    /// Bearer token; `None` leaves the API open (only allowed on loopback).
    pub token: Option<AdminToken>,
}

/// What the admin handlers share.
pub struct AdminState {
    /// The backend pool.
    pub pool: PoolHandle,
    /// Set when shutdown starts: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Bearer token; `None` leaves the API open (only allowed on loopback).
    pub token: Option<AdminToken>,
    /// The client registry.
    pub registry: RegistryHandle,
    /// The database, for backend writes (client writes go through the registry).
    pub db: actix::Addr<DbExecutor>,
    /// This instance's view of the cluster.
    pub cluster: ClusterHandle,
    /// `TOLLGATE_DB_TIMEOUT`: the database part of an admin write must be committed within it.
    pub db_timeout: std::time::Duration,
    /// The store's health: `/readyz` answers 503 while the SQLite file is lost.
    pub store: StoreHealth,
    /// What `/metrics` reads beyond the pool and the registry.
    pub metrics: MetricsState,
}

impl AdminState {
    /// The commit deadline of an admin write starting now.
    pub fn write_deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + self.db_timeout
    }
}

/// What an admin write may take beyond `TOLLGATE_DB_TIMEOUT`: the database executor gives up
/// a little after the timeout; this covers that and the hops between the actors.
pub const WRITE_MARGIN: std::time::Duration = std::time::Duration::from_millis(400);

/// Registers the admin routes. Each path is a resource, so that a wrong method gets `405`
/// with `Allow` rather than falling through to `404`; every error answer is JSON.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(ADMIN_BODY_LIMIT)).service(
        web::scope("")
            .wrap(from_fn(framework_errors::json_bodies))
            .wrap(from_fn(metrics::count_writes))
            .service(web::resource("/healthz").route(web::get().to(healthz)))
            .service(web::resource("/readyz").route(web::get().to(readyz)))
            .configure(metrics::configure)
            .service(web::resource("/openapi.json").route(web::get().to(openapi::openapi_json)))
            // The page holds no data: served without the token (its requests carry it).
            .configure(status_page::configure)
            .service(
                web::scope("")
                    .wrap(from_fn(auth::require_token))
                    .configure(backends::configure)
                    // Before the clients: `/clients/{client_id}` would match it too.
                    .configure(batch::configure)
                    .configure(clients::configure)
                    .configure(cluster::configure)
                    .configure(status::configure)
                    .default_service(web::to(not_found)),
            ),
    );
}

/// The body of a probe that passed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Probe {
    status: ProbeStatus,
}

/// `ok` from `/healthz`, `ready` from `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ProbeStatus {
    Ok,
    Ready,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "probes",
    security(()),
    responses((status = 200, description = "The process is up", body = Probe))
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Probe {
        status: ProbeStatus::Ok,
    })
}

fn rid(req: &HttpRequest) -> String {
    request_id(req.headers())
}

/// Readiness: the first health checks are done, the database is there, and no shutdown began.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "probes",
    security(()),
    responses(
        (status = 200, description = "Ready to take traffic", body = Probe),
        (status = 503, description = "`draining` (shutting down), `not_ready` (first health \
            checks running) or `database_unavailable` (the SQLite file was lost)", body = ErrorBody),
    )
)]
async fn readyz(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if state.draining.load(Ordering::Acquire) {
        error_body::respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "Shutting down",
            &rid(&req),
        )
    } else if let Some(problem) = state.store.problem() {
        error_body::respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            problem,
            &rid(&req),
        )
    } else if !state.pool.is_ready() {
        error_body::respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "First health checks still running",
            &rid(&req),
        )
    } else {
        HttpResponse::Ok().json(Probe {
            status: ProbeStatus::Ready,
        })
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    error_body::respond(
        StatusCode::NOT_FOUND,
        "not_found",
        "No such admin endpoint",
        &rid(&req),
    )
}
