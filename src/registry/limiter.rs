//! The request path: match a request to a client (API key, address, or anonymous) and take
//! one token inline, with no actor round trip.

use std::{
    net::IpAddr,
    sync::{atomic::AtomicI64, Arc},
};

use actix_web::http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::{
    anonymous_key, client_ip, hash_key, AnonBuckets, ClientEntry, ClientTable, ClusterShare, ForwardedHeader,
    LimitScope,
};
use crate::{
    metrics::{CallerKind, DecisionCounts, Outcome, WriteBehindStats},
    ratelimit::{Clock, Decision, MonotonicClock, Quota},
};

/// How requests are matched to clients and limited.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Header carrying the API key.
    pub api_key_header: HeaderName,
    /// Quota of anonymous clients.
    pub default_quota: Quota,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header those proxies write.
    pub forwarded_header: ForwardedHeader,
    /// Refuse requests without an API key.
    pub require_api_key: bool,
    /// Where registered clients' buckets live.
    pub scope: LimitScope,
}

/// Why a request is refused before it reaches a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The API key matches no client.
    UnknownApiKey,
    /// Anonymous access is off.
    ApiKeyRequired,
    /// The client is disabled.
    ClientDisabled,
    /// The client's bucket is empty.
    RateLimited(Decision, Quota),
}

/// A refusal of a client in shadow mode (`enforce` off) lets the request through, with the
/// decision (and so its RateLimit headers) as enforcement would have made it; the refusal
/// was counted. Every decision on a registered client passes here and is counted.
fn shadowed(
    decisions: &DecisionCounts,
    cell: &super::BucketCell,
    verdict: Result<(Decision, Quota), Refusal>,
) -> Result<(Decision, Quota), Refusal> {
    match verdict {
        Err(Refusal::RateLimited(d, q)) if !cell.enforces() => {
            decisions.count(CallerKind::Client, Outcome::ShadowRefused);
            Ok((d, q))
        }
        Err(Refusal::RateLimited(d, q)) => {
            decisions.count(CallerKind::Client, Outcome::Refused);
            Err(Refusal::RateLimited(d, q))
        }
        Ok(v) => {
            decisions.count(CallerKind::Client, Outcome::Admitted);
            Ok(v)
        }
        other => other,
    }
}

/// What the request path decided, or that it must lease first.
#[derive(Debug)]
pub enum Check {
    /// Decided inline.
    Done(Result<(Decision, Quota), Refusal>),
    /// The client holds no leased token and its row may have some: lease (one round trip,
    /// shared with every request waiting on this instance), then [`Limiter::retake`].
    Lease(Arc<ClientEntry>),
}

/// The request path's state, shared by the actor (writer) and the request handlers
/// (readers): the published table, the anonymous buckets, the clock, the cluster share.
pub struct Limiter {
    pub(super) table: ClientTable,
    pub(super) anon: AnonBuckets,
    pub(super) clock: MonotonicClock,
    settings: LimitSettings,
    pub(super) share: Arc<ClusterShare>,
    /// Newest change-log version applied to `table` (for status pages).
    pub(super) applied_version: AtomicI64,
    /// Decisions since start, for `/metrics`.
    pub(super) decisions: DecisionCounts,
    /// The bucket write-behind's flushes, for `/metrics`.
    pub(super) write_behind: WriteBehindStats,
}

impl Limiter {
    /// Shared state over `table`.
    pub fn new(
        table: ClientTable,
        settings: LimitSettings,
        clock: MonotonicClock,
        share: Arc<ClusterShare>,
    ) -> Arc<Limiter> {
        Arc::new(Limiter {
            table,
            anon: AnonBuckets::default(),
            clock,
            settings,
            share,
            applied_version: AtomicI64::new(0),
            decisions: DecisionCounts::default(),
            write_behind: WriteBehindStats::default(),
        })
    }

