//! tollgate: an HTTP API gateway that balances requests across backends and enforces
//! per-client rate limits.
//!
//! # Layout
//! - [`config`]: settings from flags and environment, all validated at once: the clap schema,
//!   the value parsers, and the settings of each concern (built here, defined by the module
//!   that uses them: config depends on the domain modules, never the reverse).
//! - [`startup`]: [`startup::Application`] opens the database, binds (or inherits) the
//!   listeners, starts the actors, runs.
//! - [`listeners`]: listeners handed over by systemd socket activation.
//! - [`shutdown`]: ordered graceful shutdown on SIGTERM/SIGINT.
//! - [`backend_list`]: the backend list between the store and the pool: the list named at
//!   start replaces the stored one; the change log's backend changes reach the pool.
//! - [`cluster`]: the instances sharing the database: registration, heartbeat, `/cluster`.
//! - [`pool`]: the `BackendPool` actor (health checks), lock-free backend selection, and
//!   the configured backends ([`pool::BackendSpec`], [`pool::Strategy`]).
//! - [`ratelimit`]: the pure token bucket (fixed-point) and its clocks.
//! - [`registry`]: the `ClientRegistry` actor, the client table (changed one client at a
//!   time), anonymous buckets, client identification behind trusted proxies, and the
//!   catch-up that applies other instances' changes from the change log.
//! - [`store`]: diesel persistence (PostgreSQL or SQLite), [`store::DatabaseUrl`], the
//!   `DbExecutor` (every operation under a deadline), the SQLite file's identity, the change
//!   log and the PostgreSQL change listener.
//! - [`http::proxy`]: the forwarder (awc), hop-by-hop rules, failover, `ProxyError`.
//! - [`http::admin`]: the admin API (health, readiness, backends, clients), bearer-token auth.
//! - [`error_body`]: the one JSON error body.
//! - [`request_id`]: request ids, shared by the proxy and the admin API.
//! - [`routing`]: route patterns and the route table (which route a request takes), pure.
//! - [`demo`]: demo backends for `--demo` and the compose stack.
//! - [`logfmt`]: escaping of untrusted values in logs.
//! - [`logthrottle`]: at most one error line per second per cause, with a count.
//! - [`metrics`]: Prometheus metrics: lock-free counters on the request path, read and
//!   encoded at scrape time.
//! - [`status`]: what the status page shows: counters sampled once a second, rates and five
//!   minutes of history in memory of bounded size.
//! - [`sweep`]: deadlines without a timer per request: each worker sweeps its deadlines every
//!   100 ms.

pub mod backend_list;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod error_body;
pub mod http;
pub mod listeners;
pub mod logfmt;
pub mod logging;
pub mod logthrottle;
pub mod metrics;
pub mod pool;
pub mod ratelimit;
pub mod registry;
pub mod request_id;
pub mod routing;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod store;
pub mod sweep;
