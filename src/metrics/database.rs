//! Database and admin-write counters: the bucket write-behind (flushes, failures, duration)
//! and admin writes by result.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::histogram::LatencyHistogram;

/// The write-behind's counters, kept by the registry.
#[derive(Debug, Default)]
pub struct WriteBehindStats {
    flushes: AtomicU64,
    failures: AtomicU64,
    rows: AtomicU64,
    /// How long each flush took (scan and write).
    pub duration: LatencyHistogram,
}

impl WriteBehindStats {
    /// Records one flush that wrote `rows` rows (`None`: it failed).
    pub fn record(&self, rows: Option<usize>, took: Duration) {
        match rows {
            Some(n) => {
                self.flushes.fetch_add(1, Ordering::Relaxed);
                self.rows.fetch_add(n as u64, Ordering::Relaxed);
            }
            None => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration.observe(took);
    }

    /// `(flushes, failures, rows written)` since start.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.flushes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
        )
    }
}

/// The results an admin write is counted under.
pub const WRITE_RESULTS: [&str; 3] = ["ok", "client_error", "server_error"];

/// Admin writes (POST, PUT, PATCH, DELETE) by result.
#[derive(Debug, Default)]
pub struct AdminWrites {
    counts: [AtomicU64; 3],
}

impl AdminWrites {
    /// Counts a write answered with `status`.
    pub fn count(&self, status: u16) {
        let slot = match status {
            400..=499 => 1,
            500.. => 2,
            _ => 0,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, in the order of [`WRITE_RESULTS`].
    pub fn snapshot(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_writes_by_result() {
        let cases = [
            (200, [1, 0, 0]),
            (201, [1, 0, 0]),
            (204, [1, 0, 0]),
            (404, [0, 1, 0]),
            (422, [0, 1, 0]),
            (503, [0, 0, 1]),
        ];
        for (status, want) in cases {
            let w = AdminWrites::default();
            w.count(status);
            assert_eq!(w.snapshot(), want, "{status}");
        }
    }

    #[test]
    fn flushes_and_failures_apart() {
        let s = WriteBehindStats::default();
        s.record(Some(3), Duration::from_millis(2));
        s.record(Some(0), Duration::from_millis(1));
        s.record(None, Duration::from_millis(5));
        assert_eq!(s.counts(), (2, 1, 3));
        assert_eq!(s.duration.snapshot().count, 3);
    }
}
