//! `GET /cluster`: the instances sharing this database, as this instance last read them.

use actix_web::{web, HttpResponse};

use super::AdminState;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/cluster").route(web::get().to(cluster)));
}

/// Served from the heartbeat's latest read: it answers at once even while the database is
/// down (then `"database": "unreachable"` and the ages keep growing).
async fn cluster(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok().json(state.cluster.view())
}
