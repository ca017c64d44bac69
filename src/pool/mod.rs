//! The backend pool: which backends exist, which are healthy, and which one serves a request.
//!
//! The [`BackendPool`] actor owns health (active checks on an interval, passive failures
//! reported by the proxy) and publishes an immutable [`Snapshot`] of the healthy set whenever
//! it changes. Request handlers pick from that snapshot through a [`PoolHandle`] with no
//! mailbox round trip: one atomic load, one atomic increment.

mod actor;
mod health;
mod messages;
mod select;
mod spec;

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use actix::Addr;
use arc_swap::ArcSwap;

pub use actor::{BackendPool, PoolSettings};
pub use health::{Health, Thresholds, Transition};
pub use messages::{BackendStatus, CheckResult, GetBackends, ReportFailure, Shutdown};
pub use select::{pick, smooth_weighted_cycle, Load};
pub use spec::{BackendSpec, Strategy};

/// One configured backend with its live counters.
#[derive(Debug)]
pub struct Backend {
    /// Base URL without a trailing slash; the request path is appended to it.
    pub base: String,
    /// Configured weight.
    pub weight: u32,
    /// The authority of a base URL without a path prefix: the request target is then used
    /// as it is, with no string built per request.
    authority: Option<actix_web::http::uri::Authority>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl Load for Backend {
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    fn weight(&self) -> u32 {
        self.weight
    }
}

impl Backend {
    /// The URL of `target` (path and query) on this backend.
    pub fn url(&self, target: &actix_web::http::uri::PathAndQuery) -> Result<actix_web::http::Uri, String> {
        use actix_web::http::uri::{Scheme, Uri};
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

/// The healthy set as the actor last published it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Indices of healthy backends, ascending.
    pub healthy: Vec<usize>,
    /// Smooth weighted round-robin cycle; entries index into `healthy`.
    pub cycle: Vec<usize>,
}

impl Snapshot {
    fn build(backends: &[Backend], healthy: Vec<usize>) -> Snapshot {
        let weights: Vec<u32> = healthy.iter().map(|&i| backends[i].weight).collect();
        Snapshot {
            cycle: smooth_weighted_cycle(&weights),
            healthy,
        }
    }
}

/// State shared between the actor (writer) and the handlers (readers).
#[derive(Debug)]
pub struct Shared {
    backends: Vec<Backend>,
    snapshot: ArcSwap<Snapshot>,
    cursor: AtomicUsize,
    strategy: Strategy,
    ready: AtomicBool,
}

impl Shared {
    /// Shared state for `specs`, every backend healthy (until checks say otherwise).
    pub fn new(specs: &[BackendSpec], strategy: Strategy) -> Arc<Shared> {
        let backends: Vec<Backend> = specs
            .iter()
            .map(|s| Backend {
                base: s.base.clone(),
                weight: s.weight.get(),
                authority: s
                    .base
                    .parse::<actix_web::http::Uri>()
                    .ok()
                    .filter(|u| matches!(u.path(), "" | "/"))
                    .and_then(|u| u.authority().cloned()),
                in_flight: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            })
            .collect();
        let snapshot = Snapshot::build(&backends, (0..backends.len()).collect());
        Arc::new(Shared {
            backends,
            snapshot: ArcSwap::from_pointee(snapshot),
            cursor: AtomicUsize::new(0),
            strategy,
            ready: AtomicBool::new(false),
        })
    }

    fn publish(&self, healthy: Vec<usize>) {
        self.snapshot
            .store(Arc::new(Snapshot::build(&self.backends, healthy)));
    }
}

/// What request handlers hold: a cheap, cloneable view of the pool.
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
    addr: Addr<BackendPool>,
}

impl PoolHandle {
    /// Starts the [`BackendPool`] actor on the current arbiter and returns its handle.
    pub fn start(specs: &[BackendSpec], settings: PoolSettings) -> PoolHandle {
        let shared = Shared::new(specs, settings.strategy);
        let addr = BackendPool::new(shared.clone(), settings).start_actor();
        PoolHandle { shared, addr }
    }

    /// Picks a healthy backend not in `exclude` and counts the request as in flight to it
    /// until the returned lease is dropped.
    pub fn pick(&self, exclude: &[usize]) -> Option<Lease> {
        let snap = self.shared.snapshot.load();
        let index = pick(
            self.shared.strategy,
            &self.shared.backends,
            &snap.healthy,
            &snap.cycle,
            &self.shared.cursor,
            exclude,
        )?;
        let b = &self.shared.backends[index];
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        b.requests.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            shared: self.shared.clone(),
            index,
        })
    }

    /// Tells the pool that the proxy could not connect to a backend (passive health check).
    pub fn report_connect_failure(&self, index: usize, reason: String) {
        self.addr.do_send(ReportFailure { index, reason });
    }

    /// Whether the first round of health checks is done.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The selection strategy.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// Number of configured backends.
    pub fn len(&self) -> usize {
        self.shared.backends.len()
    }

    /// True when no backend is configured.
    pub fn is_empty(&self) -> bool {
        self.shared.backends.is_empty()
    }

    /// The actor, for control messages (status, shutdown).
    pub fn addr(&self) -> &Addr<BackendPool> {
        &self.addr
    }
}

/// A request in flight to one backend; dropping it ends the request for load accounting.
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    index: usize,
}

impl Lease {
    /// Index of the backend in the configuration.
    pub fn index(&self) -> usize {
        self.index
    }
    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.shared.backends[self.index]
    }
    /// Counts a failed request against the backend (for `/backends`).
    pub fn count_failure(&self) {
        self.backend().failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
