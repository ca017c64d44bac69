//! `/backends`: the backend list and its health, and its changes at run time. A write is
//! committed to the database with its change row (so every instance applies it), then
//! applied to this instance's pool before the answer, so that a `GET /backends` right after
//! shows it.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{error::AdminError, json::parse_json, AdminState};
use crate::{
    backend_list::def_from_row,
    pool::{ApplyBackendChanges, BackendChange, BackendSpec, BackendStatus, GetBackends, PoolStatus},
    store::{BackendWrite, BackendWritten, StoreError, WriteBackend},
};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/backends")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/backends/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
}

/// Body of `POST /backends`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendRequest {
    url: String,
    weight: Option<u32>,
}

/// Body of `PATCH /backends/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendPatchRequest {
    weight: Option<u32>,
    enabled: Option<bool>,
}

fn valid_weight(weight: u32) -> Result<i64, AdminError> {
    if (1..=BackendSpec::MAX_WEIGHT).contains(&weight) {
        Ok(i64::from(weight))
    } else {
        Err(AdminError::invalid(
            "weight",
            format!("a whole number from 1 to {}", BackendSpec::MAX_WEIGHT),
        ))
    }
}

async fn status(state: &AdminState) -> Result<PoolStatus, AdminError> {
    state
        .pool
        .addr()
        .send(GetBackends)
        .await
        .map_err(|e| AdminError::PoolUnavailable(e.to_string()))
}

async fn one(state: &AdminState, id: &str) -> Result<BackendStatus, AdminError> {
    status(state)
        .await?
        .backends
        .into_iter()
        .find(|b| b.id == id)
        .ok_or_else(|| AdminError::BackendNotFound(id.to_string()))
}

async fn list(state: web::Data<AdminState>) -> Result<HttpResponse, AdminError> {
    Ok(HttpResponse::Ok().json(status(&state).await?))
}

async fn get(path: web::Path<String>, state: web::Data<AdminState>) -> Result<HttpResponse, AdminError> {
    Ok(HttpResponse::Ok().json(one(&state, &path).await?))
}

/// Commits `write` (bounded like every admin write), then applies it to this instance's pool.
/// `None`: no such backend.
async fn write(state: &AdminState, write: BackendWrite) -> Result<Option<String>, AdminError> {
    let sent = state.db.send(WriteBackend {
        write,
        at: crate::registry::unix_ms(),
        deadline: state.write_deadline(),
    });
    let bound = state.db_timeout + super::WRITE_MARGIN;
    let written = actix_rt::time::timeout(bound, sent)
        .await
        .map_err(|_| AdminError::Unavailable(format!("no answer within {bound:?}")))?
        .map_err(|e| AdminError::Unavailable(e.to_string()))?
        .map_err(|e| match e {
            StoreError::Conflict { field, message } => AdminError::Conflict {
                field: field.into(),
                message,
            },
            other => AdminError::Unavailable(other.to_string()),
        })?;
    let Some(BackendWritten { row, id, version }) = written else {
        return Ok(None);
    };
    let change = match row.map(def_from_row) {
        Some(Ok(def)) => BackendChange::Upsert(def),
        // Validated before the write: a refusal here is a bug, and the change log still
        // carries the write to the pool.
        Some(Err(e)) => return Err(AdminError::PoolUnavailable(e)),
        None => BackendChange::Delete(id.clone()),
    };
    state
        .pool
        .addr()
        .send(ApplyBackendChanges {
            changes: vec![(version, change)],
            remote: false,
        })
        .await
        .map_err(|e| AdminError::PoolUnavailable(e.to_string()))?;
    Ok(Some(id))
}

async fn create(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let r: BackendRequest = parse_json(&req, &body)?;
    let url = BackendSpec::parse_url(&r.url).map_err(|m| AdminError::invalid("url", m))?;
    let weight = valid_weight(r.weight.unwrap_or(1))?;
    let id = write(&state, BackendWrite::Insert { url, weight })
        .await?
        .ok_or_else(|| AdminError::PoolUnavailable("the new backend was not stored".into()))?;
    let view = one(&state, &id).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/backends/{id}")))
        .json(view))
}

async fn patch(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let r: BackendPatchRequest = parse_json(&req, &body)?;
    if r.weight.is_none() && r.enabled.is_none() {
        return Err(AdminError::invalid("body", "give weight and/or enabled"));
    }
    let weight = r.weight.map(valid_weight).transpose()?;
    let update = BackendWrite::Update {
        id: id.clone(),
        weight,
        enabled: r.enabled,
    };
    write(&state, update)
        .await?
        .ok_or_else(|| AdminError::BackendNotFound(id.clone()))?;
    Ok(HttpResponse::Ok().json(one(&state, &id).await?))
}

async fn delete(path: web::Path<String>, state: web::Data<AdminState>) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    write(&state, BackendWrite::Delete(id.clone()))
        .await?
        .ok_or(AdminError::BackendNotFound(id))?;
    Ok(HttpResponse::NoContent().finish())
}