    /// Matches the request to a client and takes one token from its bucket.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Check {
        let s = self;
        let ip = || {
            peer.map(|p| {
                client_ip(
                    headers,
                    p,
                    &s.settings.trusted_proxies,
                    s.settings.forwarded_header,
                )
            })
        };
        if let Some(key) = headers.get(&s.settings.api_key_header) {
            return match s
                .table
                .with_key(&hash_key(key.as_bytes()), |entry| s.charge(entry))
            {
                Some(verdict) => verdict,
                // A wrong key costs the caller's address a token like an anonymous request,
                // so that guessing keys is rate limited too.
                // Not an admitted request (it gets 401): only a 429 is counted, as refused.
                None => Check::Done(match s.take_anonymous_token(ip()) {
                    Ok(_) => Err(Refusal::UnknownApiKey),
                    Err(limited) => {
                        s.decisions.count(CallerKind::Anonymous, Outcome::Refused);
                        Err(limited)
                    }
                }),
            };
        }
        let ip = ip();
        if let Some(ip) = ip {
            if let Some(entry) = s.table.by_ip(ip) {
                return s.charge(&entry);
            }
        }
        if s.settings.require_api_key {
            return Check::Done(Err(Refusal::ApiKeyRequired));
        }
        Check::Done(s.take_anonymous(ip))
    }

    /// Takes the token of a request that waited for a lease: it does not ask again (a row
    /// that had nothing left is known empty until it refills).
    pub fn retake(&self, entry: &Arc<ClientEntry>) -> Result<(Decision, Quota), Refusal> {
        match self.charge(entry) {
            Check::Done(verdict) => verdict,
            // The row was not found (the client was deleted meanwhile) or the lease failed
            // just as the database came back: refused, to be tried again.
            Check::Lease(entry) => {
                let quota = entry.cell.with_bucket(|b| b.quota());
                entry.cell.count_refused();
                shadowed(
                    &self.decisions,
                    &entry.cell,
                    Err(Refusal::RateLimited(
                        Decision {
                            allowed: false,
                            remaining: 0,
                            retry_after_secs: 1,
                            reset_secs: quota.window_secs(),
                        },
                        quota,
                    )),
                )
            }
        }
    }

    /// Admits a request for which a lease reserved a token (unless the client was disabled
    /// meanwhile: the token is then dropped).
    pub fn take_reserved(&self, entry: &ClientEntry) -> Result<(Decision, Quota), Refusal> {
        if !entry.cell.is_enabled() {
            return Err(Refusal::ClientDisabled);
        }
        self.decisions.count(CallerKind::Client, Outcome::Admitted);
        Ok(entry.cell.take_reserved())
    }

    fn charge(&self, entry: &Arc<ClientEntry>) -> Check {
        let cell = &entry.cell;
        if !cell.is_enabled() {
            return Check::Done(Err(Refusal::ClientDisabled));
        }
        let now = self.clock.now();
        let verdict = match self.share.scope() {
            LimitScope::Local => cell.take(now),
            LimitScope::Cluster if self.share.is_degraded() => {
                cell.take_share(self.share.live(), self.share.degraded_since(), now)
            }
            LimitScope::Cluster => match cell.take_leased(now) {
                Some(v) => v,
                None => return Check::Lease(entry.clone()),
            },
        };
        Check::Done(shadowed(
            &self.decisions,
            cell,
            match verdict {
                (d, q) if d.allowed => Ok((d, q)),
                (d, q) => Err(Refusal::RateLimited(d, q)),
            },
        ))
    }

    fn take_anonymous(&self, ip: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
        let verdict = self.take_anonymous_token(ip);
        let outcome = match verdict {
            Ok(_) => Outcome::Admitted,
            Err(_) => Outcome::Refused,
        };
        self.decisions.count(CallerKind::Anonymous, outcome);
        verdict
    }

    /// Takes an anonymous token without counting the decision.
    fn take_anonymous_token(&self, ip: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
        // Anonymous buckets stay local; with cluster limits each instance applies its share,
        // so that one address spread over N instances gets the configured limit.
        let quota = match self.share.scope() {
            LimitScope::Cluster => self.settings.default_quota.share(self.share.live()),
            LimitScope::Local => self.settings.default_quota,
        };
        let decision = self
            .anon
            .take(ip.map_or(0, anonymous_key), quota, self.clock.now());
        if decision.allowed {
            Ok((decision, quota))
        } else {
            Err(Refusal::RateLimited(decision, quota))
        }
    }

    /// The client table (for measurements).
    pub fn table(&self) -> &ClientTable {
        &self.table
    }

    /// The anonymous buckets (for measurements).
    pub fn anonymous(&self) -> &AnonBuckets {
        &self.anon
    }

    /// This instance's part of the cluster.
    pub fn share(&self) -> &Arc<ClusterShare> {
        &self.share
    }

    /// Rate-limit decisions since start.
    pub fn decisions(&self) -> &DecisionCounts {
        &self.decisions
    }

    /// The bucket write-behind's flushes since start.
    pub fn write_behind(&self) -> &WriteBehindStats {
        &self.write_behind
    }
}
