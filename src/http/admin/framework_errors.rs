//! actix's own error answers on the admin listener, rewritten into the one JSON error body.
//!
//! A resource answers a method it has no route for with an empty `405` (with `Allow`), and a
//! body extractor over its limit with a plain-text `413`; neither passes through
//! [`super::AdminError`]. This middleware gives them, and any other non-JSON error answer,
//! the JSON body every gateway error has. The handlers' own errors are JSON already and pass
//! untouched.

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::Next,
    HttpResponse,
};

use crate::{error_body, request_id::request_id};

/// Largest admin request body; a `POST`/`PUT`/`PATCH /clients` body is a few hundred bytes.
pub const ADMIN_BODY_LIMIT: usize = 256 * 1024;

/// The `error` name and message of an error status the framework answered by itself: the
/// names docs/forwarding.md ("Errors") lists, else the reason phrase in snake case (`408` → `request_timeout`).
fn describe(status: StatusCode) -> (String, String) {
    let reason = status.canonical_reason().unwrap_or("Error");
    match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed".to_string(),
            "Method not allowed on this endpoint; see the Allow header".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large".to_string(),
            format!(
                "Request body too large: at most {} KiB ({} MiB for POST /clients/batch)",
                ADMIN_BODY_LIMIT / 1024,
                super::BATCH_BODY_LIMIT / (1024 * 1024)
            ),
        ),
        StatusCode::BAD_REQUEST => (
            "bad_request".to_string(),
            "Malformed request: its query or body could not be read".to_string(),
        ),
        _ => (
            reason.to_ascii_lowercase().replace([' ', '-'], "_"),
            reason.to_string(),
        ),
    }
}

fn is_json(response: &HttpResponse) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// Rewrites error answers that are not JSON, keeping their status and `Allow` header.
pub(super) async fn json_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Handler and extractor errors arrive as responses (the route converts them); an `Err`
    // here could only come from a middleware, and none below makes one.
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(res.response()) {
        return Ok(res);
    }
    let (req, old) = res.into_parts();
    let (error, message) = describe(status);
    let mut resp = error_body::respond(status, &error, &message, &request_id(req.headers()));
    if let Some(allow) = old.headers().get(header::ALLOW) {
        resp.headers_mut().insert(header::ALLOW, allow.clone());
    }
    Ok(ServiceResponse::new(req, resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_framework_status_has_a_stable_name() {
        for (status, name) in [
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            (StatusCode::BAD_REQUEST, "bad_request"),
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_header_fields_too_large",
            ),
        ] {
            let (error, message) = describe(status);
            assert_eq!(error, name, "{status}");
            assert!(!message.is_empty(), "{status}");
        }
        assert!(describe(StatusCode::PAYLOAD_TOO_LARGE).1.contains("256 KiB"));
    }
}
