//! A registered client's live state on the request path: whether it is enabled, its token
//! bucket and its counters, shared by every version of the client's settings so that a
//! settings change never resets or forks the bucket.
//!
//! The key index points at the cell, not at the settings: a decision touches the index slot
//! and this cell only (one cache miss fewer among a million clients), and the cell is kept
//! to 64 bytes because every registered client holds one.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Mutex,
};

use super::lock;
use crate::ratelimit::{Bucket, Decision, Leased, Quota};

/// A client's bucket, counters and enabled flag; shared by every version of the client's
/// settings so that a settings change never resets or forks the bucket.
// In this order (`repr(C)`): what an admitted request touches (the bucket under its lock,
// `admitted`, `enabled`) in the first 41 bytes, so that it shares one cache line more often.
#[derive(Debug)]
#[repr(C)]
pub struct BucketCell {
    bucket: Mutex<Bucket>,
    admitted: AtomicU64,
    /// The published settings' `enabled`, copied here by the client table when it publishes a
    /// version, so that the request path needs nothing else.
    enabled: AtomicBool,
    /// The published settings' `enforce` (`false`: shadow mode), copied like `enabled`.
    enforce: AtomicBool,
    /// The incarnation of the client's row this cell belongs to (the row's `generation`, which
    /// fits 32 bits): leases, give-backs and write-behinds name it, so that none reaches a row
    /// created again under the same id. Fills what was padding.
    generation: u32,
    refused: AtomicU64,
    /// Requests counted (admitted + refused) when the bucket was last written behind: the
    /// counts only grow, so an unchanged sum means an unchanged bucket.
    flushed: AtomicU64,
}

impl BucketCell {
    /// A cell around `bucket` with the stored counts, for the row of incarnation `generation`.
    pub fn new(bucket: Bucket, admitted: u64, refused: u64, generation: i64) -> BucketCell {
        BucketCell {
            bucket: Mutex::new(bucket),
            // Closed until the client table publishes the client's setting.
            enabled: AtomicBool::new(false),
            enforce: AtomicBool::new(true),
            // Generations are stored in 32 bits' range (see `store::changelog`).
            generation: u32::try_from(generation).unwrap_or(0),
            admitted: AtomicU64::new(admitted),
            refused: AtomicU64::new(refused),
            flushed: AtomicU64::new(admitted.saturating_add(refused)),
        }
    }

    /// The incarnation of the client's row this cell belongs to.
    pub fn generation(&self) -> i64 {
        i64::from(self.generation)
    }

    /// Whether the client's requests are accepted (as last published).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Whether refusals are enforced (as last published; `false`: shadow mode).
    pub fn enforces(&self) -> bool {
        self.enforce.load(Ordering::Relaxed)
    }

    /// Publishes the client's `enforce` setting to the request path.
    pub(super) fn set_enforce(&self, enforce: bool) {
        self.enforce.store(enforce, Ordering::Relaxed);
    }

    /// Publishes the client's `enabled` setting to the request path.
    pub(super) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    pub(super) fn take(&self, now: u64) -> (Decision, Quota) {
        let (decision, quota) = {
            let mut b = lock(&self.bucket);
            (b.try_take(now), b.quota())
        };
        self.count(decision.allowed);
        (decision, quota)
    }

    /// Takes a leased token; `None` when the database must be asked first (nothing counted).
    pub(super) fn take_leased(&self, now: u64) -> Option<(Decision, Quota)> {
        let (leased, quota) = {
            let mut b = lock(&self.bucket);
            (b.take_leased(now), b.quota())
        };
        let Leased::Decided(decision) = leased else {
            return None;
        };
        self.count(decision.allowed);
        Some((decision, quota))
    }

    /// Counts a request admitted with a token reserved for it by a lease.
    pub(super) fn take_reserved(&self) -> (Decision, Quota) {
        let (decision, quota) = {
            let b = lock(&self.bucket);
            (b.reserved_decision(), b.quota())
        };
        self.count(true);
        (decision, quota)
    }

    /// Takes a token of this instance's share among `live` instances (the database is away
    /// since `since`).
    pub(super) fn take_share(&self, live: u32, since: u64, now: u64) -> (Decision, Quota) {
        let (decision, quota) = {
            let mut b = lock(&self.bucket);
            let quota = b.quota();
            (b.take_share(quota.share(live), since, now), quota)
        };
        self.count(decision.allowed);
        (decision, quota)
    }

    /// Counts a request refused without a bucket decision (a lease that brought nothing).
    pub(super) fn count_refused(&self) {
        self.count(false);
    }

    fn count(&self, allowed: bool) {
        let counter = if allowed { &self.admitted } else { &self.refused };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `f` on the bucket under its lock.
    pub fn with_bucket<R>(&self, f: impl FnOnce(&mut Bucket) -> R) -> R {
        f(&mut lock(&self.bucket))
    }

    /// Requests admitted.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Requests refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Requests counted so far (admitted + refused).
    pub fn counted(&self) -> u64 {
        self.admitted().saturating_add(self.refused())
    }

    /// Whether requests were counted since the last write-behind.
    pub fn is_dirty(&self) -> bool {
        self.counted() != self.flushed.load(Ordering::Relaxed)
    }

    /// The bucket was written with `counted` requests counted.
    pub fn mark_flushed(&self, counted: u64) {
        self.flushed.fetch_max(counted, Ordering::Relaxed);
    }
}

// Every registered client holds a cell: 64 bytes plus the reference count make it one
// 80-byte allocation.
const _: () = assert!(std::mem::size_of::<BucketCell>() <= 64);
