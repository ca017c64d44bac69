//! The backend pool: which backends exist, which are healthy, and which one serves a request.
//!
//! # Layout
//! - `backend`: one backend (stable id) and its live counters.
//! - `snapshot`: the immutable routing table handlers pick from.
//! - `shared`: what the actor writes and the handles read, lock-free.
//! - `handle`: [`PoolHandle`] and [`Lease`], all the proxy knows of the pool.
//! - `actor`: the [`BackendPool`] actor: the list, passive failures, publishing; `checks`:
//!   its active health checks; `changes`: list changes at run time and draining.
//! - `messages`: the actor's control messages and the status it reports.
//! - Pure policies, no actix and no clock of their own: `select` (which backend), `health`
//!   (ejection and re-admission rules, time passed in), `panic` (when health is ignored),
//!   `standing` (enabled, draining, pending: the state shown and the routing set).

mod actor;
mod backend;
mod changes;
mod checks;
mod handle;
mod health;
mod messages;
mod panic;
mod select;
mod shared;
mod snapshot;
mod spec;
mod standing;

pub use actor::{BackendPool, PoolSettings};
pub use backend::Backend;
pub use handle::{Lease, PoolHandle};
pub use health::Thresholds;
pub use messages::{
    ApplyBackendChanges, BackendChange, BackendDef, BackendStatus, CheckResult, GetBackends, PoolStatus,
    ReportFailure, Stop,
};
pub use spec::{BackendSpec, Strategy};
