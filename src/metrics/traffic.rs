//! Request-path counters of one proxy worker: the gateway's own answers by status class, the
//! two latency histograms and the retries. Each worker records into its own [`Traffic`] (no
//! cache line shared between cores on the request path); a scrape adds the workers up.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, PoisonError,
};

use super::histogram::{HistogramSnapshot, LatencyHistogram};

/// The status classes counted, `1xx` to `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`] of `status` (anything outside 100-599 counts as `5xx`).
pub fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 4,
    }
}

/// One worker's request-path counters, aligned so that no two workers' counters share a
/// cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Traffic {
    /// Answers the gateway made itself (rate limited, no backend, bad request…), by class.
    own_answers: [AtomicU64; 5],
    /// Whole requests: arrival to the last byte of the answer (or its abort).
    pub request_duration: LatencyHistogram,
    /// From sending a request to a backend until its response head arrived.
    pub upstream_head: LatencyHistogram,
    /// Attempts on another backend (or the same one again) after a failed one.
    retries: AtomicU64,
    /// Requests whose client went away before any answer was ready.
    abandoned: AtomicU64,
}

impl Traffic {
    /// Counts an answer the gateway made itself.
    pub fn count_own_answer(&self, status: u16) {
        self.own_answers[status_class(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a retry.
    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request its client gave up before any answer.
    pub fn count_abandoned(&self) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sum of every worker's [`Traffic`] at one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficTotals {
    /// The gateway's own answers by class.
    pub own_answers: [u64; 5],
    /// Whole-request durations.
    pub request_duration: HistogramSnapshot,
    /// Upstream time to response head.
    pub upstream_head: HistogramSnapshot,
    /// Retries.
    pub retries: u64,
    /// Requests abandoned by their client before any answer.
    pub abandoned: u64,
}

/// Every worker's counters, registered as the workers start.
#[derive(Debug, Default)]
pub struct TrafficSet {
    workers: Mutex<Vec<&'static Traffic>>,
}

impl TrafficSet {
    /// The counters of a new worker (called once per worker, at its start). They live as long
    /// as the process: a response body then holds a plain reference to them, not a counted
    /// one, and a worker started again (after a panic) adds a few hundred bytes.
    pub fn add_worker(&self) -> &'static Traffic {
        let t: &'static Traffic = Box::leak(Box::default());
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(t);
        t
    }

    /// The workers' counters added up.
    pub fn totals(&self) -> TrafficTotals {
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut own_answers = [0u64; 5];
        let (mut retries, mut abandoned) = (0, 0);
        let (mut whole, mut head) = (Vec::new(), Vec::new());
        for w in &workers {
            for (sum, n) in own_answers.iter_mut().zip(&w.own_answers) {
                *sum += n.load(Ordering::Relaxed);
            }
            retries += w.retries.load(Ordering::Relaxed);
            abandoned += w.abandoned.load(Ordering::Relaxed);
            whole.push(w.request_duration.snapshot());
            head.push(w.upstream_head.snapshot());
        }
        TrafficTotals {
            own_answers,
            request_duration: HistogramSnapshot::sum(&whole),
            upstream_head: HistogramSnapshot::sum(&head),
            retries,
            abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn status_classes() {
        let cases = [
            (100, "1xx"),
            (200, "2xx"),
            (204, "2xx"),
            (308, "3xx"),
            (429, "4xx"),
            (503, "5xx"),
            (599, "5xx"),
            (600, "5xx"),
            (42, "5xx"),
        ];
        for (status, class) in cases {
            assert_eq!(STATUS_CLASSES[status_class(status)], class, "{status}");
        }
    }

    #[test]
    fn totals_add_the_workers_up() {
        let set = TrafficSet::default();
        let (a, b) = (set.add_worker(), set.add_worker());
        a.count_own_answer(429);
        b.count_own_answer(429);
        b.count_own_answer(503);
        a.count_retry();
        a.request_duration.observe(Duration::from_millis(1));
        b.request_duration.observe(Duration::from_millis(3));
        let t = set.totals();
        assert_eq!(t.own_answers, [0, 0, 0, 2, 1]);
        assert_eq!(t.retries, 1);
        assert_eq!(t.request_duration.count, 2);
        assert!((t.request_duration.sum_secs - 0.004).abs() < 1e-9);
        assert_eq!(t.upstream_head.count, 0);
    }
}
