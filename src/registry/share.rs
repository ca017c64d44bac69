//! Where a client's bucket lives ([`LimitScope`]) and this instance's part of the cluster
//! ([`ClusterShare`]): how many instances are alive, and whether leasing works now.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use serde::Serialize;

use crate::ratelimit::{Bucket, Quota};

/// Where registered clients' buckets live (`TOLLGATE_LIMIT_SCOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitScope {
    /// In the database row: instances lease tokens from it, so the bound holds cluster-wide.
    #[default]
    Cluster,
    /// In each instance's memory, written behind: N instances admit up to N times the limit.
    Local,
}

impl LimitScope {
    /// The bucket a client starts with here: full (local), or holding no leased token.
    pub fn fresh_bucket(self, quota: Quota, now: u64) -> Bucket {
        match self {
            LimitScope::Local => Bucket::full(quota, now),
            LimitScope::Cluster => Bucket::leased_empty(quota),
        }
    }

    /// Gives a bucket its client's new quota. A leased bucket never refills locally, so the
    /// change only clamps what it holds.
    pub fn requota(self, bucket: &mut Bucket, quota: Quota, now: u64) {
        match self {
            LimitScope::Local => bucket.set_quota(quota, now),
            LimitScope::Cluster => bucket.set_quota_leased(quota),
        }
    }
}

/// How this instance limits registered clients now, for `GET /cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitsMode {
    /// Tokens are leased from the database rows.
    Cluster,
    /// The database is away: each client gets this instance's share, `C/N` and `R/N`.
    Degraded,
    /// Buckets are per instance (`TOLLGATE_LIMIT_SCOPE=local`).
    Local,
}

/// This instance's part of the cluster, read on the request path.
#[derive(Debug)]
pub struct ClusterShare {
    scope: LimitScope,
    /// Instances alive at the last heartbeat (at least 1).
    live: AtomicU32,
    /// Leasing failed: spend shares until it works again.
    degraded: AtomicBool,
    /// When the current outage began (the registry's clock).
    since: AtomicU64,
    /// Lease statements sent on a tick, and on demand (a request waiting).
    statements: [AtomicU64; 2],
}

impl ClusterShare {
    /// A lone instance, leasing (or local).
    pub fn new(scope: LimitScope) -> ClusterShare {
        ClusterShare {
            scope,
            live: AtomicU32::new(1),
            degraded: AtomicBool::new(false),
            since: AtomicU64::new(0),
            statements: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Where buckets live.
    pub fn scope(&self) -> LimitScope {
        self.scope
    }

    /// Instances alive (at least 1).
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Relaxed).max(1)
    }

    /// Records the instances alive at the last heartbeat.
    pub fn set_live(&self, n: usize) {
        self.live
            .store(u32::try_from(n).unwrap_or(u32::MAX).max(1), Ordering::Relaxed);
    }

    /// Whether leasing is off because the database is away.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Switches shares on (at `now`, the registry's clock) or off; returns whether that
    /// changed anything.
    pub fn set_degraded(&self, on: bool, now: u64) -> bool {
        if on && !self.is_degraded() {
            self.since.store(now, Ordering::Relaxed);
        }
        self.degraded.swap(on, Ordering::Relaxed) != on
    }

    /// Counts a lease statement sent on a tick or on demand.
    pub fn count_statement(&self, tick: bool) {
        self.statements[usize::from(!tick)].fetch_add(1, Ordering::Relaxed);
    }

    /// Lease statements sent so far: (on ticks, on demand).
    pub fn statements(&self) -> (u64, u64) {
        (
            self.statements[0].load(Ordering::Relaxed),
            self.statements[1].load(Ordering::Relaxed),
        )
    }

    /// When the current outage began.
    pub fn degraded_since(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }

    /// The mode shown in `GET /cluster`.
    pub fn mode(&self) -> LimitsMode {
        match (self.scope, self.is_degraded()) {
            (LimitScope::Local, _) => LimitsMode::Local,
            (LimitScope::Cluster, true) => LimitsMode::Degraded,
            (LimitScope::Cluster, false) => LimitsMode::Cluster,
        }
    }
}
