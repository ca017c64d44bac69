//! The request path: match a request to a client (API key, address, or anonymous) and take
//! one token inline, with no actor round trip.

use std::{
    net::IpAddr,
    sync::{atomic::AtomicI64, Arc},
};

use actix_web::http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::{anonymous_key, client_ip, hash_key, AnonBuckets, BucketCell, ClientTable, ForwardedHeader};
use crate::ratelimit::{Clock, Decision, MonotonicClock, Quota};

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

/// The request path's state, shared by the actor (writer) and the request handlers
/// (readers): the published table, the anonymous buckets, the clock.
pub struct Limiter {
    pub(super) table: ClientTable,
    pub(super) anon: AnonBuckets,
    pub(super) clock: MonotonicClock,
    settings: LimitSettings,
    /// Newest change-log version applied to `table` (for status pages).
    pub(super) applied_version: AtomicI64,
}

impl Limiter {
    /// Shared state over `table`.
    pub fn new(table: ClientTable, settings: LimitSettings, clock: MonotonicClock) -> Arc<Limiter> {
        Arc::new(Limiter {
            table,
            anon: AnonBuckets::default(),
            clock,
            settings,
            applied_version: AtomicI64::new(0),
        })
    }

    /// Matches the request to a client and takes one token from its bucket.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
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
                .with_key(&hash_key(key.as_bytes()), |cell| charge(cell, s.clock.now()))
            {
                Some(verdict) => verdict,
                // A wrong key costs the caller's address a token like an anonymous request,
                // so that guessing keys is rate limited too.
                None => match s.take_anonymous(ip()) {
                    Ok(_) => Err(Refusal::UnknownApiKey),
                    Err(limited) => Err(limited),
                },
            };
        }
        let ip = ip();
        if let Some(ip) = ip {
            if let Some(entry) = s.table.by_ip(ip) {
                return charge(&entry.cell, s.clock.now());
            }
        }
        if s.settings.require_api_key {
            return Err(Refusal::ApiKeyRequired);
        }
        s.take_anonymous(ip)
    }

    fn take_anonymous(&self, ip: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
        let quota = self.settings.default_quota;
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
}

fn charge(cell: &BucketCell, now: u64) -> Result<(Decision, Quota), Refusal> {
    if !cell.is_enabled() {
        return Err(Refusal::ClientDisabled);
    }
    match cell.take(now) {
        (d, q) if d.allowed => Ok((d, q)),
        (d, q) => Err(Refusal::RateLimited(d, q)),
    }
}
