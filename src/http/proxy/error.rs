//! `ProxyError`: everything that can go wrong on the proxy path, mapped to HTTP in one place.

use actix_web::{
    http::{
        header::{HeaderName, HeaderValue},
        StatusCode,
    },
    HttpResponse,
};

use crate::{
    error_body,
    ratelimit::{Decision, Quota},
};

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
    /// The backend's response head is over the head limits (the request is not sent again).
    #[error("backend {backend} answered with a head the gateway does not pass on: {cause}")]
    UpstreamHeadTooLarge {
        /// Backend base URL.
        backend: String,
        /// Which limit it passed.
        cause: super::head::HeadTooLarge,
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
    /// The client sent its body too slowly (idle limit or minimum rate).
    #[error("{0}")]
    ClientTooSlow(super::upload::SlowUpload),
    /// The request target cannot be sent to a backend safely.
    #[error("request target refused: {0}")]
    BadTarget(String),
    /// A method the gateway does not forward (`CONNECT`).
    #[error("method not forwarded")]
    MethodNotAllowed,
    /// The API key matches no client.
    #[error("unknown API key")]
    UnknownApiKey,
    /// Anonymous access is off and no API key was sent.
    #[error("API key required")]
    ApiKeyRequired,
    /// The client is disabled.
    #[error("client disabled")]
    ClientDisabled,
    /// The client's bucket is empty.
    #[error("rate limit exceeded")]
    RateLimited(Decision, Quota),
}

/// Name of the `RateLimit-Policy` header.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// Name of the `RateLimit` header.
pub const RATELIMIT: &str = "ratelimit";

/// The `RateLimit-Policy` and `RateLimit` header values (draft-ietf-httpapi-ratelimit-headers-10).
pub fn rate_limit_headers(d: &Decision, q: &Quota) -> [(HeaderName, HeaderValue); 2] {
    [
        (HeaderName::from_static(RATELIMIT_POLICY), policy_value(q)),
        (HeaderName::from_static(RATELIMIT), limit_value(d)),
    ]
}

/// The `RateLimit-Policy` value of quota `q` (the same for every request of the quota, so the
/// forwarder keeps the last one it built).
pub fn policy_value(q: &Quota) -> HeaderValue {
    default_item(("q", q.capacity()), ("w", q.window_secs()))
}

/// The `RateLimit` value of decision `d`.
pub fn limit_value(d: &Decision) -> HeaderValue {
    default_item(("r", d.remaining), ("t", d.reset_secs))
}

/// `"default";a=1;b=2`, written into an array that becomes the value's own storage: one
/// allocation, and a clone only counts a reference.
fn default_item(a: (&str, u64), b: (&str, u64)) -> HeaderValue {
    let (mut da, mut db) = (itoa::Buffer::new(), itoa::Buffer::new());
    // 10 for `"default";`, two one-letter keys, `=`, `;`, `=` and two u64s of 20 digits.
    let mut buf = [0u8; 64];
    let mut len = 0;
    for part in [
        "\"default\";",
        a.0,
        "=",
        da.format(a.1),
        ";",
        b.0,
        "=",
        db.format(b.1),
    ] {
        buf[len..len + part.len()].copy_from_slice(part.as_bytes());
        len += part.len();
    }
    // Quotes, letters, digits and separators only: always a valid value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf).slice(..len))
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
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
            ProxyError::UpstreamHeadTooLarge { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_head_too_large",
                "Bad gateway: the backend's response head is too large",
            ),
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
            ProxyError::ClientTooSlow(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request body not received in time",
            ),
            ProxyError::BadTarget(_) => (
                StatusCode::BAD_REQUEST,
                "bad_request_target",
                "Request target cannot be forwarded safely",
            ),
            ProxyError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ProxyError::UnknownApiKey => (StatusCode::UNAUTHORIZED, "unknown_api_key", "Unknown API key"),
            ProxyError::ApiKeyRequired => (StatusCode::UNAUTHORIZED, "api_key_required", "API key required"),
            ProxyError::ClientDisabled => (StatusCode::FORBIDDEN, "client_disabled", "Client disabled"),
            ProxyError::RateLimited(..) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Rate limit exceeded",
            ),
        }
    }

    /// The JSON error response. 5xx bodies stay opaque; the cause is logged by the caller.
    pub fn to_response(&self, request_id: &str) -> HttpResponse {
        let (status, error, message) = self.parts();
        let mut b = error_body::builder(status, request_id);
        match self {
            ProxyError::RateLimited(d, q) => {
                b.insert_header((
                    HeaderName::from_static("retry-after"),
                    HeaderValue::from(d.retry_after_secs.max(1)),
                ));
                for h in rate_limit_headers(d, q) {
                    b.insert_header(h);
                }
            }
            ProxyError::MethodNotAllowed => {
                b.insert_header((actix_web::http::header::ALLOW, super::ALLOWED_METHODS));
            }
            // The rest of the client's body is unread: this connection cannot carry another request.
            ProxyError::ClientTooSlow(_) | ProxyError::ClientBody(_) => {
                b.force_close();
            }
            _ => {}
        }
        b.json(error_body::ErrorBody {
            code: status.as_u16(),
            message,
            error,
            request_id,
        })
    }
}
