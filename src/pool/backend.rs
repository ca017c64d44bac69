//! One configured backend: its address, weight and the live counters handlers update.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use actix_web::http::uri::{Authority, PathAndQuery, Scheme, Uri};

use super::select::Load;
use super::BackendSpec;

/// One configured backend with its live counters.
#[derive(Debug)]
pub struct Backend {
    /// Base URL without a trailing slash; the request path is appended to it.
    pub base: String,
    /// Configured weight.
    pub weight: u32,
    /// The authority of a base URL without a path prefix: the request target is then used
    /// as it is, with no string built per request.
    authority: Option<Authority>,
    /// Requests in flight now (leases not yet dropped).
    pub(super) in_flight: AtomicUsize,
    /// Requests sent since start.
    pub(super) requests: AtomicU64,
    /// Requests that failed since start.
    pub(super) failures: AtomicU64,
    /// When the backend last answered proxied traffic, on the pool's clock (0: never).
    pub(super) last_answer: AtomicU64,
}

impl Backend {
    /// A backend as configured, with zeroed counters.
    pub fn new(spec: &BackendSpec) -> Backend {
        Backend {
            base: spec.base.clone(),
            weight: spec.weight.get(),
            authority: spec
                .base
                .parse::<Uri>()
                .ok()
                .filter(|u| matches!(u.path(), "" | "/"))
                .and_then(|u| u.authority().cloned()),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
        }
    }

    /// The URL of `target` (path and query) on this backend.
    pub fn url(&self, target: &PathAndQuery) -> Result<Uri, String> {
        let uri = match &self.authority {
            Some(authority) => Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(authority.clone())
                .path_and_query(target.clone())
                .build(),
            None => format!("{}{}", self.base, target.as_str())
                .parse::<Uri>()
                .map_err(Into::into),
        };
        uri.map_err(|e| e.to_string())
    }

    /// Requests sent to this backend since start.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests to this backend that failed (connect, send, timeout) since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Backend {
    /// When the backend last answered proxied traffic, on the pool's clock.
    pub(super) fn last_answer(&self) -> Option<u64> {
        Some(self.last_answer.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }
}

impl Load for Backend {
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    fn weight(&self) -> u32 {
        self.weight
    }
}
