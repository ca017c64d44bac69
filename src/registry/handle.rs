//! [`RegistryHandle`]: what handlers hold (inline checks, admin reads, the actor's address).

use std::{net::IpAddr, sync::Arc};

use actix::Addr;
use actix_web::http::header::HeaderMap;

use super::{ClientRegistry, ClientTable, Limiter, Refusal};
use crate::ratelimit::{Clock, Decision, Quota};

/// What handlers hold: lookups and token takes with no actor round trip, plus the actor's
/// address for changes.
#[derive(Clone)]
pub struct RegistryHandle {
    shared: Arc<Limiter>,
    addr: Addr<ClientRegistry>,
}

impl RegistryHandle {
    /// A handle over `shared` and the actor at `addr`.
    pub fn new(shared: Arc<Limiter>, addr: Addr<ClientRegistry>) -> RegistryHandle {
        RegistryHandle { shared, addr }
    }

    /// Matches the request to a client and takes one token from its bucket.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(Decision, Quota), Refusal> {
        self.shared.check(headers, peer)
    }

    /// The current table (for admin reads).
    pub fn table(&self) -> &ClientTable {
        &self.shared.table
    }

    /// Newest change-log version this instance has applied.
    pub fn applied_version(&self) -> i64 {
        self.shared
            .applied_version
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Now, on the registry's clock.
    pub fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    /// Anonymous buckets kept now.
    pub fn anonymous_buckets(&self) -> usize {
        self.shared.anon.len()
    }

    /// The actor, for changes.
    pub fn addr(&self) -> &Addr<ClientRegistry> {
        &self.addr
    }
}
