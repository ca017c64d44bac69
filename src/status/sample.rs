//! The gateway's counters at one instant, and rates from the difference of two such samples
//! (every counter only grows, so a difference over the time between them is a rate).

use std::time::Instant;

use super::Ring;
use crate::metrics::ClientCounts;

/// Counters read at one instant, once a second.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When (monotonic: rates divide by the difference of two).
    pub at: Instant,
    /// When, as Unix milliseconds (for the chart's time axis).
    pub unix_ms: u64,
    /// The whole gateway's counters.
    pub totals: Totals,
    /// Each backend's.
    pub backends: Vec<BackendCounts>,
    /// Each tracked client's (the busiest, see [`super::Sampler`]).
    pub clients: Vec<ClientCounts>,
}

/// The whole gateway's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests answered: with metrics on, every answer (backends' and the gateway's own);
    /// with metrics off, requests sent to backends (retries included).
    pub requests: u64,
    /// Answers by status class (`1xx`..`5xx`); zeros with metrics off.
    pub by_class: [u64; 5],
    /// Requests refused by the rate limiter (429; would-be refusals in shadow mode are not).
    pub refused: u64,
}

/// One backend's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendCounts {
    /// Backend id.
    pub id: String,
    /// Requests sent to it.
    pub requests: u64,
    /// Failed requests (no answer) plus `5xx` answers.
    pub errors: u64,
}

/// Per-second rates of the counters `read` finds, between the oldest sample in `window` that
/// has them and the newest; `None` when fewer than two samples have them (a backend just
/// added, a client just tracked) or no time passed between them.
pub fn rates<const N: usize>(
    window: &Ring<Sample>,
    read: impl Fn(&Sample) -> Option<[u64; N]>,
) -> Option<[f64; N]> {
    let newest = window.newest()?;
    let now = read(newest)?;
    let (then_at, then) = window
        .iter()
        .take(window.len().saturating_sub(1))
        .find_map(|s| read(s).map(|c| (s.at, c)))?;
    let secs = newest.at.saturating_duration_since(then_at).as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    Some(std::array::from_fn(|i| {
        now[i].saturating_sub(then[i]) as f64 / secs
    }))
}

/// The seconds between the oldest and the newest sample of `window`.
pub fn span_secs(window: &Ring<Sample>) -> f64 {
    match (window.iter().next(), window.newest()) {
        (Some(first), Some(last)) => last.at.saturating_duration_since(first.at).as_secs_f64(),
        _ => 0.0,
    }
}

/// The counts of backend `id` in `s`: requests and errors.
pub fn backend(s: &Sample, id: &str) -> Option<[u64; 2]> {
    s.backends
        .iter()
        .find(|b| b.id == id)
        .map(|b| [b.requests, b.errors])
}

/// The counts of client `id` in `s`: admitted and refused.
pub fn client(s: &Sample, id: &str) -> Option<[u64; 2]> {
    s.clients
        .iter()
        .find(|c| c.id == id)
        .map(|c| [c.admitted, c.refused])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample(start: Instant, secs: u64, requests: u64, backends: &[(&str, u64, u64)]) -> Sample {
        Sample {
            at: start + Duration::from_secs(secs),
            unix_ms: secs * 1000,
            totals: Totals {
                requests,
                ..Totals::default()
            },
            backends: backends
                .iter()
                .map(|&(id, requests, errors)| BackendCounts {
                    id: id.into(),
                    requests,
                    errors,
                })
                .collect(),
            clients: Vec::new(),
        }
    }

    #[test]
    fn a_rate_is_the_difference_over_the_time_between() {
        let start = Instant::now();
        let mut w = Ring::new(6);
        assert_eq!(rates(&w, |s| Some([s.totals.requests])), None);
        w.push(sample(start, 0, 100, &[]));
        assert_eq!(
            rates(&w, |s| Some([s.totals.requests])),
            None,
            "one sample has no rate"
        );
        w.push(sample(start, 2, 130, &[]));
        assert_eq!(rates(&w, |s| Some([s.totals.requests])), Some([15.0]));
        assert_eq!(span_secs(&w), 2.0);
    }

    #[test]
    fn a_backend_is_measured_from_the_first_sample_that_has_it() {
        let start = Instant::now();
        let mut w = Ring::new(6);
        w.push(sample(start, 0, 0, &[("a", 0, 0)]));
        w.push(sample(start, 1, 0, &[("a", 10, 1)]));
        assert_eq!(rates(&w, |s| backend(s, "b")), None, "unknown");
        w.push(sample(start, 2, 0, &[("a", 20, 2), ("b", 5, 0)]));
        assert_eq!(rates(&w, |s| backend(s, "b")), None, "only in the newest");
        w.push(sample(start, 4, 0, &[("a", 40, 2), ("b", 9, 4)]));
        assert_eq!(rates(&w, |s| backend(s, "a")), Some([10.0, 0.5]));
        assert_eq!(rates(&w, |s| backend(s, "b")), Some([2.0, 2.0]));
    }

    #[test]
    fn counters_that_went_back_count_as_zero() {
        // A backend deleted and added again under the same id starts from zero.
        let start = Instant::now();
        let mut w = Ring::new(6);
        w.push(sample(start, 0, 0, &[("a", 50, 5)]));
        w.push(sample(start, 1, 0, &[("a", 3, 0)]));
        assert_eq!(rates(&w, |s| backend(s, "a")), Some([0.0, 0.0]));
    }
}
