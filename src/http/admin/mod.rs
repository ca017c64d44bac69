//! The admin listener: liveness, readiness, backend status and client CRUD, behind a bearer
//! token.

mod clients;
mod error;

pub use error::AdminError;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::{from_fn, Next},
    web, HttpRequest, HttpResponse,
};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{error_body, http::proxy::request_id, pool::PoolHandle, registry::RegistryHandle};

/// The admin listener and its credentials.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Admin listener address.
    pub listen: std::net::SocketAddr,
    /// Bearer token; `None` leaves the API open (only allowed on loopback).
    pub token: Option<String>,
}

/// What the admin handlers share.
pub struct AdminState {
    /// The backend pool.
    pub pool: PoolHandle,
    /// Set when shutdown starts: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Bearer token; `None` leaves the API open (only allowed on loopback).
    pub token: Option<String>,
    /// The client registry.
    pub registry: RegistryHandle,
}

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .service(
            web::scope("")
                .wrap(from_fn(require_token))
                .route("/backends", web::get().to(backends))
                .configure(clients::configure)
                .default_service(web::to(not_found)),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

fn rid(req: &HttpRequest) -> String {
    request_id(req.headers())
}

async fn readyz(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if state.draining.load(Ordering::Acquire) {
        error_body::respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "Shutting down",
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
        HttpResponse::Ok().json(json!({"status": "ready"}))
    }
}

async fn backends(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    match state.pool.addr().send(crate::pool::GetBackends).await {
        Ok(list) => {
            HttpResponse::Ok().json(json!({"strategy": state.pool.strategy().to_string(), "backends": list}))
        }
        Err(e) => {
            log::error!("backend pool did not answer: {e}");
            error_body::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Backend pool unavailable",
                &rid(&req),
            )
        }
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

/// Refuses requests without the configured bearer token (compared in constant time).
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<AdminState>>()
        .and_then(|s| s.token.clone());
    if let Some(expected) = expected {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            let request_id = request_id(req.headers());
            let resp = error_body::builder(StatusCode::UNAUTHORIZED, &request_id)
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"tollgate-admin\""))
                .json(error_body::ErrorBody {
                    code: 401,
                    message: "Missing or wrong bearer token",
                    error: "unauthorized",
                    request_id: &request_id,
                });
            return Ok(req.into_response(resp));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
