//! How slowly a client may send its request body (nginx's `client_body_timeout`, Kestrel's
//! `MinRequestBodyDataRate`): an idle limit between two reads, and a minimum average rate once
//! a grace period is over, so that neither a stalled nor a trickling upload holds a backend
//! connection for long.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use actix_web::{error::PayloadError, web::Bytes};
use futures_util::Stream;

use super::deadline::LazyDeadline;

/// Limits on a client's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Longest wait between two reads of the body.
    pub idle: Duration,
    /// Minimum average rate in bytes per second once `grace` has passed (0: none).
    pub min_rate: u64,
    /// Time from the start of the request during which the rate is not checked.
    pub grace: Duration,
}

/// A body sent too slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlowUpload {
    /// Nothing arrived for the idle limit.
    #[error("no request body bytes for {0:?}")]
    Idle(Duration),
    /// The average rate fell below the minimum after the grace period.
    #[error("request body slower than {0} bytes/s")]
    BelowMinRate(u64),
}

impl UploadPolicy {
    /// Judges a body that started at `started`, last made progress at `last` and has brought
    /// `received` bytes, at `now`: the time of the next check, or why it is too slow.
    pub fn check(
        &self,
        started: Instant,
        last: Instant,
        received: u64,
        now: Instant,
    ) -> Result<Instant, SlowUpload> {
        let idle_at = last + self.idle;
        if now >= idle_at {
            return Err(SlowUpload::Idle(self.idle));
        }
        if self.min_rate == 0 {
            return Ok(idle_at);
        }
        // `received` bytes keep the average at the minimum until started + received / rate.
        let covered = u128::from(received) * 1_000_000_000 / u128::from(self.min_rate);
        let covered = Duration::from_nanos(u64::try_from(covered).unwrap_or(u64::MAX));
        let behind_at = started + covered.max(self.grace);
        if now >= behind_at {
            return Err(SlowUpload::BelowMinRate(self.min_rate));
        }
        Ok(idle_at.min(behind_at))
    }
}

/// Why reading the client's body stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The client's connection or framing failed.
    #[error(transparent)]
    Client(#[from] PayloadError),
    /// The client was too slow.
    #[error(transparent)]
    Slow(#[from] SlowUpload),
}

/// The client's body stream with an [`UploadPolicy`] applied.
pub struct PacedPayload<S> {
    inner: S,
    policy: UploadPolicy,
    started: Instant,
    last: Instant,
    received: u64,
    deadline: LazyDeadline,
}

impl<S> PacedPayload<S> {
    /// Applies `policy` to `inner`, a body whose request arrived at `started`.
    pub fn new(inner: S, policy: UploadPolicy, started: Instant) -> PacedPayload<S> {
        PacedPayload {
            inner,
            policy,
            started,
            last: started,
            received: 0,
            deadline: LazyDeadline::default(),
        }
    }
}

impl<S> Stream for PacedPayload<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, UploadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received += chunk.len() as u64;
                this.last = Instant::now();
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => loop {
                let now = Instant::now();
                match this.policy.check(this.started, this.last, this.received, now) {
                    Err(slow) => return Poll::Ready(Some(Err(slow.into()))),
                    Ok(next) => {
                        if this.deadline.poll_until(cx, next).is_pending() {
                            return Poll::Pending;
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_bodies_are_judged_by_idle_time_and_average_rate() {
        let policy = UploadPolicy {
            idle: Duration::from_secs(10),
            min_rate: 1024,
            grace: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (last progress, bytes received, now) → next check or verdict
        let cases: &[(Duration, u64, Duration, Result<Duration, SlowUpload>)] = &[
            // Nothing yet: the grace period is the first check.
            (s(0), 0, s(1), Ok(s(5))),
            (s(0), 0, s(5), Err(SlowUpload::BelowMinRate(1024))),
            // 10 KiB covers 10 s at 1 KiB/s.
            (s(4), 10 * 1024, s(6), Ok(s(10))),
            (s(4), 10 * 1024, s(10), Err(SlowUpload::BelowMinRate(1024))),
            // Fast enough, but silent for the idle limit.
            (s(1), 1 << 20, s(11), Err(SlowUpload::Idle(s(10)))),
            (s(1), 1 << 20, s(3), Ok(s(11))),
            // One byte a second: caught once the grace period is over.
            (s(5) - ms(1), 5, s(5), Err(SlowUpload::BelowMinRate(1024))),
        ];
        for (last, received, now, want) in cases {
            let got = policy
                .check(t0, t0 + *last, *received, t0 + *now)
                .map(|at| at - t0);
            assert_eq!(&got, want, "last {last:?} received {received} now {now:?}");
        }
        let no_rate = UploadPolicy {
            min_rate: 0,
            ..policy
        };
        assert_eq!(no_rate.check(t0, t0, 0, t0 + s(9)).map(|at| at - t0), Ok(s(10)));
    }
}
