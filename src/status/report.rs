//! The body of `GET /status` (what the status page shows): plain data, serialised as is.

use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    pool::CheckResult,
    registry::{ClientView, LimitsMode},
};

/// The body of `GET /status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusReport {
    /// The instance answering.
    pub instance_id: String,
    /// The instance's clock now, Unix ms (ages on the page are counted from it, not from the
    /// browser's clock).
    pub now_ms: u64,
    /// Seconds since the gateway started.
    pub uptime_s: u64,
    /// The seconds the rates are measured over (up to 5; less just after start).
    pub window_s: f64,
    /// What `totals.requests` counts.
    pub counted: Counted,
    /// The whole gateway.
    pub totals: TotalsView,
    /// Requests per second, once a second, for the last five minutes.
    pub history: HistoryView,
    /// Selection strategy and panic mode.
    pub pool: PoolView,
    /// Every listed backend, in list order.
    pub backends: Vec<BackendView>,
    /// How clients are limited; `null` when rate limiting is off.
    pub limits: Option<LimitsView>,
    /// The busiest registered clients; `null` when rate limiting is off.
    pub clients: Option<Vec<ClientStatus>>,
}

/// What `totals.requests` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    /// Every answer, the backends' and the gateway's own (429, 502…), by status class.
    Answers,
    /// `TOLLGATE_METRICS=false` records no answers: requests sent to backends, retries
    /// included, and no status classes.
    BackendRequests,
}

/// The whole gateway.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TotalsView {
    /// Since start (see `counted`).
    pub requests: u64,
    /// Over the last `window_s`; `null` until two samples were taken.
    pub per_sec: Option<f64>,
    /// Answers by status class since start; `null` with metrics off.
    pub by_class: Option<ByClass>,
    /// Requests refused by the rate limiter (429) since start; `null` with rate limiting off.
    pub refused: Option<u64>,
    /// Over the last `window_s`.
    pub refused_per_sec: Option<f64>,
}

/// Answers by status class.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ByClass {
    /// `1xx` answers.
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    /// `2xx` answers.
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    /// `3xx` answers.
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    /// `4xx` answers.
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    /// `5xx` answers.
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

impl From<[u64; 5]> for ByClass {
    fn from(c: [u64; 5]) -> ByClass {
        ByClass {
            c1xx: c[0],
            c2xx: c[1],
            c3xx: c[2],
            c4xx: c[3],
            c5xx: c[4],
        }
    }
}

/// Requests per second, once a second.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryView {
    /// Seconds between two points.
    pub interval_s: u64,
    /// Oldest first.
    pub points: Vec<Point>,
}

/// One second of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Point {
    /// End of the second, Unix ms.
    pub t: u64,
    /// Requests per second (see `counted`).
    pub rps: f64,
    /// Refusals (429) per second.
    pub refused_ps: f64,
}

/// Selection strategy and panic mode.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolView {
    /// Selection strategy.
    pub strategy: String,
    /// Too few backends are healthy: traffic goes to all of them.
    pub panic: bool,
}

/// One backend.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendView {
    /// Stable id.
    pub id: String,
    /// Base URL.
    pub url: String,
    /// `healthy`, `unhealthy` (ejected), `pending`, `disabled` or `draining`.
    pub state: &'static str,
    /// Whether its checks say it is up.
    pub healthy: bool,
    /// `false`: takes no new requests.
    pub enabled: bool,
    /// Weight.
    pub weight: u32,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests sent since start.
    pub requests: u64,
    /// Failed requests since start.
    pub failures: u64,
    /// Most recent health check, if one has finished.
    pub last_check: Option<CheckResult>,
    /// Requests sent per second over the last `window_s`.
    pub rps: Option<f64>,
    /// Failed requests and `5xx` answers per request sent over the last `window_s`;
    /// `null` when none was sent.
    pub error_rate: Option<f64>,
}

/// How clients are limited.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitsView {
    /// `cluster`, `degraded` or `local` (as in `GET /cluster`).
    pub mode: LimitsMode,
    /// Instances sharing the limits.
    pub live_instances: u32,
    /// Registered clients.
    pub registered: usize,
}

/// A client's rates, as the sampler measured them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRate {
    /// Client id.
    pub id: String,
    /// Admitted per second over the last `window_s` (`null` when just tracked).
    pub admitted_per_sec: Option<f64>,
    /// Refused per second over the last `window_s`.
    pub refused_per_sec: Option<f64>,
}

/// One of the busiest clients.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientStatus {
    /// Id.
    pub client_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Whole tokens in the bucket now.
    pub tokens: u64,
    /// Bucket capacity.
    pub capacity: u64,
    /// Refill rate, tokens per second.
    pub rate_per_sec: f64,
    /// Requests admitted since start.
    pub admitted: u64,
    /// Requests refused since start.
    pub refused: u64,
    /// Over the last `window_s`.
    pub admitted_per_sec: Option<f64>,
    /// Over the last `window_s`.
    pub refused_per_sec: Option<f64>,
    /// Being limited: refused in the last `window_s`, or less than one token left (in
    /// shadow mode: would be).
    pub limited: bool,
    /// `false`: shadow mode (refusals are counted, not made).
    pub enforce: bool,
    /// `false`: every request is refused.
    pub enabled: bool,
}

impl ClientStatus {
    /// The status of the client in `view`, with its measured `rate`.
    pub fn new(view: ClientView, rate: &ClientRate) -> ClientStatus {
        let refusing = rate.refused_per_sec.is_some_and(|r| r > 0.0);
        ClientStatus {
            limited: refusing || view.tokens == 0,
            client_id: view.client_id,
            name: view.name,
            tokens: view.tokens,
            capacity: view.capacity,
            rate_per_sec: view.rate_per_sec,
            admitted: view.admitted,
            refused: view.refused,
            admitted_per_sec: rate.admitted_per_sec,
            refused_per_sec: rate.refused_per_sec,
            enforce: view.enforce,
            enabled: view.enabled,
        }
    }
}
