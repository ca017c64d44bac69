//! Prometheus metrics: the counters the request path records into (lock-free, per worker
//! where they are hot), and the scrape that reads them all and encodes them with
//! prometheus-client for `GET /metrics`.

mod busiest;
mod database;
mod decisions;
mod histogram;
mod process;
mod scrape;
mod traffic;
mod upstream;

/// `TOLLGATE_METRICS*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Record and serve metrics (off: nothing recorded on the request path, `/metrics` 404).
    pub enabled: bool,
    /// `/metrics` without the admin token.
    pub public: bool,
    /// Registered clients given series of their own: the busiest this many.
    pub client_limit: usize,
}

pub use busiest::{busiest, ClientCounts, TopClients};
pub use database::{AdminWrites, WriteBehindStats, WRITE_RESULTS};
pub use decisions::{CallerKind, DecisionCounts, Outcome};
pub use histogram::{HistogramSnapshot, LatencyHistogram};
pub use process::{sample as sample_process, ProcessSample};
pub use scrape::{BackendSample, Scrape, CONTENT_TYPE, NO_BACKEND};
pub use traffic::{status_class, Traffic, TrafficSet, TrafficTotals, STATUS_CLASSES};
pub use upstream::{FailureKind, UpstreamCounters, FAILURE_KINDS};
