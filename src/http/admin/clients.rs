//! `/clients`: CRUD of registered clients and their limits.

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde::{Deserialize, Deserializer, Serialize};

use super::{error::AdminError, json::parse_json, tokens, AdminState};
use crate::{
    ratelimit::{Quota, QuotaError},
    registry::{
        parse_nets, ClientInput, ClientPatch, ClientRegistry, ClientView, CreateClient, Created, PatchClient,
        PutClient, RegistryError, RemoveClient,
    },
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

/// Body of `POST /clients` and `PUT /clients/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    pub(super) client_id: Option<String>,
    capacity: u64,
    rate_per_sec: f64,
    api_key: Option<String>,
    ips: Option<Vec<String>>,
    name: Option<String>,
    enabled: Option<bool>,
    enforce: Option<bool>,
}

/// Body of `PATCH /clients/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPatchRequest {
    capacity: Option<u64>,
    rate_per_sec: Option<f64>,
    api_key: Option<String>,
    ips: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    enabled: Option<bool>,
    enforce: Option<bool>,
}

/// `Some(None)` for an explicit `null`, so that PATCH can clear a field.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A client as returned on creation: the only time its API key is shown.
#[derive(Debug, Serialize)]
pub struct CreatedResponse {
    #[serde(flatten)]
    client: ClientView,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
}

/// Whether `id` has the form of a client id: 1 to 64 characters of `A-Z a-z 0-9 . _ - ~`.
pub(super) fn is_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~'))
}

fn valid_id(id: &str) -> Result<(), AdminError> {
    if is_client_id(id) {
        Ok(())
    } else {
        Err(AdminError::invalid(
            "client_id",
            "1 to 64 characters of A-Z a-z 0-9 . _ - ~",
        ))
    }
}

fn valid_name(name: Option<String>) -> Result<Option<String>, AdminError> {
    match name {
        Some(n) if n.chars().count() > 200 || n.chars().any(char::is_control) => Err(AdminError::invalid(
            "name",
            "at most 200 characters, no control characters",
        )),
        other => Ok(other),
    }
}

fn valid_key(key: Option<String>) -> Result<Option<String>, AdminError> {
    match key {
        Some(k) if !(16..=256).contains(&k.len()) || !k.bytes().all(|b| b.is_ascii_graphic()) => Err(
            AdminError::invalid("api_key", "16 to 256 visible ASCII characters, no spaces"),
        ),
        other => Ok(other),
    }
}

fn valid_ips(ips: Option<Vec<String>>) -> Result<Option<Vec<ipnet::IpNet>>, AdminError> {
    let Some(ips) = ips else { return Ok(None) };
    if ips.len() > 100 {
        return Err(AdminError::invalid("ips", "at most 100 entries"));
    }
    let mut nets = Vec::with_capacity(ips.len());
    for (i, s) in ips.iter().enumerate() {
        let mut parsed = parse_nets(s).map_err(|m| AdminError::invalid(&format!("ips[{i}]"), m))?;
        match (parsed.pop(), parsed.is_empty()) {
            (Some(net), true) if !nets.contains(&net) => nets.push(net),
            _ => {
                return Err(AdminError::invalid(
                    &format!("ips[{i}]"),
                    "one address or CIDR block, listed once",
                ))
            }
        }
    }
    Ok(Some(nets))
}

fn valid_quota(capacity: u64, rate: f64) -> Result<Quota, AdminError> {
    Quota::new(capacity, rate).map_err(|e| match e {
        QuotaError::Capacity => AdminError::invalid("capacity", e.to_string()),
        QuotaError::Rate => AdminError::invalid("rate_per_sec", e.to_string()),
    })
}

pub(super) fn input(client_id: String, r: ClientRequest) -> Result<ClientInput, AdminError> {
    valid_id(&client_id)?;
    Ok(ClientInput {
        client_id,
        quota: valid_quota(r.capacity, r.rate_per_sec)?,
        name: valid_name(r.name)?,
        api_key: valid_key(r.api_key)?,
        ips: valid_ips(r.ips)?.unwrap_or_default(),
        enabled: r.enabled.unwrap_or(true),
        enforce: r.enforce.unwrap_or(true),
    })
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

async fn create(
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

async fn put(
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

async fn patch(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let r: ClientPatchRequest = parse_json(&req, &body)?;
    let patch = ClientPatch {
        capacity: r.capacity,
        rate_per_sec: r.rate_per_sec,
        api_key: valid_key(r.api_key)?,
        ips: valid_ips(r.ips)?,
        name: match r.name {
            Some(n) => Some(valid_name(n)?),
            None => None,
        },
        enabled: r.enabled,
        enforce: r.enforce,
    };
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

async fn delete(path: web::Path<String>, state: web::Data<AdminState>) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    ask(&state, RemoveClient(id.clone(), state.write_deadline()), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn get(path: web::Path<String>, state: web::Data<AdminState>) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let table = state.registry.table();
    let entry = table.get(&id).ok_or_else(|| AdminError::NotFound(id.clone()))?;
    let mut view = ClientView::of(&entry, state.registry.now(), state.registry.share().scope());
    tokens::fill(&state, std::slice::from_mut(&mut view)).await;
    Ok(HttpResponse::Ok().json(view))
}
