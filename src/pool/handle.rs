//! What request handlers hold: [`PoolHandle`] picks a backend from the published snapshot with
//! no mailbox round trip (one atomic load, one atomic increment); [`Lease`] counts the request
//! as in flight until it is dropped, on the backend itself, so that a backend removed from the
//! list meanwhile still knows its requests in flight (and drains).

use std::sync::{atomic::Ordering, Arc};

use actix::Addr;

use super::{
    actor::{BackendPool, PoolSettings},
    backend::Backend,
    health::is_answer,
    messages::{BackendDef, ReportFailure},
    select::choose,
    shared::Shared,
    Strategy,
};
use crate::{
    metrics::FailureKind,
    ratelimit::{Clock, MonotonicClock},
};

/// A cheap, cloneable view of the pool for request handlers.
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
    addr: Addr<BackendPool>,
}

impl PoolHandle {
    /// Starts the [`BackendPool`] actor over `defs` on the current arbiter and returns its
    /// handle; `version` is the change-log version the list reflects.
    pub fn start(defs: &[BackendDef], version: i64, settings: PoolSettings) -> PoolHandle {
        Self::start_with_clock(defs, version, settings, Arc::new(MonotonicClock::default()))
    }

    /// [`PoolHandle::start`] with the clock that times answers and failures.
    pub fn start_with_clock(
        defs: &[BackendDef],
        version: i64,
        settings: PoolSettings,
        clock: Arc<dyn Clock>,
    ) -> PoolHandle {
        let shared = Shared::new(settings.strategy, clock);
        let addr = BackendPool::new(shared.clone(), settings, defs, version).start_actor();
        PoolHandle { shared, addr }
    }

    /// Picks a routable backend not in `exclude` (the backends this request already tried)
    /// and counts the request as in flight to it until the returned lease is dropped.
    pub fn pick(&self, exclude: &[Arc<Backend>]) -> Option<Lease> {
        loop {
            let snap = self.shared.snapshot.load();
            let index = choose(
                self.shared.strategy,
                &snap.backends,
                &snap.routable,
                &snap.cycle,
                &self.shared.cursor,
                |i| {
                    let b = &snap.backends[i];
                    b.is_retired() || exclude.iter().any(|x| Arc::ptr_eq(x, b))
                },
            )?;
            let backend = &snap.backends[index];
            if backend.enter() {
                backend.requests.fetch_add(1, Ordering::Relaxed);
                return Some(Lease {
                    backend: backend.clone(),
                });
            }
            // Retired since this snapshot was loaded: the next load (or the skip) avoids it.
        }
    }

    /// Tells the pool that the proxy could not connect to a backend (passive health check).
    pub fn report_connect_failure(&self, backend: &Backend, reason: String) {
        self.addr.do_send(ReportFailure {
            id: backend.id.clone(),
            reason,
        });
    }

    /// Whether the first round of health checks is done.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The selection strategy.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// Number of backends that may take traffic now (enabled, checked, not draining).
    pub fn len(&self) -> usize {
        self.shared.snapshot.load().backends.len()
    }

    /// True when no backend may take traffic now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The actor, for control messages (status, list changes, stop).
    pub fn addr(&self) -> &Addr<BackendPool> {
        &self.addr
    }
}

/// A request in flight to one backend; dropping it ends the request for load accounting.
pub struct Lease {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("backend", &self.backend.base)
            .finish()
    }
}

impl Lease {
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Counts a failed request against the backend (for `/backends` and `/metrics`).
    pub fn count_failure(&self, kind: FailureKind) {
        self.backend.failures.fetch_add(1, Ordering::Relaxed);
        self.backend.upstream.count_failure(kind);
    }

    /// The backend sent a response head with `status`: proof that it is up, which keeps a
    /// timed-out health check from counting against it.
    pub fn record_response(&self, status: u16) {
        if is_answer(status) {
            let now = self.backend.clock.now().max(1);
            self.backend.last_answer.fetch_max(now, Ordering::Relaxed);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
