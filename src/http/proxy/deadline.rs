//! A deadline that costs nothing until a stream actually waits.
//!
//! Most bodies arrive with their head or in a few ready reads: a deadline registered per
//! request would be pure cost on the hot path. [`LazyDeadline`] takes a deadline of the
//! worker's sweep (`crate::sweep`) only when a stream returns `Pending`, and moves it only
//! when the deadline moved.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use crate::sweep::Deadline;

/// A deadline taken on first wait (see the module documentation).
#[derive(Debug, Default)]
pub struct LazyDeadline {
    timer: Option<(Instant, Deadline)>,
}

impl LazyDeadline {
    /// Polls for `deadline`: `Ready` once it has passed (up to one sweep tick late);
    /// otherwise registers the waker.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        match &mut self.timer {
            Some((at, timer)) if *at == deadline => timer.poll_fired(cx),
            Some((at, timer)) => {
                *at = deadline;
                timer.reset(deadline);
                timer.poll_fired(cx)
            }
            None => {
                let timer = Deadline::at(deadline);
                let poll = timer.poll_fired(cx);
                self.timer = Some((deadline, timer));
                poll
            }
        }
    }
}
