//! State shared between the actor (the one writer) and the handles (readers on every worker).

use std::sync::{
    atomic::{AtomicBool, AtomicUsize},
    Arc,
};

use arc_swap::ArcSwap;

use super::{backend::Backend, snapshot::Snapshot, BackendSpec, Strategy};
use crate::ratelimit::Clock;

/// What the actor publishes and the handles read, without a lock.
pub struct Shared {
    /// Every configured backend, in configuration order; never changes after start.
    pub(super) backends: Vec<Backend>,
    /// The current routing table; replaced whole by the actor.
    pub(super) snapshot: ArcSwap<Snapshot>,
    /// Round-robin position shared by all workers, so the rotation is global.
    pub(super) cursor: AtomicUsize,
    /// Selection strategy.
    pub(super) strategy: Strategy,
    /// The first round of health checks is done.
    pub(super) ready: AtomicBool,
    /// Time of answers and failures, injected so that tests can move it.
    pub(super) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("backends", &self.backends)
            .field("snapshot", &self.snapshot)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Shared state for `specs`, every backend routable (until checks say otherwise).
    pub fn new(specs: &[BackendSpec], strategy: Strategy, clock: Arc<dyn Clock>) -> Arc<Shared> {
        let backends: Vec<Backend> = specs.iter().map(Backend::new).collect();
        let snapshot = Snapshot::build(&backends, (0..backends.len()).collect());
        Arc::new(Shared {
            backends,
            snapshot: ArcSwap::from_pointee(snapshot),
            cursor: AtomicUsize::new(0),
            strategy,
            ready: AtomicBool::new(false),
            clock,
        })
    }

    /// Replaces the routing table with one over `routable`.
    pub(super) fn publish(&self, routable: Vec<usize>) {
        self.snapshot
            .store(Arc::new(Snapshot::build(&self.backends, routable)));
    }
}
