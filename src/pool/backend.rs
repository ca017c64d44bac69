//! One backend: its id, address, weight and the live counters handlers update. Shared as an
//! `Arc` by the pool, the snapshot and the leases of its requests in flight, so that a backend
//! removed from the list keeps counting those until they finish.

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use actix_web::http::uri::{Authority, PathAndQuery, Scheme, Uri};

use super::select::Load;
use super::BackendSpec;
use crate::{metrics::UpstreamCounters, ratelimit::Clock};

/// One backend with its live counters.
pub struct Backend {
    /// Stable id (shared by every instance, kept across restarts).
    pub id: String,
    /// Base URL without a trailing slash; the request path is appended to it.
    pub base: String,
    /// Weight; changed in place by the admin API (the actor then rebuilds the cycle).
    pub(super) weight: AtomicU32,
    /// The authority of a base URL without a path prefix: the request target is then used
    /// as it is, with no string built per request.
    authority: Option<Authority>,
    /// Requests in flight now (leases not yet dropped).
    pub(super) in_flight: AtomicUsize,
    /// Deleted and drained: a lease taken from an older snapshot backs off.
    retired: AtomicBool,
    /// Requests sent since start.
    pub(super) requests: AtomicU64,
    /// Requests that failed since start.
    pub(super) failures: AtomicU64,
    /// When the backend last answered proxied traffic, on the pool's clock (0: never).
    pub(super) last_answer: AtomicU64,
    /// Answers by status class and failures by kind, for `/metrics`.
    pub upstream: UpstreamCounters,
    /// The pool's clock, which times `last_answer` (held here so that a request's lease
    /// needs no reference of its own).
    pub(super) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.id)
            .field("base", &self.base)
            .field("weight", &self.weight)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend with id `id`, with zeroed counters, timed by `clock`.
    pub fn new(id: &str, spec: &BackendSpec, clock: Arc<dyn Clock>) -> Backend {
        Backend {
            id: id.to_string(),
            base: spec.base.clone(),
            weight: AtomicU32::new(spec.weight.get()),
            authority: spec
                .base
                .parse::<Uri>()
                .ok()
                .filter(|u| matches!(u.path(), "" | "/"))
                .and_then(|u| u.authority().cloned()),
            in_flight: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
            upstream: UpstreamCounters::default(),
            clock,
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

    /// Current weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Requests in flight to this backend now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight, unless the backend is retired. With [`Backend::retire`]
    /// and [`Backend::in_flight_exact`] (all sequentially consistent) either the pool sees
    /// this request in flight and keeps the backend, or this sees it retired: never neither.
    pub(super) fn enter(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.retired.load(Ordering::SeqCst) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Whether the backend is retired.
    pub(super) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// No lease may be taken on it any more (the pool is about to drop it).
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Requests in flight, read after [`Backend::retire`] to decide whether it can go.
    pub(super) fn in_flight_exact(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
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

impl Load for std::sync::Arc<Backend> {
    fn in_flight(&self) -> usize {
        Backend::in_flight(self)
    }
    fn weight(&self) -> u32 {
        Backend::weight(self)
    }
}
