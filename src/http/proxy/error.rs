//! `ProxyError`: everything that can go wrong on the proxy path, mapped to HTTP in one place.

use actix_web::{http::StatusCode, HttpResponse};

use crate::error_body;

/// A failure of the gateway on the proxy path (never a backend's own error response, which
/// passes through untouched).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No backend is healthy; answered without connecting anywhere.
    #[error("no healthy backend")]
    NoHealthyBackend,
    /// Connecting to, or talking to, the backend failed.
    #[error("backend {backend} failed: {cause}")]
    UpstreamFailed {
        /// Backend base URL.
        backend: String,
        /// What went wrong.
        cause: String,
    },
    /// The backend did not connect or answer in time.
    #[error("backend {backend} timed out: {cause}")]
    UpstreamTimeout {
        /// Backend base URL.
        backend: String,
        /// Which deadline passed.
        cause: String,
    },
    /// The request body is larger than `TOLLGATE_MAX_BODY_SIZE`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request target is longer than the gateway accepts.
    #[error("request target of {len} bytes is too long")]
    UriTooLong {
        /// Length of the target.
        len: usize,
    },
    /// The client's request body could not be read (the client went away or sent garbage).
    #[error("reading the request body failed: {0}")]
    ClientBody(String),
}

impl ProxyError {
    /// Status, stable error name and message of each error: the one place they are mapped.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ProxyError::NoHealthyBackend => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no_healthy_backend",
                "No healthy backend",
            ),
            ProxyError::UpstreamFailed { .. } => (StatusCode::BAD_GATEWAY, "bad_gateway", "Bad gateway"),
            ProxyError::UpstreamTimeout { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout", "Gateway timeout")
            }
            ProxyError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
            ),
            ProxyError::UriTooLong { .. } => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "Request target too long",
            ),
            ProxyError::ClientBody(_) => (
                StatusCode::BAD_REQUEST,
                "bad_request_body",
                "Request body could not be read",
            ),
        }
    }

    /// The JSON error response. 5xx bodies stay opaque; the cause is logged by the caller.
    pub fn to_response(&self, request_id: &str) -> HttpResponse {
        let (status, error, message) = self.parts();
        error_body::respond(status, error, message, request_id)
    }
}
