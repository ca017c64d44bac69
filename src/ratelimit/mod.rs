//! The token bucket, pure: no actix, no diesel, no clock of its own.
//!
//! Time is passed in as nanoseconds of a monotonic clock ([`Clock`]), so tests never sleep.
//! Tokens are fixed-point integers: one token is [`UNIT`] units and a rate of `R` tokens per
//! second refills exactly `R * 1000` units per nanosecond (rates have a resolution of 0.001
//! tokens per second). Refill is therefore exact integer arithmetic that cannot drift: over any
//! interval `T` from a full bucket, admitted ≤ `C + R·T`, and with demand throughout,
//! admitted ≥ `C + R·T − 1`.

mod clock;
pub mod lease;

pub use clock::{Clock, FakeClock, MonotonicClock};
pub use lease::Leased;

/// Units in one token.
pub const UNIT: u128 = 1_000_000_000_000;

/// Largest accepted capacity (keeps a full bucket's units within an `i64` for storage).
pub const MAX_CAPACITY: u64 = 1_000_000;

/// Largest accepted rate, in tokens per second.
pub const MAX_RATE: f64 = 1_000_000.0;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Why a quota is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// Capacity out of range.
    #[error("must be a whole number from 1 to {MAX_CAPACITY}")]
    Capacity,
    /// Rate out of range or too fine.
    #[error("must be a number from 0.001 to {MAX_RATE} (resolution 0.001)")]
    Rate,
}

/// Capacity and refill rate of a bucket, parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    // Both fit in 32 bits (capacity ≤ 10^6, rate ≤ 10^9 per 1000 s): a registered client's
    // bucket is kept in memory for every client, so its size counts.
    capacity: u32,
    /// Tokens per 1000 seconds = units per nanosecond.
    rate_milli: u32,
}

impl Quota {
    /// A quota of `capacity` tokens refilled at `rate_per_sec` tokens per second.
    pub fn new(capacity: u64, rate_per_sec: f64) -> Result<Quota, QuotaError> {
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return Err(QuotaError::Capacity);
        }
        if !rate_per_sec.is_finite() || rate_per_sec <= 0.0 || rate_per_sec > MAX_RATE {
            return Err(QuotaError::Rate);
        }
        let milli = (rate_per_sec * 1000.0).round();
        if milli < 1.0 || (milli - rate_per_sec * 1000.0).abs() > 1e-6 * milli.max(1.0) {
            return Err(QuotaError::Rate);
        }
        Ok(Quota {
            capacity: u32::try_from(capacity).map_err(|_| QuotaError::Capacity)?,
            rate_milli: milli as u32,
        })
    }

    /// A quota from stored integers (capacity, tokens per 1000 s).
    pub fn from_parts(capacity: u64, rate_milli: u64) -> Result<Quota, QuotaError> {
        Quota::new(capacity, rate_milli as f64 / 1000.0)
    }

    /// Burst size.
    pub fn capacity(&self) -> u64 {
        u64::from(self.capacity)
    }

    /// Tokens per 1000 seconds (the stored form of the rate).
    pub fn rate_milli(&self) -> u64 {
        u64::from(self.rate_milli)
    }

    /// Tokens per second.
    pub fn rate_per_sec(&self) -> f64 {
        f64::from(self.rate_milli) / 1000.0
    }

    fn full(&self) -> u128 {
        u128::from(self.capacity) * UNIT
    }

    /// Whole seconds a refill from empty takes, rounded up (`w` of the RateLimit-Policy header).
    pub fn window_secs(&self) -> u64 {
        ceil_div(self.full(), u128::from(self.rate_milli) * NANOS_PER_SEC)
    }
}

fn ceil_div(a: u128, b: u128) -> u64 {
    u64::try_from(a.div_ceil(b)).unwrap_or(u64::MAX)
}

/// The outcome of one request against a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go through (and took a token).
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Whole seconds until a token is back, rounded up (0 when one is there).
    pub retry_after_secs: u64,
    /// Whole seconds until the bucket is full again, rounded up.
    pub reset_secs: u64,
}

/// A token bucket: a quota and the current level at a point in time.
#[derive(Debug, Clone)]
pub struct Bucket {
    quota: Quota,
    /// Units; a full bucket holds at most `MAX_CAPACITY * UNIT` = 10^18 < 2^64. Arithmetic
    /// is done in `u128`, storage in `u64`: every registered client keeps one in memory.
    level: u64,
    at: u64,
}

