//! How a leased row refills, in whole tokens and in time: pure, for the [`super::Leaser`].

use std::time::Duration;

use crate::ratelimit::{lease::refill_wait_ns, UNIT};

/// How long a row that granted `granted` of `asked` tokens, left at `level` units, is taken to
/// be empty (it granted less than asked, or has no whole token left): until one token is
/// back, and not before a tick's worth of what was asked (a client over its limit then costs
/// the database at most one statement per tick).
pub fn empty_for(level: i64, asked: u64, granted: u64, rate_milli: u64, tick: Duration) -> Option<u64> {
    if granted >= asked && u128::try_from(level).unwrap_or(0) >= UNIT {
        return None;
    }
    let one = refill_wait_ns(level, 1, rate_milli);
    let batch = refill_wait_ns(level, asked, rate_milli);
    let tick = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX);
    Some(one.max(batch.min(tick)))
}

/// Whole tokens a rate refills in `ns` nanoseconds (rounded down).
pub fn tokens_per(rate_milli: u64, ns: u64) -> u64 {
    u64::try_from(u128::from(rate_milli) * u128::from(ns) / UNIT).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC_NS: u64 = 1_000_000_000;
    const U: i64 = 1_000_000_000_000;

    #[test]
    fn a_tick_of_refill_is_counted_in_whole_tokens() {
        let tick = 100 * MS;
        // (tokens per 1000 s, ns) → tokens
        for (rate, ns, want) in [
            (1_000_000, tick, 100),
            (10_000, tick, 1),
            (500, tick, 0),
            (1, 1_000 * SEC_NS, 1),
        ] {
            assert_eq!(tokens_per(rate, ns), want, "rate {rate}, {ns} ns");
        }
    }

    #[test]
    fn an_empty_row_is_left_alone_until_it_refilled() {
        let tick = Duration::from_millis(100);
        // (level left, asked, granted, rate per 1000 s) → ns the row counts as empty
        let cases = [
            (3 * U, 5, 5, 10_000, None),
            (U, 1, 1, 10_000, None),
            // Granted in full, but nothing left: empty too (asking again at once finds nothing).
            (0, 5, 5, 10_000, Some(100 * MS)),
            (U / 2, 1, 1, 10_000, Some(50 * MS)),
            // 10/s: one token in 100 ms.
            (0, 5, 2, 10_000, Some(100 * MS)),
            (U / 2, 1, 0, 10_000, Some(50 * MS)),
            // 0.2/s: one token in 5 s (the Retry-After).
            (0, 2, 0, 200, Some(5_000 * MS)),
            // 1000/s: one token in 1 ms, but asked for 16: not again before 16 ms.
            (0, 16, 0, 1_000_000, Some(16 * MS)),
            // …and never later than a tick for what was asked.
            (0, 500, 0, 1_000_000, Some(100 * MS)),
        ];
        for (level, asked, granted, rate, want) in cases {
            assert_eq!(
                empty_for(level, asked, granted, rate, tick),
                want,
                "level {level}, asked {asked}, granted {granted}, rate {rate}"
            );
        }
    }
}
