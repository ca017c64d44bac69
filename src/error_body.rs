//! The one JSON error body of every error the gateway itself produces.
//!
//! `{"code": 503, "message": "No healthy backend", "error": "no_healthy_backend", "request_id": "…"}`:
//! `code` and `message` are the fields of the original specification; `error` is a stable
//! machine-readable name; `request_id` matches the `X-Request-Id` response header.

use actix_web::{http::StatusCode, HttpResponse, HttpResponseBuilder};
use serde::Serialize;

/// Name of the request-id header, both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// The error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "code": 422,
    "message": "capacity: must be a whole number from 1 to 1000000",
    "error": "validation_failed",
    "request_id": "3f2c1a9e-8d4b-4e0f-9a61-2b7c5d0e4f13"
}))]
pub struct ErrorBody<'a> {
    /// HTTP status code, repeated in the body.
    #[schema(minimum = 400, maximum = 599)]
    pub code: u16,
    /// Human-readable message.
    pub message: &'a str,
    /// Stable machine-readable error name.
    #[schema(example = "validation_failed")]
    pub error: &'a str,
    /// The request's id.
    pub request_id: &'a str,
}

/// A response builder with the status and request id set, for callers that add headers.
pub fn builder(status: StatusCode, request_id: &str) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    if !request_id.is_empty() {
        b.insert_header((
            actix_web::http::header::HeaderName::from_static(REQUEST_ID),
            request_id,
        ));
    }
    b
}

/// The complete error response.
pub fn respond(status: StatusCode, error: &str, message: &str, request_id: &str) -> HttpResponse {
    builder(status, request_id).json(ErrorBody {
        code: status.as_u16(),
        message,
        error,
        request_id,
    })
}
