//! `GET /metrics`: Prometheus metrics of this instance (OpenMetrics text), and the counting
//! of admin writes.

use std::{sync::Arc, time::Instant};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{header, Method, StatusCode},
    middleware::Next,
    web, HttpRequest, HttpResponse,
};

use super::{auth, openapi::Unauthorized, AdminState};
use crate::{
    error_body::{self, ErrorBody},
    metrics::{
        sample_process, AdminWrites, BackendSample, ClientCounts, MetricsSettings, Scrape, TrafficSet,
        CONTENT_TYPE,
    },
    pool::GetBackends,
    registry::RegistryHandle,
    request_id::request_id,
};

/// What `/metrics` reads beyond the pool and the registry.
pub struct MetricsState {
    /// `TOLLGATE_METRICS*`.
    pub settings: MetricsSettings,
    /// Rate limiting on: decisions and clients are shown.
    pub rate_limit: bool,
    /// The proxy workers' counters.
    pub traffic: Arc<TrafficSet>,
    /// Admin writes by result.
    pub admin_writes: AdminWrites,
    /// The last scan for the busiest clients and when it started. A scan of a million clients
    /// takes tens of milliseconds: one runs at a time, and the scrapes that queued behind it
    /// share the next one (so any number of scrapers, or anyone with public metrics, keeps
    /// at most one core busy, and no scrape sees a scan older than itself).
    pub busiest: futures_util::lock::Mutex<Option<(Instant, Arc<Vec<ClientCounts>>)>>,
}

impl MetricsState {
    /// Metrics state for these settings, with no scan made yet.
    pub fn new(settings: MetricsSettings, rate_limit: bool, traffic: Arc<TrafficSet>) -> MetricsState {
        MetricsState {
            settings,
            rate_limit,
            traffic,
            admin_writes: AdminWrites::default(),
            busiest: futures_util::lock::Mutex::new(None),
        }
    }

    /// The busiest clients, from a scan that started after this scrape arrived: the one
    /// that ran while this waited, else a new one.
    async fn busiest(&self, registry: &RegistryHandle) -> Arc<Vec<ClientCounts>> {
        let arrived = Instant::now();
        let mut last = self.busiest.lock().await;
        if let Some((started, clients)) = last.as_ref() {
            if *started >= arrived {
                return clients.clone();
            }
        }
        let started = Instant::now();
        let (registry, limit) = (registry.clone(), self.settings.client_limit);
        let clients = Arc::new(
            actix_rt::task::spawn_blocking(move || registry.busiest(limit))
                .await
                .unwrap_or_default(),
        );
        *last = Some((started, clients.clone()));
        clients
    }
}

/// Registers the route: next to the probes, as the token is checked here (it is optional
/// for `/metrics` with `TOLLGATE_METRICS_PUBLIC`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// Prometheus metrics of this instance.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "metrics",
    description = "Prometheus metrics of this instance in the OpenMetrics text format. Needs the \
        token unless TOLLGATE_METRICS_PUBLIC=true.",
    responses(
        (status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String),
        (status = 401, response = Unauthorized),
        (status = 404, description = "Metrics are off (TOLLGATE_METRICS=false)", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
    )
)]
pub(super) async fn metrics(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    let m = &state.metrics;
    let rid = request_id(req.headers());
    if !m.settings.enabled {
        return error_body::respond(
            StatusCode::NOT_FOUND,
            "not_found",
            "Metrics are off (TOLLGATE_METRICS=false)",
            &rid,
        );
    }
    if !m.settings.public {
        if let Some(refused) = auth::refusal(req.headers(), state.token.as_ref()) {
            return refused;
        }
    }
    let pool = match state.pool.addr().send(GetBackends).await {
        Ok(status) => status,
        Err(e) => {
            log::warn!("metrics: the backend pool did not answer: {e}");
            return error_body::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Shutting down",
                &rid,
            );
        }
    };
    let clients = if m.rate_limit {
        m.busiest(&state.registry).await
    } else {
        Arc::default()
    };
    let scrape = Scrape {
        backends: pool
            .backends
            .into_iter()
            .map(|b| BackendSample {
                up: b.state == "healthy",
                in_flight: b.in_flight as u64,
                answers: b.answers,
                failures: b.failures_by_kind,
                url: b.url,
            })
            .collect(),
        traffic: m.traffic.totals(),
        decisions: m.rate_limit.then(|| state.registry.decisions().snapshot()),
        clients,
        write_behind: m.rate_limit.then(|| {
            let w = state.registry.write_behind();
            (w.counts(), w.duration.snapshot())
        }),
        admin_writes: m.admin_writes.snapshot(),
        process: sample_process(),
    };
    match scrape.render() {
        Ok(text) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
            .body(text),
        Err(e) => {
            log::warn!("metrics: encoding failed: {e}");
            error_body::respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                &rid,
            )
        }
    }
}

/// Counts admin writes by result (`tollgate_admin_writes_total`).
pub(super) async fn count_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let state = write
        .then(|| req.app_data::<web::Data<AdminState>>().cloned())
        .flatten();
    let resp = next.call(req).await?;
    if let Some(state) = state {
        state.metrics.admin_writes.count(resp.status().as_u16());
    }
    Ok(resp)
}
