//! `GET /cluster`: the instances sharing this database, as this instance last read them, and
//! how this instance limits clients now.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::{openapi::Unauthorized, AdminState};
use crate::{cluster::ClusterView, registry::LimitsMode};

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/cluster").route(web::get().to(cluster)));
}

/// How this instance limits registered clients now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Limits {
    /// `cluster` (leasing from the rows), `degraded` (the database is away: shares), `local`.
    mode: LimitsMode,
    /// The instances alive at the last heartbeat that reached the database: a share is
    /// `1/live_instances` of a client's capacity and rate, and of the anonymous defaults.
    live_instances: u32,
    /// Lease statements this instance sent since it started, on ticks (at most one per
    /// `TOLLGATE_LEASE_TICK`) and on demand (requests waiting, coalesced).
    lease_statements: LeaseStatements,
}

/// Lease statements sent since start.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LeaseStatements {
    tick: u64,
    on_demand: u64,
}

/// The instances and how this one limits clients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ClusterResponse)]
struct Body {
    #[serde(flatten)]
    view: ClusterView,
    limits: Limits,
}

/// Served from the heartbeat's latest read: it answers at once even while the database is
/// down (then `"database": "unreachable"` and the ages keep growing).
#[utoipa::path(
    get,
    path = "/cluster",
    operation_id = "get_cluster",
    tag = "cluster",
    responses(
        (status = 200, description = "The instances and the limits mode", body = Body),
        (status = 401, response = Unauthorized),
    )
)]
pub(super) async fn cluster(state: web::Data<AdminState>) -> HttpResponse {
    let share = state.registry.share();
    HttpResponse::Ok().json(Body {
        view: state.cluster.view(),
        limits: Limits {
            mode: share.mode(),
            live_instances: share.live(),
            lease_statements: {
                let (tick, on_demand) = share.statements();
                LeaseStatements { tick, on_demand }
            },
        },
    })
}
