//! At most one log line per second per cause, with a count of the lines left out, so that a
//! client that provokes errors cannot flood the log.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// Shortest time between two lines of one cause.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The state of one cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// An event at `now`: `Some(n)` when it is to be logged, `n` being the events left out
    /// since the last line; `None` when it is left out.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < PERIOD => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The end of a throttled line: how many like it were left out, if any.
pub fn left_out_note(left_out: u64) -> String {
    if left_out == 0 {
        String::new()
    } else {
        format!(" ({left_out} more like this since the last line)")
    }
}

/// Whether an event of `cause` is to be logged now (see [`Throttle::admit`]); shared by all
/// workers, taken only on error paths.
pub fn admit(cause: &'static str) -> Option<u64> {
    static CAUSES: OnceLock<Mutex<HashMap<&'static str, Throttle>>> = OnceLock::new();
    let mut causes = CAUSES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    causes.entry(cause).or_default().admit(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_of_those_left_out() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Throttle::default();
        // (time since t0, expected verdict)
        let cases = [
            (ms(0), Some(0)),
            (ms(1), None),
            (ms(500), None),
            (ms(999), None),
            (ms(1000), Some(3)),
            (ms(1500), None),
            (ms(5000), Some(1)),
            (ms(6000), Some(0)),
        ];
        for (at, want) in cases {
            assert_eq!(t.admit(t0 + at), want, "at {at:?}");
        }
    }
}
