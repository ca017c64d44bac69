//! tollgate: an HTTP API gateway that balances requests across backends and enforces
//! per-client rate limits.
//!
//! # Layout
//! - [`config`]: settings from flags and environment, all validated at once.
//! - [`startup`]: [`startup::Application`] binds the listeners, starts the actors, runs.
//! - [`shutdown`]: ordered graceful shutdown on SIGTERM/SIGINT.
//! - [`pool`]: the `BackendPool` actor (health checks) and lock-free backend selection.
//! - [`http::proxy`]: the forwarder (awc), hop-by-hop rules, failover, `ProxyError`.
//! - [`http::admin`]: the admin API (health, readiness, backends), bearer-token auth.
//! - [`error_body`]: the one JSON error body.
//! - [`demo`]: demo backends for `--demo` and the compose stack.
//! - [`logfmt`]: escaping of untrusted values in logs.

pub mod config;
pub mod demo;
pub mod error_body;
pub mod http;
pub mod logfmt;
pub mod pool;
pub mod ratelimit;
pub mod registry;
pub mod request_id;
pub mod shutdown;
pub mod startup;
pub mod store;
