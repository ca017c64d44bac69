//! Cluster-wide buckets by leases, pure: the row's arithmetic, the lease sizing, and a
//! bucket that holds leased tokens (or, while the database is away, a fair share).
//!
//! A registered client's bucket lives in its database row (level in units, time of the last
//! refill in the database's clock, milliseconds). Instances lease whole tokens from it in
//! batches and spend them locally; tokens are created only by the row's refill, so however
//! many instances lease, the cluster admits at most `C + R·T` over any interval `T`.
//! [`settle`] is that refill-return-grant step; the PostgreSQL statement computes the same
//! in SQL (a test holds them to each other), SQLite runs this function in a transaction.

use super::{ceil_div, units, Bucket, Decision, Quota, NANOS_PER_SEC, UNIT};

const NANOS_PER_MS: u64 = 1_000_000;

/// The smallest `at` of a bucket that has held a lease (0 is "never leased").
const LEASED: u64 = 1;

/// A client's row as the lease step reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBucket {
    /// Burst size, tokens.
    pub capacity: i64,
    /// Tokens per 1000 s (= units per ns).
    pub rate_milli: i64,
    /// Units in the row; `None` for a full bucket never leased from.
    pub level: Option<i64>,
    /// Database time of the last refill, ms; `None` with `level`.
    pub at_ms: Option<i64>,
}

/// What one lease step did to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Whole tokens handed to the instance.
    pub granted: i64,
    /// Units left in the row.
    pub level: i64,
    /// The row's new refill time: now, or the stored time if later (a statement that waited
    /// for another's lock must not move the row's time back and refill the same span twice).
    pub at_ms: i64,
}

/// Refills the row up to `now_ms` (database time), takes back `returned` tokens and grants up
/// to `asked`: the grant is never more than the row holds, and the row never above capacity.
pub fn settle(row: RowBucket, now_ms: i64, returned: i64, asked: i64) -> Settled {
    let unit = UNIT as i64;
    let full = row.capacity.saturating_mul(unit);
    let rate_per_ms = row.rate_milli.saturating_mul(NANOS_PER_MS as i64).max(1);
    let level = row.level.unwrap_or(full);
    let at = row.at_ms.unwrap_or(now_ms);
    // Elapsed time capped at a whole refill first, so that the product cannot overflow.
    let full_ms = full / rate_per_ms + 1;
    let elapsed = (now_ms - at).clamp(0, full_ms);
    let refilled = level
        .saturating_add(elapsed * rate_per_ms)
        .saturating_add(returned.max(0).saturating_mul(unit))
        .min(full);
    let granted = asked.max(0).min(refilled / unit);
    Settled {
        granted,
        level: refilled - granted * unit,
        at_ms: at.max(now_ms),
    }
}

/// Nanoseconds until a row left at `level` units holds `tokens` whole tokens again.
pub fn refill_wait_ns(level: i64, tokens: u64, rate_milli: u64) -> u64 {
    let want = u128::from(tokens) * UNIT;
    let have = u128::try_from(level.max(0)).unwrap_or(0);
    if have >= want {
        return 0;
    }
    ceil_div(want - have, u128::from(rate_milli.max(1)))
}

/// How many tokens an instance asks for a client: one for each request waiting now (each
/// gets its own, whatever is on hand: requests arriving meanwhile spend those), and ahead of
/// demand twice what its last tick says it will spend by the next one (a margin: demand that
/// grows within a tick would otherwise wait for on-demand leases), but at most its share of
/// the bucket. A lone instance takes the whole bucket (nobody else needs it, and its
/// headers then count the client's whole bucket); with several, each holds at most `C / N`
/// ahead of demand, so that one busy instance cannot hold the tokens another needs. Never more
/// than the capacity. Ahead of demand it tops up only once it holds less than half of that
/// (a busy client far from its limit then costs a statement now and then, not every tick).
pub fn ask(demand: u64, waiting: u64, on_hand: u64, capacity: u64, live: u32) -> u64 {
    let ahead = if live <= 1 {
        capacity
    } else {
        demand
            .saturating_mul(2)
            .max(1)
            .min((capacity / u64::from(live)).max(1))
    };
    let ahead = ahead.min(capacity);
    let top_up = if on_hand.saturating_mul(2) >= ahead {
        0
    } else {
        ahead - on_hand
    };
    top_up.max(waiting).min(capacity)
}

