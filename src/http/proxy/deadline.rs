//! A deadline that costs nothing until a stream actually waits.
//!
//! Most bodies arrive with their head or in a few ready reads: a timer armed per request would
//! be pure cost on the hot path. [`LazyDeadline`] arms its `Sleep` only when a stream returns
//! `Pending`, and moves it only when the deadline moved.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use actix_rt::time::{sleep_until, Sleep};

/// A timer armed on first wait (see the module documentation).
#[derive(Default)]
pub struct LazyDeadline {
    sleep: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl LazyDeadline {
    /// Polls for `deadline`: `Ready` once it has passed; otherwise registers the waker.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        match &mut self.sleep {
            Some((at, sleep)) if *at == deadline => sleep.as_mut().poll(cx),
            Some((at, sleep)) => {
                *at = deadline;
                sleep.as_mut().reset(deadline.into());
                sleep.as_mut().poll(cx)
            }
            None => {
                let mut sleep = Box::pin(sleep_until(deadline.into()));
                let poll = sleep.as_mut().poll(cx);
                self.sleep = Some((deadline, sleep));
                poll
            }
        }
    }
}
