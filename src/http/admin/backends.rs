//! `/backends`: the backend list and its health, and its changes at run time. A write is
//! committed to the database with its change row (so every instance applies it), then
//! applied to this instance's pool before the answer, so that a `GET /backends` right after
//! shows it.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{
    openapi::{RefOr, Schema},
    PartialSchema, ToSchema,
};

use super::{
    error::AdminError,
    json::parse_json,
    openapi::{
        BadRequest, Conflict, NotFound, PayloadTooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
        ValidationFailed,
    },
    AdminState,
};
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BackendRequest {
    /// Base URL: `http://host[:port][/prefix]`, no query, fragment or user info.
    #[schema(example = "http://10.0.0.5:9000", pattern = "^[Hh][Tt][Tt][Pp]://[^?#@]+$")]
    url: String,
    /// Relative share of traffic (default 1).
    #[schema(nullable = false, minimum = 1, maximum = 1000)]
    weight: Option<u32>,
}

/// Body of `PATCH /backends/{id}`: at least one of the fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BackendPatchRequest {
    /// Relative share of traffic.
    #[schema(nullable = false, minimum = 1, maximum = 1000)]
    weight: Option<u32>,
    /// `false`: the backend takes no new requests.
    #[schema(nullable = false)]
    enabled: Option<bool>,
}

/// The schema of a `PATCH /backends/{id}` body: [`BackendPatchRequest`]'s, with at least one
/// property. (utoipa-gen 5.5's `#[schema(min_properties = 1)]` writes `maxProperties: 1`.)
struct BackendPatch;

impl PartialSchema for BackendPatch {
    fn schema() -> RefOr<Schema> {
        let mut schema = BackendPatchRequest::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.min_properties = Some(1);
        }
        schema
    }
}

impl ToSchema for BackendPatch {
    fn name() -> std::borrow::Cow<'static, str> {
        "BackendPatchRequest".into()
    }
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

/// The backends, their health and traffic, and the selection strategy.
#[utoipa::path(
    get,
    path = "/backends",
    operation_id = "list_backends",
    tag = "backends",
    responses(
        (status = 200, description = "Every listed backend", body = PoolStatus),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn list(state: web::Data<AdminState>) -> Result<HttpResponse, AdminError> {
    Ok(HttpResponse::Ok().json(status(&state).await?))
}

/// One backend.
#[utoipa::path(
    get,
    path = "/backends/{id}",
    operation_id = "get_backend",
    tag = "backends",
    params(("id" = String, Path, description = "Backend id (`b-…`, or `demo-N` with --demo)")),
    responses(
        (status = 200, description = "The backend", body = BackendStatus),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get(
    path: web::Path<String>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
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

/// Adds a backend to every instance's list.
#[utoipa::path(
    post,
    path = "/backends",
    operation_id = "create_backend",
    tag = "backends",
    request_body = BackendRequest,
    responses(
        (status = 201, description = "Added; `Location` is its URL", body = BackendStatus,
            headers(("Location" = String, description = "`/backends/{id}`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn create(
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

/// Changes a backend's weight or takes it in or out of rotation.
#[utoipa::path(
    patch,
    path = "/backends/{id}",
    operation_id = "patch_backend",
    tag = "backends",
    params(("id" = String, Path, description = "Backend id")),
    request_body = BackendPatch,
    responses(
        (status = 200, description = "The backend as changed", body = BackendStatus),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn patch(
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

/// Removes a backend: it takes no new requests and leaves the list once idle.
#[utoipa::path(
    delete,
    path = "/backends/{id}",
    operation_id = "delete_backend",
    tag = "backends",
    params(("id" = String, Path, description = "Backend id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn delete(
    path: web::Path<String>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    write(&state, BackendWrite::Delete(id.clone()))
        .await?
        .ok_or(AdminError::BackendNotFound(id))?;
    Ok(HttpResponse::NoContent().finish())
}