impl Quota {
    /// This instance's fair share of the quota among `live` instances: `C / N` and `R / N`
    /// (at least one token, at least 0.001 per second).
    pub fn share(&self, live: u32) -> Quota {
        let n = live.max(1);
        if n == 1 {
            return *self;
        }
        Quota {
            capacity: (self.capacity / n).max(1),
            rate_milli: (self.rate_milli / n).max(1),
        }
    }
}

/// What a bucket holding leased tokens says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased {
    /// A leased token was taken (or refused while the row is known empty).
    Decided(Decision),
    /// No token on hand and the row may have some: ask the database.
    Ask,
}

impl Bucket {
    /// A bucket holding no leased token (a client this instance has not leased for yet).
    pub fn leased_empty(quota: Quota) -> Bucket {
        Bucket {
            quota,
            level: 0,
            at: 0,
        }
    }

    /// Takes a leased token at `now`. With none on hand, refuses until the time the row was
    /// found empty until, and asks after it.
    pub fn take_leased(&mut self, now: u64) -> Leased {
        let per_sec = u128::from(self.quota.rate_milli) * NANOS_PER_SEC;
        let level = u128::from(self.level);
        if level >= UNIT {
            let left = level - UNIT;
            self.level = units(left);
            return Leased::Decided(Decision {
                allowed: true,
                remaining: u64::try_from(left / UNIT).unwrap_or(u64::MAX),
                retry_after_secs: 0,
                reset_secs: ceil_div(self.quota.full().saturating_sub(left), per_sec),
            });
        }
        if now < self.at {
            return Leased::Decided(Decision {
                allowed: false,
                remaining: 0,
                retry_after_secs: (self.at - now).div_ceil(NANOS_PER_SEC as u64).max(1),
                reset_secs: ceil_div(self.quota.full(), per_sec),
            });
        }
        Leased::Ask
    }

    /// The decision for a request admitted with a token leased for it (not from the bucket).
    pub fn reserved_decision(&self) -> Decision {
        let per_sec = u128::from(self.quota.rate_milli) * NANOS_PER_SEC;
        let level = u128::from(self.level) / UNIT * UNIT;
        Decision {
            allowed: true,
            remaining: u64::try_from(level / UNIT).unwrap_or(u64::MAX),
            retry_after_secs: 0,
            reset_secs: ceil_div(self.quota.full().saturating_sub(level), per_sec),
        }
    }

    /// Adds `tokens` leased at `now`; when the row had fewer than asked, it is empty until
    /// `empty_until` (no request asks the database again before then).
    pub fn add_leased(&mut self, tokens: u64, empty_until: Option<u64>) {
        let level = (u128::from(self.level) / UNIT + u128::from(tokens)) * UNIT;
        self.level = units(level.min(self.quota.full()));
        if let Some(t) = empty_until {
            self.at = t;
        }
        // `at` 0 means "never leased here" (see `take_share`).
        self.at = self.at.max(LEASED);
    }

    /// Changes the quota of a bucket holding leased tokens: it keeps at most the new capacity
    /// and never refills locally.
    pub fn set_quota_leased(&mut self, quota: Quota) {
        if quota != self.quota {
            // The row refills at the new rate from now: when it is empty until is unknown.
            self.at = self.at.min(LEASED);
        }
        if quota.capacity < self.quota.capacity {
            // The row clamps to the new capacity by itself; tokens held here on top of it
            // could add up to more than the new capacity: they are dropped (fewer, never more).
            self.level = 0;
        }
        self.quota = quota;
        self.level = units(u128::from(self.level).min(quota.full()));
    }

    /// Whole leased tokens on hand.
    pub fn leased(&self) -> u64 {
        u64::try_from(u128::from(self.level) / UNIT).unwrap_or(u64::MAX)
    }

    /// Takes every leased token off the bucket (to give back to the row).
    pub fn give_back(&mut self) -> u64 {
        let n = self.leased();
        self.level = 0;
        n
    }

    /// Takes a token from this instance's `share` of the bucket while the database is away
    /// (since `since`): the tokens on hand, refilled at the share's rate from when the outage
    /// began or the row was known empty until, whichever is later. A client this instance
    /// never leased for starts with a full share.
    pub fn take_share(&mut self, share: Quota, since: u64, now: u64) -> Decision {
        if self.at == 0 && self.level == 0 {
            self.level = units(share.full());
            self.at = now;
        } else {
            self.at = self.at.max(since);
            // More on hand than the share holds (leased before another instance joined): the
            // excess is dropped, fewer never more.
            self.level = self.level.min(units(share.full()));
        }
        let own = self.quota;
        self.quota = share;
        let d = self.try_take(now);
        self.quota = own;
        d
    }

