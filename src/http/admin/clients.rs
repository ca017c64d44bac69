//! `/clients`: CRUD of registered clients and their limits.

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde::Serialize;

use super::{
    client_body::{self, input, ClientPatchRequest, ClientRequest, NewClientRequest},
    error::AdminError,
    json::parse_json,
    openapi::{
        BadRequest, Conflict, NotFound, PayloadTooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
        ValidationFailed,
    },
    tokens, AdminState,
};
use crate::registry::{
    ClientRegistry, ClientView, CreateClient, Created, PatchClient, PutClient, RegistryError, RemoveClient,
};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/clients")
            .route(web::post().to(create))
            .route(web::get().to(super::paging::list)),
    )
    .service(
        web::resource("/clients/{client_id}")
            .route(web::get().to(get))
            .route(web::put().to(put))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
}

/// A client as returned on creation: the only time its API key is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedResponse {
    #[serde(flatten)]
    client: ClientView,
    /// The API key, when one was given (shown this once).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    api_key: Option<String>,
}

/// Sends a change to the registry and maps both failure layers (mailbox, refusal). The wait
/// is bounded: a change still queued when the bound passes is answered 503 and dropped
/// unhandled (actix skips a message whose sender is gone), so it never lands later.
async fn ask<M, R>(state: &AdminState, msg: M, id: &str) -> Result<R, AdminError>
where
    M: actix::Message<Result = Result<R, RegistryError>> + Send + 'static,
    R: Send + 'static,
    ClientRegistry: actix::Handler<M>,
    <ClientRegistry as actix::Actor>::Context: actix::dev::ToEnvelope<ClientRegistry, M>,
{
    let sent = state.registry.addr().send(msg);
    let bound = state.db_timeout + super::WRITE_MARGIN;
    actix_rt::time::timeout(bound, sent)
        .await
        .map_err(|_| AdminError::Unavailable(format!("no answer within {bound:?}")))?
        .map_err(|e| AdminError::Unavailable(e.to_string()))?
        .map_err(|e| AdminError::from_registry(e, id))
}

fn location(id: &str) -> String {
    format!("/clients/{id}")
}

impl From<Created> for CreatedResponse {
    fn from(c: Created) -> CreatedResponse {
        CreatedResponse {
            client: c.view,
            api_key: c.api_key,
        }
    }
}

fn created_response(c: Created) -> HttpResponse {
    let status = if c.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut b = HttpResponse::build(status);
    if c.created {
        b.insert_header((header::LOCATION, location(&c.view.client_id)));
    }
    b.json(CreatedResponse {
        client: c.view,
        api_key: c.api_key,
    })
}

/// Registers a client.
#[utoipa::path(
    post,
    path = "/clients",
    operation_id = "create_client",
    tag = "clients",
    request_body = NewClientRequest,
    responses(
        (status = 201, description = "Registered; `Location` is its URL", body = CreatedResponse,
            headers(("Location" = String, description = "`/clients/{client_id}`"))),
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
    let r: ClientRequest = parse_json(&req, &body)?;
    let id = r
        .client_id
        .clone()
        .ok_or_else(|| AdminError::invalid("client_id", "missing field `client_id`"))?;
    let input = input(id.clone(), r)?;
    let mut created = ask(&state, CreateClient(input, state.write_deadline()), &id).await?;
    tokens::fill_created(&state, &mut created.view);
    Ok(created_response(created))
}

/// Registers or replaces a client (every field not given takes its default).
#[utoipa::path(
    put,
    path = "/clients/{client_id}",
    operation_id = "put_client",
    tag = "clients",
    params(("client_id" = String, Path, description = "Client id: 1 to 64 characters of `A-Z a-z 0-9 . _ - ~`",
        pattern = "^[A-Za-z0-9._~-]{1,64}$")),
    request_body = ClientRequest,
    responses(
        (status = 200, description = "Replaced", body = CreatedResponse),
        (status = 201, description = "Registered; `Location` is its URL", body = CreatedResponse,
            headers(("Location" = String, description = "`/clients/{client_id}`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn put(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let r: ClientRequest = parse_json(&req, &body)?;
    if r.client_id.as_ref().is_some_and(|b| *b != id) {
        return Err(AdminError::invalid(
            "client_id",
            "differs from the client id in the path",
        ));
    }
    let input = input(id.clone(), r)?;
    let mut done = ask(&state, PutClient(input, state.write_deadline()), &id).await?;
    if done.created {
        tokens::fill_created(&state, &mut done.view);
    } else {
        tokens::fill(&state, std::slice::from_mut(&mut done.view)).await;
    }
    Ok(created_response(done))
}

/// Changes some fields of a client.
#[utoipa::path(
    patch,
    path = "/clients/{client_id}",
    operation_id = "patch_client",
    tag = "clients",
    params(("client_id" = String, Path, description = "Client id: 1 to 64 characters of `A-Z a-z 0-9 . _ - ~`",
        pattern = "^[A-Za-z0-9._~-]{1,64}$")),
    request_body = ClientPatchRequest,
    responses(
        (status = 200, description = "The client as changed", body = ClientView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
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
    let r: ClientPatchRequest = parse_json(&req, &body)?;
    let patch = client_body::patch(r)?;
    let mut view = ask(
        &state,
        PatchClient {
            client_id: id.clone(),
            patch,
            deadline: state.write_deadline(),
        },
        &id,
    )
    .await?;
    tokens::fill(&state, std::slice::from_mut(&mut view)).await;
    Ok(HttpResponse::Ok().json(view))
}

/// Removes a client.
#[utoipa::path(
    delete,
    path = "/clients/{client_id}",
    operation_id = "delete_client",
    tag = "clients",
    params(("client_id" = String, Path, description = "Client id: 1 to 64 characters of `A-Z a-z 0-9 . _ - ~`",
        pattern = "^[A-Za-z0-9._~-]{1,64}$")),
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
    ask(&state, RemoveClient(id.clone(), state.write_deadline()), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One client, with its tokens and counts now.
#[utoipa::path(
    get,
    path = "/clients/{client_id}",
    operation_id = "get_client",
    tag = "clients",
    params(("client_id" = String, Path, description = "Client id: 1 to 64 characters of `A-Z a-z 0-9 . _ - ~`",
        pattern = "^[A-Za-z0-9._~-]{1,64}$")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub(super) async fn get(
    path: web::Path<String>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let table = state.registry.table();
    let entry = table.get(&id).ok_or_else(|| AdminError::NotFound(id.clone()))?;
    let mut view = ClientView::of(&entry, state.registry.now(), state.registry.share().scope());
    tokens::fill(&state, std::slice::from_mut(&mut view)).await;
    Ok(HttpResponse::Ok().json(view))
}