/// A level in units, at most the quota's full level (which fits in a `u64`).
fn units(level: u128) -> u64 {
    u64::try_from(level).unwrap_or(u64::MAX)
}

impl Bucket {
    /// A full bucket at time `now` (nanoseconds).
    pub fn full(quota: Quota, now: u64) -> Bucket {
        Bucket {
            quota,
            level: units(quota.full()),
            at: now,
        }
    }

    /// A bucket at a stored level (units), refilled for `elapsed_ns` since it was stored.
    pub fn restored(quota: Quota, level_units: u128, elapsed_ns: u64, now: u64) -> Bucket {
        let mut b = Bucket {
            quota,
            level: units(level_units.min(quota.full())),
            at: now,
        };
        b.add(elapsed_ns);
        b
    }

    /// The quota in force.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    fn add(&mut self, elapsed_ns: u64) {
        let refill = u128::from(elapsed_ns) * u128::from(self.quota.rate_milli);
        self.level = units((u128::from(self.level) + refill).min(self.quota.full()));
    }

    fn refill(&mut self, now: u64) {
        // A clock that goes backwards (it should not) refills nothing.
        if now > self.at {
            self.add(now - self.at);
            self.at = now;
        }
    }

    /// Level in units at `now`, after refill.
    pub fn level_at(&mut self, now: u64) -> u128 {
        self.refill(now);
        u128::from(self.level)
    }

    /// Whole tokens at `now`.
    pub fn tokens_at(&mut self, now: u64) -> u64 {
        u64::try_from(self.level_at(now) / UNIT).unwrap_or(u64::MAX)
    }

    /// Whether the bucket is full at `now` (it then carries no information).
    pub fn is_full_at(&mut self, now: u64) -> bool {
        self.level_at(now) == self.quota.full()
    }

    /// Takes one token if there is one at `now`.
    pub fn try_take(&mut self, now: u64) -> Decision {
        self.refill(now);
        let mut level = u128::from(self.level);
        let allowed = level >= UNIT;
        if allowed {
            level -= UNIT;
            self.level = units(level);
        }
        let per_sec = u128::from(self.quota.rate_milli) * NANOS_PER_SEC;
        Decision {
            allowed,
            remaining: u64::try_from(level / UNIT).unwrap_or(u64::MAX),
            retry_after_secs: if level >= UNIT {
                0
            } else {
                ceil_div(UNIT - level, per_sec)
            },
            reset_secs: ceil_div(self.quota.full() - level, per_sec),
        }
    }

    /// Changes the quota at `now`: tokens refill at the old rate up to `now`, a lower capacity
    /// clamps them, a higher one adds none.
    pub fn set_quota(&mut self, quota: Quota, now: u64) {
        self.refill(now);
        self.quota = quota;
        self.level = units(u128::from(self.level).min(quota.full()));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn q(c: u64, r: f64) -> Quota {
        Quota::new(c, r).unwrap()
    }

    fn drain(b: &mut Bucket, now: u64) -> u64 {
        let mut n = 0;
        while b.try_take(now).allowed {
            n += 1;
        }
        n
    }

    #[test]
    fn a_new_bucket_is_full_and_refuses_without_taking() {
        let mut b = Bucket::full(q(5, 1.0), 0);
        assert_eq!(drain(&mut b, 0), 5);
        let d = b.try_take(0);
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after_secs, d.reset_secs), (0, 1, 5));
        assert_eq!(b.level_at(0), 0, "a refused request took something");
    }

    #[test]
    fn refill_is_exact_at_the_boundary() {
        // 0.2 tokens per second: one token every 5 s, exactly.
        let mut b = Bucket::full(q(1, 0.2), 0);
        assert!(b.try_take(0).allowed);
        assert!(!b.try_take(5 * SEC - 1).allowed);
        assert!(b.try_take(5 * SEC).allowed);
        assert!(!b.try_take(5 * SEC).allowed);
        // 3 per second: the third token is back at exactly 1 s, not a nanosecond before.
        let mut b = Bucket::full(q(3, 3.0), 0);
        assert_eq!(drain(&mut b, 0), 3);
        assert_eq!(b.tokens_at(SEC - 1), 2);
        assert_eq!(b.tokens_at(SEC), 3);
    }

    #[test]
    fn huge_clock_jumps_cap_at_capacity() {
        let mut b = Bucket::full(q(7, 1000.0), 0);
        drain(&mut b, 0);
        assert_eq!(drain(&mut b, u64::MAX / 2), 7);
        assert_eq!(drain(&mut b, u64::MAX), 7);
    }

    #[test]
    fn a_lowered_capacity_clamps_and_a_raised_one_adds_nothing() {
        let mut b = Bucket::full(q(10, 1.0), 0);
        b.set_quota(q(4, 1.0), 0);
        assert_eq!(b.tokens_at(0), 4);
        b.set_quota(q(100, 1.0), 0);
        assert_eq!(b.tokens_at(0), 4);
        assert_eq!(b.tokens_at(2 * SEC), 6);
    }

    #[test]
    fn headers_round_up() {
        assert_eq!(q(100, 10.0).window_secs(), 10);
        assert_eq!(q(10, 3.0).window_secs(), 4);
        let mut b = Bucket::full(q(100, 10.0), 0);
        let d = b.try_take(0);
        assert_eq!((d.remaining, d.reset_secs), (99, 1));
    }

    #[test]
    fn quotas_are_checked() {
        assert_eq!(Quota::new(0, 1.0), Err(QuotaError::Capacity));
        assert_eq!(Quota::new(MAX_CAPACITY + 1, 1.0), Err(QuotaError::Capacity));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.0001, 0.0015, 2e6] {
            assert_eq!(Quota::new(1, bad), Err(QuotaError::Rate), "{bad}");
        }
        assert_eq!(Quota::new(1, 0.2).unwrap().rate_milli(), 200);
    }

    #[test]
    fn restore_adds_the_elapsed_refill() {
        let quota = q(10, 1.0);
        let mut b = Bucket::restored(quota, 2 * UNIT, 3 * SEC, 100);
        assert_eq!(b.tokens_at(100), 5);
        let mut b = Bucket::restored(quota, 2 * UNIT, 3600 * SEC, 100);
        assert_eq!(b.tokens_at(100), 10);
    }

    proptest! {
        #[test]
        fn never_over_admits(
            capacity in 1u64..200,
            rate_milli in 1u64..5_000_000,
            steps in prop::collection::vec((0u64..3 * SEC, 1u32..20), 1..200),
        ) {
            let quota = Quota::from_parts(capacity, rate_milli).unwrap();
            let mut b = Bucket::full(quota, 0);
            let (mut now, mut admitted) = (0u64, 0u128);
            for (dt, tries) in steps {
                now += dt;
                for _ in 0..tries {
                    if b.try_take(now).allowed {
                        admitted += 1;
                    }
                }
                // admitted ≤ C + R·T, in exact units.
                let bound = u128::from(capacity) * UNIT + u128::from(now) * u128::from(rate_milli);
                prop_assert!(admitted * UNIT <= bound, "admitted {admitted} over {now} ns");
            }
        }

        #[test]
        fn with_demand_throughout_admits_at_least_the_bound_minus_one(
            // From 2: with one token of room, a discrete attempt can arrive after a refill has
            // already topped the bucket up; continuous demand is covered by the boundary test.
            capacity in 2u64..100,
            rate_milli in 1u64..1_000_000,
            steps in prop::collection::vec(0u64..SEC, 1..300),
        ) {
            let quota = Quota::from_parts(capacity, rate_milli).unwrap();
            let interval = u64::try_from((UNIT / u128::from(rate_milli)).max(1)).unwrap();
            let mut b = Bucket::full(quota, 0);
            let (mut now, mut admitted) = (0u64, 0u128);
            while b.try_take(0).allowed {
                admitted += 1;
            }
            // Demand throughout: at least one attempt per token interval, and all the tokens
            // there are taken at every attempt.
            for dt in steps {
                now += dt.min(interval);
                while b.try_take(now).allowed {
                    admitted += 1;
                }
            }
            let expected = u128::from(capacity) * UNIT + u128::from(now) * u128::from(rate_milli);
            prop_assert!(admitted * UNIT + UNIT >= expected, "admitted {admitted}, bound {}", expected / UNIT);
            prop_assert!(admitted * UNIT <= expected);
        }
    }
}