    /// Ends a share (leasing works again): what is left of it was made locally, not leased,
    /// and is dropped.
    pub fn end_share(&mut self) {
        self.level = 0;
        self.at = self.at.min(LEASED);
    }

    /// Whether the row was found empty and has not refilled a token by `now`.
    pub fn known_empty(&self, now: u64) -> bool {
        self.level < units(UNIT) && now < self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const U: i64 = UNIT as i64;

    fn row(capacity: i64, rate: f64, level: Option<i64>, at_ms: Option<i64>) -> RowBucket {
        RowBucket {
            capacity,
            rate_milli: (rate * 1000.0) as i64,
            level,
            at_ms,
        }
    }

    #[test]
    fn settle_refills_takes_back_and_grants_at_most_what_the_row_holds() {
        // (row, now_ms, returned, asked) → (granted, level left in units)
        let cases = [
            // A row never leased from is full.
            (row(50, 10.0, None, None), 1_000, 0, 20, (20, 30 * U)),
            (row(50, 10.0, None, None), 1_000, 0, 80, (50, 0)),
            // Empty at 1 000 ms, 10 per second: 0.3 s later three tokens.
            (row(50, 10.0, Some(0), Some(1_000)), 1_300, 0, 5, (3, 0)),
            (row(50, 10.0, Some(0), Some(1_000)), 1_350, 0, 5, (3, U / 2)),
            // Returned tokens come back, capped at capacity.
            (row(50, 10.0, Some(0), Some(1_000)), 1_000, 7, 0, (0, 7 * U)),
            (row(50, 10.0, Some(48 * U), Some(1_000)), 1_000, 7, 1, (1, 49 * U)),
            // Years of idleness do not overflow; a clock that went back refills nothing.
            (
                row(1_000_000, 1_000_000.0, Some(0), Some(0)),
                i64::MAX / 2,
                0,
                1,
                (1, 999_999 * U),
            ),
            (row(5, 1.0, Some(2 * U), Some(10_000)), 9_000, 0, 9, (2, 0)),
            // Half a token per second: a token every 2 s exactly.
            (
                row(1, 0.5, Some(0), Some(0)),
                1_999,
                0,
                1,
                (0, 1_999 * 500_000_000),
            ),
            (row(1, 0.5, Some(0), Some(0)), 2_000, 0, 1, (1, 0)),
            // A negative ask or return is nothing.
            (row(3, 1.0, None, None), 0, -4, -1, (0, 3 * U)),
        ];
        for (r, now, ret, asked, (granted, level)) in cases {
            let s = settle(r, now, ret, asked);
            assert_eq!(
                (s.granted, s.level),
                (granted, level),
                "{r:?} at {now} returning {ret} asking {asked}"
            );
        }
    }

    #[test]
    fn the_row_time_never_moves_back() {
        let r = row(5, 1.0, Some(0), Some(10_000));
        assert_eq!(settle(r, 9_000, 0, 1).at_ms, 10_000);
        assert_eq!(settle(r, 12_000, 0, 1).at_ms, 12_000);
        assert_eq!(settle(row(5, 1.0, None, None), 7, 0, 1).at_ms, 7);
    }

    #[test]
    fn the_wait_for_tokens_is_exact() {
        // 10 per second: 0.5 of a token left, one more token in 50 ms.
        assert_eq!(refill_wait_ns(U / 2, 1, 10_000), 50_000_000);
        assert_eq!(refill_wait_ns(0, 3, 10_000), 300_000_000);
        assert_eq!(refill_wait_ns(2 * U, 2, 10_000), 0);
        assert_eq!(refill_wait_ns(0, 1, 500), 2 * SEC);
    }

    #[test]
    fn the_ask_follows_demand_within_the_share() {
        // (demand last tick, waiting, on hand, capacity, live) → asked
        let cases = [
            (0, 1, 0, 50, 1, 50),
            (7, 0, 3, 50, 1, 47),
            (0, 0, 50, 50, 1, 0),
            (0, 1, 0, 50, 3, 1),
            (0, 21, 0, 50, 3, 21),
            (0, 3, 9, 50, 3, 3),
            (0, 2, 50, 50, 1, 2),
            (0, 80, 0, 50, 3, 50),
            (30, 0, 0, 50, 3, 16),
            (5, 0, 2, 50, 3, 8),
            (5, 0, 9, 50, 3, 0),
            (5, 0, 4, 50, 3, 6),
            (5, 0, 10, 50, 3, 0),
            (0, 4, 0, 2, 3, 2),
            (100, 0, 0, 1_000_000, 2, 200),
        ];
        for (demand, waiting, on_hand, capacity, live, want) in cases {
            assert_eq!(
                ask(demand, waiting, on_hand, capacity, live),
                want,
                "demand {demand}, waiting {waiting}, on hand {on_hand}, C {capacity}, N {live}"
            );
        }
    }

    #[test]
    fn shares_divide_capacity_and_rate() {
        let q = Quota::new(50, 10.0).unwrap();
        for (n, (c, r)) in [
            (0, (50, 10.0)),
            (1, (50, 10.0)),
            (3, (16, 3.333)),
            (100, (1, 0.1)),
        ] {
            let s = q.share(n);
            assert_eq!((s.capacity(), s.rate_per_sec()), (c, r), "N = {n}");
        }
        assert_eq!(Quota::new(1, 0.001).unwrap().share(7).rate_milli(), 1);
    }

    #[test]
    fn a_leased_bucket_spends_what_it_holds_then_refuses_until_the_row_refills() {
        let q = Quota::new(2, 0.2).unwrap();
        let mut b = Bucket::leased_empty(q);
        assert_eq!(b.take_leased(1), Leased::Ask);
        b.add_leased(2, None);
        let Leased::Decided(d) = b.take_leased(1) else {
            panic!("a token was on hand")
        };
        assert_eq!((d.allowed, d.remaining, d.reset_secs), (true, 1, 5));
        assert!(matches!(b.take_leased(1), Leased::Decided(d) if d.allowed && d.remaining == 0));
        assert_eq!(b.take_leased(1), Leased::Ask);
        // The row had none: empty for 5 s; refused with Retry-After until then, asked after.
        b.add_leased(0, Some(5 * SEC));
        assert!(b.known_empty(SEC / 10) && !b.known_empty(5 * SEC));
        let Leased::Decided(d) = b.take_leased(SEC / 10) else {
            panic!("known empty")
        };
        assert_eq!((d.allowed, d.retry_after_secs, d.reset_secs), (false, 5, 10));
        assert_eq!(b.take_leased(5 * SEC), Leased::Ask);
        b.add_leased(3, None);
        assert_eq!(b.give_back(), 2, "never more than the capacity on hand");
        assert_eq!(b.leased(), 0);
    }

    #[test]
    fn a_share_refills_from_the_tokens_on_hand_at_its_own_rate() {
        let q = Quota::new(30, 3.0).unwrap();
        let mut b = Bucket::leased_empty(q);
        b.add_leased(2, None);
        let share = q.share(3);
        // The outage began at 10 s: no refill for the time before.
        let t = 10 * SEC;
        assert!(b.take_share(share, t, t).allowed);
        assert!(b.take_share(share, t, t).allowed);
        assert!(
            !b.take_share(share, t, t).allowed,
            "no burst beyond what was leased"
        );
        assert!(
            b.take_share(share, t, t + SEC).allowed,
            "one per second, a third of the rate"
        );
        assert!(!b.take_share(share, t, t + SEC).allowed);
        assert_eq!(b.quota(), q, "the client's own quota is kept");
        // A client never leased for here: a full share.
        let mut fresh = Bucket::leased_empty(q);
        let admitted = (0..20).filter(|_| fresh.take_share(share, t, t).allowed).count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_share_never_holds_more_than_itself_and_what_is_left_of_it_is_dropped_at_the_end() {
        let q = Quota::new(100, 10.0).unwrap();
        let mut b = Bucket::leased_empty(q);
        // 80 held, the row empty for 20 s; then a second instance joins and the database fails.
        b.add_leased(80, Some(20 * SEC));
        let share = q.share(2);
        let d = b.take_share(share, SEC, SEC);
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_secs), (49, 1), "clamped to the share of 50");
        b.end_share();
        assert_eq!(b.leased(), 0);
        assert_eq!(b.take_leased(2 * SEC), Leased::Ask, "leasing again, from the row");
    }

    #[test]
    fn a_lower_capacity_drops_the_tokens_held_and_a_new_rate_forgets_the_empty_time() {
        let mut b = Bucket::leased_empty(Quota::new(10, 1.0).unwrap());
        b.add_leased(8, Some(50 * SEC));
        b.set_quota_leased(Quota::new(10, 5.0).unwrap());
        assert_eq!(b.leased(), 8);
        assert!(!b.known_empty(SEC), "the empty time was for the old rate");
        b.set_quota_leased(Quota::new(4, 5.0).unwrap());
        assert_eq!(b.leased(), 0);
    }
}
