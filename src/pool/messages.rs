//! Messages of the [`BackendPool`](super::BackendPool) actor: control traffic only, never one
//! per request.

use actix::{Message, MessageResponse};
use serde::Serialize;

use super::BackendSpec;

/// The proxy could not connect to a backend; counts like a failed health check.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportFailure {
    /// Backend id.
    pub id: String,
    /// What went wrong, for the log.
    pub reason: String,
}

/// Status of the pool and every backend, for the admin API.
#[derive(Debug, Message)]
#[rtype(result = "PoolStatus")]
pub struct GetBackends;

/// One backend as stored: what the pool needs to route to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendDef {
    /// Stable id.
    pub id: String,
    /// URL and weight.
    pub spec: BackendSpec,
    /// `false`: listed, takes no new requests.
    pub enabled: bool,
}

/// One change of the backend list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChange {
    /// Added, or its weight or `enabled` changed.
    Upsert(BackendDef),
    /// Deleted: drained, then dropped.
    Delete(String),
}

/// Changes of the backend list, each with its change-log version, oldest first. A change
/// older than what the pool already applied for that backend is skipped, so an own write
/// applied at commit and met again in the change log is applied once, and a stale re-read
/// never brings a deleted backend back.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyBackendChanges {
    /// `(version, change)`, oldest first.
    pub changes: Vec<(i64, BackendChange)>,
    /// Made by another instance (for the log).
    pub remote: bool,
}

/// Stops health checks and the actor (part of graceful shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Outcome of the most recent health check of a backend.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// Whether the check passed (2xx or 3xx within the timeout).
    pub ok: bool,
    /// HTTP status, when a response arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status: Option<u16>,
    /// Why it failed, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// When the check finished (RFC 3339, UTC).
    pub at: String,
    /// How long the check took, in milliseconds.
    pub duration_ms: u64,
}

/// The pool as `GET /backends` shows it.
#[derive(Debug, Clone, Serialize, MessageResponse, utoipa::ToSchema)]
pub struct PoolStatus {
    /// Selection strategy.
    pub strategy: String,
    /// Panic mode: too few backends are healthy, so traffic goes to all of them.
    pub panic: bool,
    /// Every listed backend, in list order (draining ones until they are idle).
    pub backends: Vec<BackendStatus>,
}

/// One backend as `GET /backends` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackendStatus {
    /// Stable id.
    pub id: String,
    /// Base URL.
    pub url: String,
    /// Weight.
    pub weight: u32,
    /// `false`: takes no new requests.
    pub enabled: bool,
    /// `healthy`, `unhealthy`, `pending` (first check running), `disabled` or `draining`.
    #[schema(value_type = String, pattern = "^(healthy|unhealthy|pending|disabled|draining)$")]
    pub state: &'static str,
    /// Whether its checks say it is up (in panic mode it takes traffic even when not).
    pub healthy: bool,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests sent since start.
    pub requests_total: u64,
    /// Failed requests since start.
    pub failures_total: u64,
    /// Most recent health check, if one has finished.
    #[schema(required = true)]
    pub last_check: Option<CheckResult>,
    /// Answers by status class (`1xx`..`5xx`), for `/metrics`.
    #[serde(skip)]
    pub answers: [u64; 5],
    /// Failures by kind (`metrics::FAILURE_KINDS`), for `/metrics`.
    #[serde(skip)]
    pub failures_by_kind: [u64; crate::metrics::FAILURE_KINDS.len()],
}
