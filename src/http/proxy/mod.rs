//! The proxy listener: every request is forwarded with awc to a backend the pool picks.
//!
//! One [`ProxyHandler`] per worker (built in the `HttpServer` factory) holds that worker's awc
//! client and connection pool. Bodies stream both ways; nothing is collected except a small
//! body of an idempotent request, kept so the request can be retried on another backend.

#[cfg(feature = "proxy-actor")]
pub mod actor;
mod body;
mod deadline;
mod error;
pub mod expect;
mod forward;
mod framing;
mod head;
mod headers;
mod idle;
mod pooled;
mod resend;
mod response_end;
mod retry;
mod route;
mod target;
mod upload;

use std::time::Duration;

use actix_web::{http::header::HeaderName, HttpRequest};

pub use body::AccessRecord;
pub use error::{rate_limit_headers, ProxyError};
pub use head::{HeadLimits, HeadTooLarge, MAX_HEADER_LINES, MAX_HEAD_BYTES};
pub use headers::copy_end_to_end;
pub use route::{build_client, handle};
pub use upload::UploadPolicy;

use crate::{
    pool::PoolHandle,
    ratelimit::{Decision, Quota},
    registry::{Check, Refusal, RegistryHandle},
};

/// Longest request target (path and query) accepted; longer gets 414.
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// Ceiling on a streamed upload to a backend (the response-head deadline starts after it; the
/// upload policy is what bounds a slow client).
const UPLOAD_ALLOWANCE: Duration = Duration::from_secs(24 * 3600);

/// Methods the gateway forwards, for the `Allow` of its own 405 and of `OPTIONS *`.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// Proxy settings every worker shares.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Extra attempts on other backends.
    pub retries: u32,
    /// Most idle connections kept per backend and worker (`TOLLGATE_UPSTREAM_IDLE`).
    pub upstream_idle: usize,
    /// Longest a backend connection may sit idle and still be reused
    /// (`TOLLGATE_UPSTREAM_IDLE_TIMEOUT`).
    pub upstream_idle_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_size: u64,
    /// Request bodies up to this size are read whole before any backend is contacted.
    pub request_buffer: u64,
    /// How slowly a client may send its body.
    pub upload: UploadPolicy,
    /// Longest wait for the backend's next response-body bytes.
    pub upstream_body_timeout: Duration,
    /// How large a backend's response head may be.
    pub upstream_head: HeadLimits,
    /// A request header never sent to backends (the API key header while rate limiting is on).
    pub strip_header: Option<HeaderName>,
    /// Peers whose forwarding headers are passed on (TOLLGATE_TRUSTED_PROXIES); any other
    /// peer's are stripped.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Deadline for the response head once the request is sent.
    pub upstream_timeout: Duration,
}

/// Per-worker forwarder: the awc client of this worker and the pool handle.
pub struct ProxyHandler {
    client: awc::Client,
    pool: PoolHandle,
    settings: ProxySettings,
    /// `None` when rate limiting is off.
    limiter: Option<RegistryHandle>,
    access_log: bool,
    /// This worker's request counters (`None`: `TOLLGATE_METRICS=false`).
    metrics: Option<&'static crate::metrics::Traffic>,
    /// The last `RateLimit-Policy` value built, with its quota's capacity and window: most
    /// requests of a worker share a quota, and a clone of the value allocates nothing.
    policy: std::cell::RefCell<Option<(u64, u64, actix_web::http::header::HeaderValue)>>,
}

impl ProxyHandler {
    /// A forwarder for one worker.
    pub fn new(
        client: awc::Client,
        pool: PoolHandle,
        settings: ProxySettings,
        limiter: Option<RegistryHandle>,
        metrics: Option<&'static crate::metrics::Traffic>,
    ) -> ProxyHandler {
        let access_log = log::log_enabled!(target: "tollgate::access", log::Level::Info);
        ProxyHandler {
            client,
            pool,
            settings,
            limiter,
            access_log,
            metrics,
            policy: std::cell::RefCell::new(None),
        }
    }

    /// The `RateLimit-Policy` value of `q`: the last one built when the quota is the same.
    fn policy_value(&self, q: &Quota) -> actix_web::http::header::HeaderValue {
        let key = (q.capacity(), q.window_secs());
        let mut last = self.policy.borrow_mut();
        match last.as_ref() {
            Some((c, w, v)) if (*c, *w) == key => v.clone(),
            _ => {
                let v = error::policy_value(q);
                *last = Some((key.0, key.1, v.clone()));
                v
            }
        }
    }

    /// Charges the request's client one token: inline, with no actor round trip, unless the
    /// client's lease is empty (then one lease statement, shared with every waiting request).
    async fn admit(&self, req: &HttpRequest) -> Result<Option<(Decision, Quota)>, ProxyError> {
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        let verdict = match limiter.check(req.headers(), req.peer_addr().map(|a| a.ip())) {
            Check::Done(verdict) => verdict,
            Check::Lease(entry) => limiter.lease_and_take(entry).await,
        };
        match verdict {
            Ok(verdict) => Ok(Some(verdict)),
            Err(Refusal::UnknownApiKey) => Err(ProxyError::UnknownApiKey),
            Err(Refusal::ApiKeyRequired) => Err(ProxyError::ApiKeyRequired),
            Err(Refusal::ClientDisabled) => Err(ProxyError::ClientDisabled),
            Err(Refusal::RateLimited(d, q)) => Err(ProxyError::RateLimited(d, q)),
        }
    }
}
