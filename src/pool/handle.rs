//! What request handlers hold: [`PoolHandle`] picks a backend from the published snapshot with
//! no mailbox round trip (one atomic load, one atomic increment); [`Lease`] counts the request
//! as in flight until it is dropped.

use std::sync::{atomic::Ordering, Arc};

use actix::Addr;

use super::{
    actor::{BackendPool, PoolSettings},
    backend::Backend,
    health::is_answer,
    messages::ReportFailure,
    select::choose,
    shared::Shared,
    BackendSpec, Strategy,
};
use crate::ratelimit::{Clock, MonotonicClock};

/// A cheap, cloneable view of the pool for request handlers.
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
    addr: Addr<BackendPool>,
}

impl PoolHandle {
    /// Starts the [`BackendPool`] actor on the current arbiter and returns its handle.
    pub fn start(specs: &[BackendSpec], settings: PoolSettings) -> PoolHandle {
        Self::start_with_clock(specs, settings, Arc::new(MonotonicClock::default()))
    }

    /// [`PoolHandle::start`] with the clock that times answers and failures.
    pub fn start_with_clock(
        specs: &[BackendSpec],
        settings: PoolSettings,
        clock: Arc<dyn Clock>,
    ) -> PoolHandle {
        let shared = Shared::new(specs, settings.strategy, clock);
        let addr = BackendPool::new(shared.clone(), settings).start_actor();
        PoolHandle { shared, addr }
    }

    /// Picks a routable backend not in `exclude` and counts the request as in flight to it
    /// until the returned lease is dropped.
    pub fn pick(&self, exclude: &[usize]) -> Option<Lease> {
        let snap = self.shared.snapshot.load();
        let index = choose(
            self.shared.strategy,
            &self.shared.backends,
            &snap.routable,
            &snap.cycle,
            &self.shared.cursor,
            exclude,
        )?;
        let b = &self.shared.backends[index];
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        b.requests.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            shared: self.shared.clone(),
            index,
        })
    }

    /// Tells the pool that the proxy could not connect to a backend (passive health check).
    pub fn report_connect_failure(&self, index: usize, reason: String) {
        self.addr.do_send(ReportFailure { index, reason });
    }

    /// Whether the first round of health checks is done.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The selection strategy.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// Number of configured backends.
    pub fn len(&self) -> usize {
        self.shared.backends.len()
    }

    /// True when no backend is configured.
    pub fn is_empty(&self) -> bool {
        self.shared.backends.is_empty()
    }

    /// The actor, for control messages (status, stop).
    pub fn addr(&self) -> &Addr<BackendPool> {
        &self.addr
    }
}

/// A request in flight to one backend; dropping it ends the request for load accounting.
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    index: usize,
}

impl Lease {
    /// Index of the backend in the configuration.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.shared.backends[self.index]
    }

    /// Counts a failed request against the backend (for `/backends`).
    pub fn count_failure(&self) {
        self.backend().failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The backend sent a response head with `status`: proof that it is up, which keeps a
    /// timed-out health check from counting against it.
    pub fn record_response(&self, status: u16) {
        if is_answer(status) {
            let now = self.shared.clock.now().max(1);
            self.backend().last_answer.fetch_max(now, Ordering::Relaxed);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
