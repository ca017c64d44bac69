//! Buckets of anonymous clients (keyed by address), sharded, dropped once full again.

use std::{collections::HashMap, sync::Mutex};

use super::lock;
use crate::ratelimit::{Bucket, Decision, Quota};

const SHARDS: usize = 64;

/// Map of one shard: aHash is keyed at random per process, so an attacker choosing source
/// addresses cannot aim for collisions, and it is several times cheaper than SipHash.
type AnonMap = HashMap<u128, Bucket, ahash::RandomState>;

/// Buckets of anonymous clients, sharded to keep lock hold times short. Only buckets that are
/// not full are kept: a full bucket carries no information, so eviction loses nothing.
pub struct AnonBuckets {
    shards: Vec<Mutex<AnonMap>>,
    hasher: ahash::RandomState,
}

impl Default for AnonBuckets {
    fn default() -> Self {
        AnonBuckets {
            shards: (0..SHARDS).map(|_| Mutex::new(AnonMap::default())).collect(),
            hasher: ahash::RandomState::new(),
        }
    }
}

impl AnonBuckets {
    fn shard(&self, key: u128) -> &Mutex<AnonMap> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Takes a token from the bucket of `key` (a full one with `quota` if it has none).
    pub fn take(&self, key: u128, quota: Quota, now: u64) -> Decision {
        let mut shard = lock(self.shard(key));
        let bucket = shard.entry(key).or_insert_with(|| Bucket::full(quota, now));
        // The quota moves with the number of instances (each applies its share).
        if bucket.quota() != quota {
            bucket.set_quota(quota, now);
        }
        bucket.try_take(now)
    }

    /// Drops every bucket that is full again; returns how many were dropped.
    pub fn sweep(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut map = lock(s);
                let before = map.len();
                map.retain(|_, b| !b.is_full_at(now));
                before - map.len()
            })
            .sum()
    }

    /// Buckets kept now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_buckets_are_dropped_once_full_again() {
        let anon = AnonBuckets::default();
        let quota = Quota::new(2, 1.0).unwrap();
        for k in 0..100u128 {
            assert!(anon.take(k, quota, 0).allowed);
        }
        assert_eq!(anon.len(), 100);
        assert_eq!(anon.sweep(999_999_999), 0);
        assert_eq!(anon.sweep(1_000_000_000), 100);
        assert!(anon.is_empty());
        // A dropped bucket comes back full: nothing was lost.
        assert!(anon.take(5, quota, 1_000_000_000).allowed);
        assert!(anon.take(5, quota, 1_000_000_000).allowed);
        assert!(!anon.take(5, quota, 1_000_000_000).allowed);
    }
}
