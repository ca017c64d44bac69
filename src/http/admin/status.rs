//! `GET /status`: what the status page shows, as JSON (behind the token like the rest of the
//! API). The sampler keeps the numbers; this adds the busiest clients' tokens.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};

use super::{tokens, AdminState};
use crate::{
    error_body,
    registry::ClientView,
    request_id::request_id,
    status::{ClientStatus, StatusHandle},
};

/// Registers the route (inside the authenticated scope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/status").route(web::get().to(status)));
}

/// Answers from memory (the sampler's latest numbers); only with cluster-wide limits do the
/// clients' tokens take one query of at most ten rows.
#[utoipa::path(
    get,
    path = "/status",
    operation_id = "get_status",
    tag = "status",
    responses(
        (status = 200, description = "What the status page shows", body = crate::status::StatusReport),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, description = "The sampler did not answer (shutting down)", body = crate::error_body::ErrorBody),
    )
)]
pub(super) async fn status(
    req: HttpRequest,
    state: web::Data<AdminState>,
    sampler: web::Data<StatusHandle>,
) -> HttpResponse {
    let readings = match sampler.read().await {
        Ok(r) => r,
        Err(e) => {
            log::warn!("status: the sampler did not answer: {e}");
            return error_body::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Status not available",
                &request_id(req.headers()),
            );
        }
    };
    let mut report = readings.report;
    if report.limits.is_some() {
        let (table, now, scope) = (
            state.registry.table(),
            state.registry.now(),
            state.registry.share().scope(),
        );
        // A client deleted since the scan is left out.
        let (mut views, rates): (Vec<ClientView>, Vec<_>) = readings
            .clients
            .iter()
            .filter_map(|r| table.get(&r.id).map(|e| (ClientView::of(&e, now, scope), r)))
            .unzip();
        tokens::fill(&state, &mut views).await;
        report.clients = Some(
            views
                .into_iter()
                .zip(rates)
                .map(|(v, r)| ClientStatus::new(v, r))
                .collect(),
        );
    }
    HttpResponse::Ok().json(report)
}
