//! A latency histogram the request path records into with two relaxed atomic adds and no
//! lock (prometheus-client's own `Histogram` takes a lock per observation, shared by every
//! worker); it is encoded at scrape time through prometheus-client.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Upper bounds of the buckets, in seconds: 100 µs to 10 s, for a proxy whose answers range
/// from a cached backend's sub-millisecond to the upstream timeout.
pub const BOUNDS_SECS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The bounds in microseconds, compared with the observation without a float conversion.
const BOUNDS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// Durations counted per bucket (not cumulative; the last slot is `+Inf`) and their sum.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; 16],
    sum_us: AtomicU64,
}

/// What a scrape reads: per-bucket counts (upper bound in seconds, count), sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, count in this bucket alone)`, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations, in seconds.
    pub sum_secs: f64,
    /// Number of observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BOUNDS_US.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts now. Read bucket by bucket while others record, so the count and the sum
    /// may be an observation apart, which Prometheus's rate functions absorb.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = BOUNDS_SECS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|b| b.1).sum(),
            sum_secs: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            buckets,
        }
    }
}

impl HistogramSnapshot {
    /// Several histograms of the same bounds added up (an empty one for none).
    pub fn sum(parts: &[HistogramSnapshot]) -> HistogramSnapshot {
        let mut total = LatencyHistogram::default().snapshot();
        for p in parts {
            for (t, b) in total.buckets.iter_mut().zip(&p.buckets) {
                t.1 += b.1;
            }
            total.sum_secs += p.sum_secs;
            total.count += p.count;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_first_bucket_that_holds_it() {
        let cases: &[(u64, f64)] = &[
            (0, 0.0001),
            (100, 0.0001),
            (101, 0.00025),
            (999, 0.001),
            (1_000, 0.001),
            (1_001, 0.0025),
            (10_000_000, 10.0),
            (10_000_001, f64::INFINITY),
        ];
        for &(us, bound) in cases {
            let h = LatencyHistogram::default();
            h.observe(Duration::from_micros(us));
            let snap = h.snapshot();
            let hit: Vec<f64> = snap.buckets.iter().filter(|b| b.1 == 1).map(|b| b.0).collect();
            assert_eq!(hit, vec![bound], "{us} µs");
            assert_eq!(snap.count, 1);
            assert!((snap.sum_secs - us as f64 / 1e6).abs() < 1e-9);
        }
    }

    #[test]
    fn counts_and_sum_add_up() {
        let h = LatencyHistogram::default();
        for ms in [1, 2, 3, 400] {
            h.observe(Duration::from_millis(ms));
        }
        let snap = h.snapshot();
        assert_eq!(snap.count, 4);
        assert!((snap.sum_secs - 0.406).abs() < 1e-9);
        assert_eq!(snap.buckets.len(), BOUNDS_SECS.len() + 1);
    }
}
