//! State shared between the actor (the one writer) and the handles (readers on every worker).

use std::sync::{
    atomic::{AtomicBool, AtomicUsize},
    Arc,
};

use arc_swap::ArcSwap;

use super::{snapshot::Snapshot, Strategy};
use crate::ratelimit::Clock;

/// What the actor publishes and the handles read, without a lock.
pub struct Shared {
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
            .field("snapshot", &self.snapshot)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Shared state with an empty routing table (the actor publishes the first one).
    pub fn new(strategy: Strategy, clock: Arc<dyn Clock>) -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            cursor: AtomicUsize::new(0),
            strategy,
            ready: AtomicBool::new(false),
            clock,
        })
    }

    /// Replaces the routing table.
    pub(super) fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }
}
