//! `GET /clients`: a page of clients ordered by id, by offset or by keyset.
//!
//! `?after=ID` starts after that id (keyset pagination): a walk that follows `next_after`
//! sees every client that exists throughout the walk exactly once, in id order, whatever is
//! created or deleted meanwhile; clients created or deleted during the walk appear if their
//! id is ahead of the cursor. `?offset=N` counts from the start of the current table and may
//! skip or repeat clients when others are created or deleted between two pages.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::{
    error::AdminError,
    openapi::{BadRequest, Unauthorized, ValidationFailed},
    AdminState,
};
use crate::registry::ClientView;

/// Clients per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 50;
/// Most clients per page.
const MAX_LIMIT: usize = 500;

/// A page of clients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ClientPage)]
struct Page {
    clients: Vec<ClientView>,
    /// All registered clients now.
    total: usize,
    limit: usize,
    /// The offset asked for (absent with `after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    offset: Option<usize>,
    /// The cursor asked for (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    after: Option<String>,
    /// The `after` of the next page; `null` on the last page.
    #[schema(required = true)]
    next_after: Option<String>,
}

fn valid_cursor(id: &str) -> Result<(), AdminError> {
    if super::client_body::is_client_id(id) {
        Ok(())
    } else {
        Err(AdminError::invalid(
            "after",
            "a client id: 1 to 64 characters of A-Z a-z 0-9 . _ - ~",
        ))
    }
}

/// `GET /clients?limit=&offset=` or `?limit=&after=`: default 50, at most 500, with the total
/// and the cursor of the next page.
#[utoipa::path(
    get,
    path = "/clients",
    operation_id = "list_clients",
    tag = "clients",
    params(
        ("limit" = Option<usize>, Query, description = "Clients per page (default 50)", minimum = 0, maximum = 500),
        ("offset" = Option<usize>, Query, description = "Clients to skip; not with `after`", minimum = 0),
        ("after" = Option<String>, Query, description = "Start after this client id (keyset pagination)",
            pattern = "^[A-Za-z0-9._~-]{1,64}$"),
    ),
    responses(
        (status = 200, description = "A page of clients ordered by id", body = Page),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 422, response = ValidationFailed),
    )
)]
pub(super) async fn list(
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let number = |name: &str, default: usize, max: usize| -> Result<usize, AdminError> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(AdminError::invalid(
                    name,
                    format!("a whole number from 0 to {max}"),
                )),
            },
        }
    };
    let limit = number("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = query.get("after").cloned();
    if let Some(a) = &after {
        valid_cursor(a)?;
        if query.contains_key("offset") {
            return Err(AdminError::invalid("offset", "cannot be combined with after"));
        }
    }
    let offset = number("offset", 0, usize::MAX)?;
    let table = state.registry.table();
    let (now, scope) = (state.registry.now(), state.registry.share().scope());
    // One more than the page tells whether a next page exists.
    let window = match &after {
        Some(a) => table.page_after(Some(a), limit + 1),
        None => table.page(offset, limit + 1),
    };
    let more = window.len() > limit;
    let page = &window[..window.len().min(limit)];
    let next_after = page.last().filter(|_| more).map(|e| e.id.to_string());
    let mut clients: Vec<ClientView> = page.iter().map(|e| ClientView::of(e, now, scope)).collect();
    super::tokens::fill(&state, &mut clients).await;
    Ok(HttpResponse::Ok().json(Page {
        clients,
        total: table.len(),
        limit,
        offset: after.is_none().then_some(offset),
        after,
        next_after,
    }))
}
