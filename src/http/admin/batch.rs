//! `POST /clients/batch`: up to [`MAX_BATCH`] clients in one transaction, all or nothing.
//!
//! Each item is checked like the body of `POST /clients` (the same parser and validation);
//! a refusal names every bad item by index and field (`items[3].capacity: …`), with `422`
//! for invalid items or items repeating one another and `409` for ids, keys or addresses
//! registered already.

use std::collections::HashMap;

use actix_web::{guard, http::header, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::{
    openapi::{schema::ArrayBuilder, RefOr, Schema},
    PartialSchema, ToSchema,
};

use super::{
    client_body::{self, ClientRequest, NewClientRequest},
    clients::CreatedResponse,
    error::AdminError,
    json,
    openapi::{
        BadRequest, Conflict, PayloadTooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
        ValidationFailed,
    },
    AdminState,
};
use crate::registry::{BatchError, ClientInput, CreateClients};

/// Most clients in one batch.
pub const MAX_BATCH: usize = 10_000;

/// Largest batch body: 10,000 clients with names, keys and a few addresses each.
pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Most problems listed in one refusal; the rest are counted.
const MAX_LISTED: usize = 100;

/// Registers the route. The resource is guarded on `POST`, so other methods on
/// `/clients/batch` still reach a client whose id is `batch`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/clients/batch")
            .guard(guard::Post())
            .app_data(web::PayloadConfig::new(BATCH_BODY_LIMIT))
            .route(web::post().to(create_batch)),
    );
}

/// The schema of a batch body: 1 to [`MAX_BATCH`] clients, each a [`NewClientRequest`].
struct BatchRequest;

impl PartialSchema for BatchRequest {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(NewClientRequest::schema())
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH))
            .into()
    }
}

impl ToSchema for BatchRequest {}

/// Body of a created batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BatchResponse {
    /// How many clients were created.
    #[schema(minimum = 1, maximum = 10_000)]
    created: usize,
    /// Each one, with its API key (shown this once), in the order of the request.
    clients: Vec<CreatedResponse>,
}

/// Joins `(path, message)` problems into one error: the first names the field, the rest
/// follow in the message.
fn joined(problems: Vec<(String, String)>, conflict: bool) -> AdminError {
    let total = problems.len();
    let mut listed = problems.into_iter().take(MAX_LISTED);
    let (field, mut message) = listed
        .next()
        .unwrap_or_else(|| ("items".into(), "refused".into()));
    for (path, m) in listed {
        message.push_str(&format!("; {path}: {m}"));
    }
    if total > MAX_LISTED {
        message.push_str(&format!("; and {} more", total - MAX_LISTED));
    }
    if conflict {
        AdminError::Conflict { field, message }
    } else {
        AdminError::Invalid { field, message }
    }
}

/// Records that item `index` repeats an earlier one in `field`.
fn repeated<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    key: K,
    index: usize,
    field: &str,
    problems: &mut Vec<(String, String)>,
) {
    if let Some(first) = seen.insert(key, index) {
        problems.push((
            format!("items[{index}].{field}"),
            format!("repeats items[{first}]"),
        ));
    }
}

/// Parses and validates every item; all problems at once, not only the first.
fn validate(req: &HttpRequest, body: &[u8]) -> Result<Vec<ClientInput>, AdminError> {
    json::require_json(req)?;
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            AdminError::MalformedJson(e.to_string())
        } else {
            AdminError::invalid("body", "expected a JSON array of clients")
        }
    })?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(AdminError::invalid(
            "body",
            format!("from 1 to {MAX_BATCH} clients per batch, got {}", items.len()),
        ));
    }
    let mut problems = Vec::new();
    let mut inputs = Vec::with_capacity(items.len());
    let (mut ids, mut keys, mut nets) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (i, raw) in items.iter().enumerate() {
        let parsed = json::parse_json::<ClientRequest>(req, raw.get().as_bytes()).and_then(|r| {
            let id = r
                .client_id
                .clone()
                .ok_or_else(|| AdminError::invalid("client_id", "missing field `client_id`"))?;
            client_body::input(id, r)
        });
        match parsed {
            Ok(input) => {
                repeated(&mut ids, input.client_id.clone(), i, "client_id", &mut problems);
                if let Some(key) = &input.api_key {
                    repeated(&mut keys, key.clone(), i, "api_key", &mut problems);
                }
                for net in &input.ips {
                    repeated(&mut nets, *net, i, "ips", &mut problems);
                }
                inputs.push(input);
            }
            Err(AdminError::Invalid { field, message }) => {
                let path = if field == "body" {
                    format!("items[{i}]")
                } else {
                    format!("items[{i}].{field}")
                };
                problems.push((path, message));
            }
            Err(other) => return Err(other),
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(joined(problems, false))
    }
}

/// Registers up to 10,000 clients in one transaction, all or none.
#[utoipa::path(
    post,
    path = "/clients/batch",
    operation_id = "create_clients",
    tag = "clients",
    request_body(
        content = BatchRequest,
        description = "1 to 10,000 clients, each as the body of `POST /clients` (`client_id` \
            required), no two with the same id, API key or address"
    ),
    responses(
        (status = 201, description = "All registered", body = BatchResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn create_batch(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let inputs = validate(&req, &body)?;
    // A batch of 10,000 is 10,000 writes in one transaction: it gets the database timeout plus
    // a millisecond per client.
    let deadline = state.write_deadline() + std::time::Duration::from_millis(inputs.len() as u64);
    let created = state
        .registry
        .addr()
        .send(CreateClients(inputs, deadline))
        .await
        .map_err(|e| AdminError::Unavailable(e.to_string()))?
        .map_err(|e| match e {
            BatchError::Taken(problems) => joined(
                problems
                    .into_iter()
                    .map(|p| (format!("items[{}].{}", p.index, p.field), p.message))
                    .collect(),
                true,
            ),
            BatchError::Raced(cause) => {
                log::info!("batch refused by the database: {cause}");
                AdminError::Conflict {
                    field: "items".into(),
                    message: "an id or API key of the batch was registered meanwhile; nothing was created"
                        .into(),
                }
            }
            BatchError::Unavailable(m) => AdminError::Unavailable(m),
        })?;
    let clients: Vec<CreatedResponse> = created
        .into_iter()
        .map(|mut c| {
            super::tokens::fill_created(&state, &mut c.view);
            CreatedResponse::from(c)
        })
        .collect();
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(BatchResponse {
            created: clients.len(),
            clients,
        }))
}
