//! Deadlines without a timer per request: each worker keeps its deadlines in one set
//! ([`timers::Timers`]) that a single task sweeps every [`TICK`].
//!
//! A tokio `Sleep` armed per request costs an allocation, a timer-wheel insertion and often a
//! wake of the worker's own event loop (an `eventfd` write); the sweep costs one slab entry per
//! wait and one timer per worker. The price is resolution: a deadline fires at the first sweep
//! at or after it, so up to one tick late, never early. The sweeping task runs only while the
//! worker holds a deadline (each open client connection holds one, for its keep-alive), so a
//! worker with no connection does not wake.
//!
//! Everything here is per thread (an actix worker is one thread): a [`Deadline`] must be
//! dropped on the thread that made it, which its `!Send` marker enforces.

pub mod timers;

use std::{
    cell::{Cell, RefCell},
    future::Future,
    marker::PhantomData,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use timers::Timers;

/// How often a worker sweeps its deadlines: their resolution.
pub const TICK: Duration = Duration::from_millis(100);

/// One worker's deadlines and its sweeping task's state.
struct Sweep {
    timers: RefCell<Timers>,
    /// Whether the sweeping task is running.
    ticking: Cell<bool>,
    /// Wakers of the deadlines fired by a sweep, kept to reuse the allocation.
    woken: RefCell<Vec<Waker>>,
}

thread_local! {
    static SWEEP: Sweep = const {
        Sweep {
            timers: RefCell::new(Timers::new()),
            ticking: Cell::new(false),
            woken: RefCell::new(Vec::new()),
        }
    };
}

/// Runs `f` on this thread's sweep; `None` while the thread is being torn down.
fn with_sweep<R>(f: impl FnOnce(&Sweep) -> R) -> Option<R> {
    SWEEP.try_with(f).ok()
}

/// Marks the sweeping task stopped however it ends (even dropped with its runtime), so that
/// the next deadline starts a new one.
struct Ticking;

impl Drop for Ticking {
    fn drop(&mut self) {
        with_sweep(|s| s.ticking.set(false));
    }
}

/// Starts this worker's sweeping task unless it runs.
fn ensure_ticking(s: &Sweep) {
    if s.ticking.replace(true) {
        return;
    }
    actix_rt::spawn(async {
        let _ticking = Ticking;
        let mut interval = actix_rt::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let woken = with_sweep(|s| {
                let mut woken = std::mem::take(&mut *s.woken.borrow_mut());
                let mut timers = s.timers.borrow_mut();
                timers.expire(now, &mut woken);
                if timers.is_empty() {
                    s.ticking.set(false);
                }
                woken
            });
            let Some(mut woken) = woken else { return };
            woken.drain(..).for_each(Waker::wake);
            let stop = with_sweep(|s| {
                *s.woken.borrow_mut() = woken;
                !s.ticking.get()
            });
            if stop.unwrap_or(true) {
                return;
            }
        }
    });
}

/// A deadline on this worker's sweep, released when dropped. As a future it completes once
/// the deadline has passed (up to one [`TICK`] late).
#[derive(Debug)]
pub struct Deadline {
    key: Option<usize>,
    /// Keys belong to one thread's sweep.
    _local: PhantomData<Rc<()>>,
}

impl Deadline {
    /// A deadline at `at`.
    pub fn at(at: Instant) -> Deadline {
        let key = with_sweep(|s| {
            let key = s.timers.borrow_mut().insert(at);
            ensure_ticking(s);
            key
        });
        Deadline {
            key,
            _local: PhantomData,
        }
    }

    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Deadline {
        Deadline::at(Instant::now() + after)
    }

    /// Moves the deadline to `at`, arming it again if it had fired.
    pub fn reset(&self, at: Instant) {
        if let Some(key) = self.key {
            with_sweep(|s| {
                s.timers.borrow_mut().set(key, at);
                ensure_ticking(s);
            });
        }
    }

    /// Whether the deadline has passed (as of the last sweep).
    pub fn fired(&self) -> bool {
        self.key
            .and_then(|key| with_sweep(|s| s.timers.borrow().fired(key)))
            .unwrap_or(true)
    }

    /// `Ready` once the deadline has passed; otherwise the task is woken when it does.
    pub fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let fired = self
            .key
            .and_then(|key| with_sweep(|s| s.timers.borrow_mut().poll(key, cx.waker())))
            .unwrap_or(true);
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_fired(cx)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            with_sweep(|s| s.timers.borrow_mut().remove(key));
        }
    }
}

/// The deadline of [`within`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// `fut`, unless `deadline` passes first.
pub fn within<F: Future + Unpin>(fut: F, deadline: Deadline) -> Within<F> {
    Within { fut, deadline }
}

/// The future of [`within`].
#[derive(Debug)]
pub struct Within<F> {
    fut: F,
    deadline: Deadline,
}

impl<F: Future + Unpin> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = Pin::new(&mut self.fut).poll(cx) {
            return Poll::Ready(Ok(out));
        }
        self.deadline.poll_fired(cx).map(|()| Err(Elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_deadline_fires_within_a_tick_after_its_time_and_the_sweep_then_stops() {
        let start = Instant::now();
        let d = Deadline::after(Duration::from_millis(150));
        d.await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(150), "early: {took:?}");
        assert!(took < Duration::from_millis(150) + 3 * TICK, "late: {took:?}");
        // Nothing held: the next sweep ends the task.
        let deadline = Instant::now() + Duration::from_secs(2);
        while with_sweep(|s| s.ticking.get()) == Some(true) {
            assert!(
                Instant::now() < deadline,
                "the sweep kept running with no deadline"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(with_sweep(|s| s.timers.borrow().len()), Some(0));
    }

    #[actix_rt::test]
    async fn within_answers_the_future_or_elapsed() {
        let quick = within(Box::pin(async { 7 }), Deadline::after(Duration::from_secs(5)));
        assert_eq!(quick.await, Ok(7));
        let slow = within(
            Box::pin(std::future::pending::<()>()),
            Deadline::after(Duration::from_millis(50)),
        );
        assert_eq!(slow.await, Err(Elapsed));
        let reset = Deadline::after(Duration::from_secs(60));
        reset.reset(Instant::now());
        reset.await;
    }
}
