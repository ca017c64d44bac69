//! When a lease statement counts as overdue, i.e. the database as away: after
//! [`OVERDUE_TICKS`] ticks, or after [`SLOW_FACTOR`] times the usual time of the statements
//! that came back, whichever is later. A lost database is noticed within two ticks (it was
//! answering in milliseconds); a slow one that answers every statement in, say, 250 ms is not
//! taken for a lost one on every statement, which would switch to the share and back each
//! time (a share admits beside the row, and each switch drops the tokens on hand).

use std::time::Duration;

/// Ticks a lease statement may take before the database counts as away, when it has been
/// answering quickly: a statement is answered within milliseconds, while one that is cut
/// waits out the pool's checkout timeout (`TOLLGATE_DB_TIMEOUT`, 2 s).
pub const OVERDUE_TICKS: u32 = 2;

/// How many times its usual time a statement may take before it counts as overdue.
pub const SLOW_FACTOR: u64 = 4;

/// The usual time of the lease statements that came back, in nanoseconds (0 before the
/// first): a slower statement raises it to its own time at once, a quicker one lowers it by
/// an eighth of the difference (a "peak" moving average). The first statement that is slow
/// cannot be told from a lost database, and counts as overdue; the ones after it do not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatementTime {
    average_ns: u64,
}

impl StatementTime {
    /// Counts a statement that came back after `ns`.
    pub fn observe(&mut self, ns: u64) {
        self.average_ns = if ns >= self.average_ns {
            ns
        } else {
            self.average_ns - (self.average_ns - ns) / 8
        };
    }

    /// How long the next statement may take before it is overdue, with ticks of `tick`.
    pub fn overdue_after(&self, tick: Duration) -> Duration {
        (tick * OVERDUE_TICKS).max(Duration::from_nanos(self.average_ns.saturating_mul(SLOW_FACTOR)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn overdue_after_two_ticks_or_four_usual_times() {
        let tick = Duration::from_millis(100);
        // (statement times observed, overdue after)
        let cases: &[(&[u64], Duration)] = &[
            (&[], Duration::from_millis(200)),
            (&[2 * MS, 3 * MS, MS], Duration::from_millis(200)),
            (&[60 * MS], Duration::from_millis(240)),
            // A database answering in 250 ms: not overdue at 200 ms.
            (&[250 * MS], Duration::from_millis(1000)),
            (&[250 * MS; 20], Duration::from_millis(1000)),
            // A slow statement raises it at once; quick ones lower it by eighths.
            (&[2 * MS, 300 * MS], Duration::from_millis(1200)),
            (&[300 * MS, 4 * MS], Duration::from_millis(1052)),
        ];
        for (times, want) in cases {
            let mut t = StatementTime::default();
            for ns in *times {
                t.observe(*ns);
            }
            assert_eq!(t.overdue_after(tick), *want, "{times:?}");
        }
    }

    #[test]
    fn the_average_follows_a_database_that_becomes_quick_again() {
        let mut t = StatementTime::default();
        t.observe(250 * MS);
        for _ in 0..40 {
            t.observe(2 * MS);
        }
        assert_eq!(
            t.overdue_after(Duration::from_millis(100)),
            Duration::from_millis(200)
        );
    }
}
