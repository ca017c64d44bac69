//! tollgate: an HTTP API gateway that balances requests across backends and enforces
//! per-client rate limits.
//!
//! # Layout
//! - [`config`]: settings from flags and environment, all validated at once.
//! - [`startup`]: [`startup::Application`] binds the listeners, starts the actors, runs.
//! - [`listeners`]: listeners handed over by systemd socket activation.
//! - [`shutdown`]: ordered graceful shutdown on SIGTERM/SIGINT.
//! - [`pool`]: the `BackendPool` actor (health checks) and lock-free backend selection.
//! - [`http::proxy`]: the forwarder (awc), hop-by-hop rules, failover, `ProxyError`.
//! - [`http::admin`]: the admin API (health, readiness, backends), bearer-token auth.
//! - [`error_body`]: the one JSON error body.
//! - [`demo`]: demo backends for `--demo` and the compose stack.
//! - [`logfmt`]: escaping of untrusted values in logs.
//! - [`logthrottle`]: at most one error line per second per cause, with a count.

pub mod config;
pub mod demo;
pub mod error_body;
pub mod http;
pub mod listeners;
pub mod logfmt;
pub mod logthrottle;
pub mod pool;
pub mod ratelimit;
pub mod registry;
pub mod shutdown;
pub mod startup;
pub mod store;
